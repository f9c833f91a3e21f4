"""Declaring ``doves`` options once: each reads its ``DOVES_*`` variable and shows it in ``--help``.

procrastinate's CLI taught this: one helper binds a flag to its environment variable,
so compose files and systemd units configure everything without a command line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from martian_doves import codec
from martian_doves.logs import FORMATS, LEVELS
from martian_doves.stores import DIRECTORY_MODES

F = TypeVar("F", bound=Callable[..., Any])

#: Environment variable every command reads its STORE from when none is given.
STORE_ENV = "DOVES_STORE"



def env_name(flag: str) -> str:
    """``--max-attempts`` → ``DOVES_MAX_ATTEMPTS``; ``--chain/--no-chain`` → ``DOVES_CHAIN``."""
    return "DOVES_" + flag.split("/")[0].lstrip("-").replace("-", "_").upper()


def option(*decls: str, env: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """A click option that also reads ``DOVES_<NAME>`` and shows it in ``--help``.

    The variable is named after the first long flag unless ``env`` says otherwise.
    """
    long_flag = next(d for d in decls if d.startswith("--"))
    kwargs.setdefault("show_default", True)
    return click.option(*decls, envvar=env or env_name(long_flag), show_envvar=True, **kwargs)


def compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Apply ``decorators`` in the order listed (so ``--help`` lists options in that order)."""
    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


def _split_sources(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> tuple[str, ...]:
    """``--machines`` values, each also split on commas (``DOVES_MACHINES`` is split on spaces by click)."""
    return tuple(part for value in values for part in re.split(r"[\s,]+", value) if part)


store_argument = click.argument("store", required=False, envvar=STORE_ENV, metavar="[STORE]")


def _unchanged(function: F) -> F:
    return function


mode_option = option(
    "--mode", type=click.Choice(DIRECTORY_MODES), default=DIRECTORY_MODES[0],
    help="How workers share a directory store: 'lease' (atomic claims with heartbeats) or "
         "'semaphore' (the seed's time-phased protocol). Ignored for postgresql:// stores.",
)


def store_options(*, visible: bool, with_mode: bool = True) -> Callable[[F], F]:
    """``--mode`` and the store tuning options; tuning is hidden outside ``run`` but still read.

    Hidden options still read their ``DOVES_*`` variables, so a command run in the same
    environment as the workers (a compose service) opens the store the same way.
    """
    hidden = not visible
    return compose(
        mode_option if with_mode else _unchanged,
        option("--lease-seconds", type=click.FloatRange(min=0, min_open=True), default=None, hidden=hidden,
               help="A claim whose worker has not renewed it for this long is taken over by another worker, "
                    "e.g. after kill -9.", show_default="the store's; 30 s for folders"),
        option("--durable/--no-durable", default=False, hidden=hidden,
               help="fsync every write before it becomes visible, so commits also survive a power loss."),
        option("--max-state-bytes", type=click.IntRange(min=64), default=codec.DEFAULT_MAX_STATE_BYTES,
               hidden=hidden, help="Larger state files are refused (submit) or failed unread (run)."),
        option("--scan-seconds", type=click.FloatRange(min=0, min_open=True), default=None, hidden=hidden,
               help="How often the whole folder is re-listed for state files copied in by hand (inotify "
                    "wakes workers sooner on local disks).", show_default="the store's; 10 s for folders"),
        option("--assignment-seconds", type=click.FloatRange(min=0, min_open=True), default=3.0, hidden=hidden,
               help="Semaphore mode: length of the assignment phase."),
        option("--commitment-seconds", type=click.FloatRange(min=0, min_open=True), default=3.0, hidden=hidden,
               help="Semaphore mode: length of the commitment phase."),
        option("--update-seconds", type=click.FloatRange(min=0, min_open=True), default=3.0, hidden=hidden,
               help="Semaphore mode: length of the update phase."),
        option("--buffer-seconds", type=click.FloatRange(min=0), default=1.0, hidden=hidden,
               help="Semaphore mode: gap between phases; must exceed clock skew plus filesystem delay "
                    "(at least 0.05: file timestamps are only a few milliseconds fine)."),
        option("--max-skew-seconds", type=click.FloatRange(min=0), default=None, hidden=hidden,
               show_default="half of --buffer-seconds",
               help="Semaphore mode: a worker whose clock is further off the shared filesystem's stays out "
                    "(at least 0.025)."),
        option("--schema", default=None, hidden=hidden, show_default="doves, or the URL's ?schema=",
               help="PostgreSQL: schema holding the tables."),
        option("--pool-size", type=click.IntRange(min=1), default=None, hidden=hidden, show_default="8",
               help="PostgreSQL: most connections per worker process; at least --concurrency + 1."),
        option("--synchronous-commit/--no-synchronous-commit", default=None, hidden=hidden, show_default="on",
               help="PostgreSQL: wait for the WAL flush on every commit. Off is faster; a server crash may then "
                    "re-run the last transitions (never half-write or double them)."),
    )


machines_option = option(
    "--machines", "-m", multiple=True, callback=_split_sources, metavar="MODULE|FILE.py", show_default=False,
    help="Load machines from an import path (mypkg.machines) or a .py file; repeat for several. "
         "Built-in machines and the 'martian_doves.machines' entry points are always loaded. "
         "DOVES_MACHINES takes several, separated by spaces or commas.",
)
allow_unknown_option = option(
    "--allow-unknown-states", is_flag=True, default=False,
    help="Accept state names no loaded machine handles (when the machines live elsewhere).",
)


def log_options() -> Callable[[F], F]:
    return compose(
        option("--log-level", type=click.Choice(LEVELS, case_sensitive=False), default="info",
               help="Least important messages shown; 'info' shows the machines' output."),
        option("--log-format", type=click.Choice(FORMATS), default="text",
               help="'text' for people, 'json' for one JSON object per line (time, level, logger, message, "
                    "worker, action, ...)."),
    )


def progress_options() -> Callable[[F], F]:
    return compose(
        option("--progress/--no-progress", default=True,
               help="Show progress: a live line on a terminal, a log line every --progress-seconds otherwise."),
        option("--progress-seconds", type=click.FloatRange(min=0, min_open=True), default=5.0,
               help="Interval of the progress log lines when the output is not a terminal."),
    )


def metrics_options() -> Callable[[F], F]:
    return compose(
        option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
               help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port, logged).",
               show_default="off"),
        option("--metrics-host", default="0.0.0.0", metavar="HOST",
               help="Address the metrics endpoint listens on (127.0.0.1 keeps it to this host)."),
    )
