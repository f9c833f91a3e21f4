"""The ``doves`` command (also ``python -m martian_doves``): the operator's interface.

It holds no coordination logic: it parses options, opens stores, and hands over to
the API, the supervisor and the report builders. Every option also reads a
``DOVES_*`` environment variable (shown in ``--help``), so a compose file needs no
command line. Errors a user can fix print one line, ``doves: error: ...``, on
stderr and exit with ``EXIT_USAGE``; nothing the user did wrong shows a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.resources
import json
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from martian_doves import api, codec, report
from martian_doves.cli_options import (
    STORE_ENV,
    allow_unknown_option,
    log_options,
    machines_option,
    metrics_options,
    mode_option,
    option,
    progress_options,
    store_argument,
    store_options,
)
from martian_doves.config import SupervisorOptions, WorkerOptions
from martian_doves.errors import ConfigError, DovesError
from martian_doves.loader import default_registry
from martian_doves.logs import StderrWriter, setup_logging
from martian_doves.model import State
from martian_doves.registry import Registry
from martian_doves.retry import RetryPolicy
from martian_doves.stores import DIRECTORY_MODES, is_postgres_url
from martian_doves.stores.base import Store
from martian_doves.supervisor import Supervisor, WorkerSpec

__all__ = ["EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE", "cli", "main", "run_cli"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: ``doves`` exit status: everything finished and no state failed during the run.
EXIT_OK = 0
#: ``doves`` exit status: not all done well: some states failed, something was refused,
#: or a signal stopped a ``run`` (without ``--watch``) before the work was finished.
EXIT_SOME_FAILED = 1
#: ``doves`` exit status: usage or configuration error (one line on stderr).
EXIT_USAGE = 2

#: ``tick_seconds`` written into the demo's payloads unless ``--seed-timing``.
DEMO_FAST_TICK_SECONDS = 0.2
#: Sub-folders that mark a folder as a directory store (see ``_looks_like_store``).
_STORE_MARKERS = ("pending", "in_progress", "done", "failed", "workers")

_WORKER_DEFAULTS = WorkerOptions(name="defaults")
_RETRY_DEFAULTS = RetryPolicy()


# -- helpers ----------------------------------------------------------------------------------


def _store_target(store: str | None) -> str:
    if not store:
        raise ConfigError(f"no store given: pass STORE (a folder or postgresql:// URL) or set {STORE_ENV}")
    return store


def _looks_like_store(arg: str) -> bool:
    """Whether a positional argument names a store rather than a file or state name."""
    if "://" in arg:
        return True
    return os.path.isdir(arg) and any(os.path.isdir(os.path.join(arg, sub)) for sub in _STORE_MARKERS)


def _split_store(args: Sequence[str], rest_count: int | None) -> tuple[str, list[str]]:
    """Split ``[STORE] REST...`` where STORE may come from ``$DOVES_STORE``.

    Args:
        rest_count: how many arguments follow STORE, or None for any number. With a
            variable count and ``DOVES_STORE`` set, the first argument is the store only
            if it looks like one (a URL, or a folder with ``pending/``, ``done/`` ...).
    """
    env_store = os.environ.get(STORE_ENV) or None
    if rest_count is not None:
        if len(args) == rest_count + 1:
            return args[0], list(args[1:])
        if len(args) == rest_count and env_store:
            return env_store, list(args)
        raise click.UsageError(f"expected {'STORE ' if not env_store else '[STORE] '}followed by "
                               f"{rest_count} argument(s), got {len(args)}")
    if env_store and (not args or not _looks_like_store(args[0])):
        return env_store, list(args)
    if not args:
        _store_target(None)
    return args[0], list(args[1:])


def _store_option_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """The store options by field name (stores ignore the ones they do not know)."""
    names = ("lease_seconds", "durable", "max_state_bytes", "scan_seconds", "assignment_seconds",
             "commitment_seconds", "update_seconds", "buffer_seconds", "max_skew_seconds", "schema",
             "pool_size", "synchronous_commit")
    return {name: params[name] for name in names if params.get(name) is not None}


def _open_store(target: str, params: Mapping[str, Any], *, must_exist: bool) -> Store:
    """Open a store for a command; a folder must already exist unless ``must_exist`` is False."""
    options = _store_option_values(params)
    if must_exist:
        _require_folder(target)
        options["create_schema"] = False  # PostgreSQL: a mistyped schema is an error too
    spec = WorkerSpec(target, params.get("mode") or DIRECTORY_MODES[0], options)
    return spec.open_store()


def _require_folder(target: str) -> None:
    """For a folder store: raise ``ConfigError`` unless ``target`` is an existing folder."""
    if is_postgres_url(target) or "://" in target or os.path.isdir(target):
        return
    why = "it is not a folder" if os.path.exists(target) else "the folder does not exist"
    raise ConfigError(f"no store at {target}: {why} (create the folder, or let doves submit {target} FILES... do it)")


@contextlib.contextmanager
def _opened(target: str, params: Mapping[str, Any], *, must_exist: bool = True) -> Iterator[Store]:
    store = _open_store(target, params, must_exist=must_exist)
    try:
        yield store
    finally:
        store.close()


def _registry(params: Mapping[str, Any]) -> Registry | None:
    """The machines to validate against, or None with ``--allow-unknown-states``."""
    if params.get("allow_unknown_states"):
        return None
    return default_registry(params.get("machines") or ())


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _error(message: str) -> None:
    click.echo(f"doves: error: {message}", err=True)


# -- the command group -------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="martian-doves", prog_name="doves")
def cli() -> None:
    """Martian Doves: process folders of JSON state files with many workers, no coordinator.

    A state file is {"state": NAME, "payload": {...}}. Each tick runs the machine
    registered under NAME and writes its successor next to it (x.state → x.state-1 → ...).
    STORE is a folder or a postgresql:// URL; every command defaults it to $DOVES_STORE.
    Every option can also be set through the DOVES_* variable shown in its help.

    \b
    Quick start:
      doves demo                        see it work on the packaged examples
      doves validate my-states/         check state files without a store
      doves submit ./store my-states/   add them to a store
      doves run ./store --workers 4     process everything, then exit
      doves status ./store              counts, workers, failures
    """


@cli.command()
@store_argument
@option("--workers", "-w", type=click.IntRange(1, 1024), default=1,
        help="Worker processes to run on this host; a dead one is replaced.")
@option("--concurrency", "-c", type=click.IntRange(min=1), default=_WORKER_DEFAULTS.concurrency,
        help="Ticks each worker process runs at once (threads). Raise it for machines that wait on I/O.")
@option("--prefetch", type=click.IntRange(min=1), default=_WORKER_DEFAULTS.prefetch,
        help="States a worker claims per request: more saves round trips, fewer balances slow ticks.")
@mode_option
@option("--watch", is_flag=True, default=False,
        help="Keep running when nothing is left, picking up new states, until SIGTERM or Ctrl-C.")
@machines_option
@option("--max-attempts", type=click.IntRange(min=1), default=_RETRY_DEFAULTS.max_attempts,
        help="Attempts a tick gets (the first included) before its state fails with the traceback.")
@option("--retry-base-seconds", type=click.FloatRange(min=0), default=_RETRY_DEFAULTS.base_delay_seconds,
        help="Wait after the first failed attempt; doubles with each further failure (with jitter).")
@option("--retry-max-seconds", type=click.FloatRange(min=0), default=_RETRY_DEFAULTS.max_delay_seconds,
        help="Longest wait between two attempts.")
@option("--retry-jitter", type=click.FloatRange(0, 1), default=_RETRY_DEFAULTS.jitter,
        help="Share of each wait that is random, so retries of many states spread out.")
@option("--tick-timeout", "tick_timeout", type=click.FloatRange(min=0, min_open=True), default=None,
        metavar="SECONDS", help="A tick running longer is retried (or failed) and its worker process replaced. "
                                "", show_default="no limit")
@option("--shutdown-grace-seconds", type=click.FloatRange(min=0), default=_WORKER_DEFAULTS.shutdown_grace_seconds,
        help="On SIGTERM/Ctrl-C, how long in-flight ticks may finish before their states are released.")
@option("--heartbeat-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
        help="How often a worker renews its leases; at most half of --lease-seconds.",
        show_default="2, or a quarter of --lease-seconds if shorter")
@option("--poll-seconds", type=click.FloatRange(min=0, min_open=True), default=_WORKER_DEFAULTS.poll_seconds,
        help="Longest sleep between looks for work when no wake-up arrives (e.g. on NFS).")
@store_options(visible=True, with_mode=False)
@option("--chain/--no-chain", default=_WORKER_DEFAULTS.chain,
        help="Let a worker follow a machine's lineage itself (saves a claim per tick); --no-chain "
             "spreads every successor over all workers.")
@option("--name", "name_prefix", default=None, metavar="PREFIX",
        help="Worker names are PREFIX-<pid>, shown in logs, status and history.", show_default="the host name")
@log_options()
@progress_options()
@metrics_options()
@option("--clock-offset-seconds", type=float, default=0.0, hidden=True,
        help="Run the workers' clock this much fast (tests of the semaphore's skew guard).")
def run(store: str | None, **params: Any) -> int:
    """Process the states in STORE with worker processes until none is left.

    Starts --workers processes on this host; each claims states, runs their ticks and
    writes the successors. Run it on as many hosts as you like against the same STORE.
    A worker process that dies is replaced, with backoff, however often it dies.
    Exits 0 when everything is done, 1 if some states failed during the run or a
    signal stopped it first, 2 on a usage or configuration error (also when a worker
    cannot start: its machines fail to import, the store refuses it). With --watch it runs
    until stopped (then exits 0): SIGTERM or Ctrl-C stops claiming and lets in-flight
    ticks finish; a second one stops at once.
    """
    target = _store_target(store)
    _require_folder(target)  # a mistyped path must not become a new, empty store
    spec, supervisor_options = _run_spec(target, params)
    return _supervise(spec, supervisor_options, params, title="doves run")


def _run_spec(target: str, params: Mapping[str, Any]) -> tuple[WorkerSpec, SupervisorOptions]:
    """Turn ``run``'s options into a ``WorkerSpec`` (validated) and ``SupervisorOptions``."""
    # Fitted to the lease the store really uses once it is open (see _fit_heartbeat).
    heartbeat = params.get("heartbeat_seconds") or 2.0
    retry = RetryPolicy(max_attempts=params["max_attempts"], base_delay_seconds=params["retry_base_seconds"],
                        max_delay_seconds=params["retry_max_seconds"], jitter=params["retry_jitter"])
    worker = WorkerOptions(
        name="set-in-each-process", concurrency=params["concurrency"], prefetch=params["prefetch"],
        heartbeat_seconds=heartbeat, poll_seconds=params["poll_seconds"],
        exit_when_finished=not params["watch"], tick_timeout_seconds=params["tick_timeout"],
        shutdown_grace_seconds=params["shutdown_grace_seconds"], chain=params["chain"], retry=retry,
    ).validate()
    prefix = params.get("name_prefix") or socket.gethostname()
    try:
        codec.check_name(f"{prefix}-0")
    except DovesError as e:
        raise ConfigError(f"--name {prefix!r} cannot be used in worker names: {e.message}") from e
    spec = WorkerSpec(
        target=target, mode=params["mode"], store_options=_store_option_values(params),
        machine_sources=tuple(params.get("machines") or ()), worker=worker, name_prefix=prefix,
        log_level=params["log_level"].lower(), log_format=params["log_format"],
        clock_offset_seconds=params.get("clock_offset_seconds") or 0.0,
    )
    metrics_port = params.get("metrics_port")
    status_seconds = 1.0 if _stdout_is_terminal() or metrics_port is not None else params["progress_seconds"]
    return spec, SupervisorOptions(workers=params["workers"], status_seconds=status_seconds,
                                   metrics_port=metrics_port, metrics_host=params.get("metrics_host", "0.0.0.0"))


def _fit_heartbeat(spec: WorkerSpec, given: float | None, lease: float) -> WorkerSpec:
    """Heartbeats well inside the lease the store uses, whether --lease-seconds, the store
    URL or the default set it: a heartbeat slower than half the lease lets a healthy
    worker's claim expire and run twice."""
    if given is None:
        heartbeat = min(2.0, lease / 4)
    elif given > lease / 2:
        raise ConfigError(f"--heartbeat-seconds {given:g} must be at most half of the store's lease "
                          f"({lease:g} s, from --lease-seconds, the store URL or the default)")
    else:
        heartbeat = given
    return dataclasses.replace(spec, worker=dataclasses.replace(spec.worker, heartbeat_seconds=heartbeat))


def _supervise(spec: WorkerSpec, options: SupervisorOptions, params: Mapping[str, Any], *, title: str) -> int:
    """Check the configuration here (one clear line on error), then run the supervisor."""
    handler = setup_logging(spec.log_level, spec.log_format, worker=f"{spec.name_prefix}-supervisor")
    default_registry(spec.machine_sources)  # fail here, once, rather than in every worker
    progress: report.LiveProgress | report.LogProgress | None = None
    live = None
    if params.get("progress", True):
        if _stdout_is_terminal():
            live = progress = report.LiveProgress(Console(), title)
        else:
            progress = report.LogProgress(params.get("progress_seconds", 5.0))
    store = spec.open_store()
    try:
        spec = _fit_heartbeat(spec, params.get("heartbeat_seconds"), store.lease_seconds)
        log.info("running %d worker(s) on %s (%s mode)%s", options.workers, store.description, store.mode,
                 " until stopped (--watch)" if not spec.worker.exit_when_finished else "",
                 extra={"action": "run", "workers": options.workers})
        output: Callable[[str], None] = StderrWriter()
        with live if live is not None else contextlib.nullcontext():
            if live is not None and sys.stderr.isatty():
                output = live.write
                handler.writer = output  # log lines scroll above the live line
            try:
                result = Supervisor(spec, options, store=store, progress=progress, output=output).run()
            finally:
                handler.writer = StderrWriter()
        code = EXIT_OK if result.ok else EXIT_SOME_FAILED
        status = result.final_status
    finally:
        store.close()
    log.info("finished: %d done, %d failed, %d pending, %d in progress", status.done, status.failed,
             status.pending, status.in_progress, extra={"action": "finished", "exit_code": code})
    return code


@cli.command()
@click.argument("args", nargs=-1, metavar="[STORE] PATH...")
@machines_option
@allow_unknown_option
@store_options(visible=False)
def submit(args: Sequence[str], **params: Any) -> int:
    """Validate state files (or folders of them) and add the good ones to STORE.

    Safe at any time, while workers run, in any mode: a state is written under a
    temporary name and published atomically, and an existing name is never replaced.
    Each refused file gets one line on stderr (why); the others are still added.
    Exits 1 if anything was refused. Folders contribute their *.state and *.state-N files.
    STORE may be left out when DOVES_STORE is set.
    """
    target, paths = _split_store(args, None)
    if not paths:
        raise click.UsageError("no PATH given: name state files or folders of them")
    checks = api.check_paths(paths, _registry(params), params["max_state_bytes"])
    refused = 0
    for check in checks:
        if check.error is not None:
            refused += 1
            click.echo(f"doves: refused {check.path} ({check.error.code}): {check.error.message}", err=True)
    valid = [check for check in checks if check.state is not None]
    with _opened(target, params, must_exist=False) as store:
        results = store.submit([check.state for check in valid if check.state is not None])
        added = 0
        for check, result in zip(valid, results, strict=True):
            if result.added:
                added += 1
            else:
                refused += 1
                click.echo(f"doves: refused {check.path}: {result.reason}", err=True)
        click.echo(f"submitted {added} state file(s) to {store.description}"
                   + (f"; refused {refused}" if refused else ""))
    if not checks:
        click.echo(f"doves: no state files (*.state, *.state-N) found in {' '.join(paths)}", err=True)
        return EXIT_SOME_FAILED
    return EXIT_SOME_FAILED if refused else EXIT_OK


@cli.command()
@store_argument
@option("--json", "as_json", is_flag=True, default=False,
        help="Print one JSON object (pending, in_progress, done, failed, workers, ...) for scripts.")
@store_options(visible=False)
def status(store: str | None, as_json: bool, **params: Any) -> int:
    """Show how far STORE is: pending, in progress, done, failed, workers, recent failures."""
    with _opened(_store_target(store), params) as opened:
        result = opened.status()
    if as_json:
        click.echo(json.dumps(report.status_dict(result), indent=2, default=str))
    elif _stdout_is_terminal():
        Console().print(report.status_renderable(result))
    else:
        click.echo(report.status_text(result))
    return EXIT_OK


@cli.command()
@store_argument
@option("--host", env="DOVES_DASHBOARD_HOST", default="127.0.0.1", metavar="HOST",
        help="Address to listen on. The page shows state names and failure messages: --host 0.0.0.0 "
             "exposes it to every network this host is on.")
@option("--port", env="DOVES_DASHBOARD_PORT", type=click.IntRange(0, 65535), default=8080, metavar="PORT",
        help="Port to listen on (0: any free port, logged).")
@option("--refresh-seconds", env="DOVES_DASHBOARD_REFRESH_SECONDS", type=click.FloatRange(min=0.1), default=2.0,
        metavar="SECONDS",
        help="How often the store's status is read and the page updates; a slow count waits nine times "
             "its own duration, so the store is never busy counting more than a tenth of the time.")
@option("--allow-host", "allowed_hosts", env="DOVES_DASHBOARD_ALLOW_HOST", multiple=True, metavar="NAME",
        show_default=False,
        help="Also answer requests for this host name (repeatable; the variable takes several, separated by "
             "spaces). Only the --host address, localhost, 127.0.0.1 and [::1] are answered otherwise "
             "(any address with --host 0.0.0.0), so no web page elsewhere can read this one by DNS rebinding.")
@log_options()
@store_options(visible=False)
def dashboard(store: str | None, host: str, port: int, refresh_seconds: float, allowed_hosts: tuple[str, ...],
              **params: Any) -> int:
    """Serve a read-only web page of STORE for operators, until SIGTERM or Ctrl-C.

    The page shows the counts, the transition rate, workers, the oldest pending state,
    recent failures and the store's details, updated every --refresh-seconds. Also
    serves /api/status (JSON), /metrics (Prometheus) and /healthz. Opening the page,
    however often, adds no load: one status sample per refresh serves every request.
    """
    from martian_doves.dashboard import serve_dashboard

    setup_logging(params["log_level"].lower(), params["log_format"], worker="dashboard")
    with _opened(_store_target(store), params) as opened:
        serve_dashboard(opened, host, port, refresh_seconds, allowed_hosts)
    return EXIT_OK


@cli.command()
@click.argument("args", nargs=-1, metavar="[STORE] NAME")
@option("--json", "as_json", is_flag=True, default=False, help="Print a JSON list, oldest state first.")
@store_options(visible=False)
def history(args: Sequence[str], as_json: bool, **params: Any) -> int:
    """Show the lineage of one machine: every state from the root NAME on, its outcome,
    which worker ran it, when, after how many attempts, and why it failed.

    NAME is a state file name in STORE (countdown.state, or any successor of it).
    STORE may be left out when DOVES_STORE is set.
    """
    target, (name,) = _split_store(args, 1)
    with _opened(target, params) as store:
        entries = store.history(os.path.basename(name))
        where = store.description  # never the URL itself: it may hold a password
    if not entries:
        click.echo(f"doves: no state named {name} in {where}", err=True)
        return EXIT_SOME_FAILED
    if as_json:
        click.echo(json.dumps(report.history_dicts(entries), indent=2, default=str))
    elif _stdout_is_terminal():
        Console().print(report.history_renderable(entries))
    else:
        click.echo(report.history_text(entries))
    return EXIT_OK


@cli.command()
@store_argument
@option("--successors", is_flag=True, default=False,
        help="Also delete the successor files (x.state-1, x.state-2 ...), keeping only the submitted roots.")
@option("--yes", "-y", is_flag=True, default=False, help="Do not ask for confirmation.")
@store_options(visible=False)
def reset(store: str | None, successors: bool, yes: bool, **params: Any) -> int:
    """Forget every outcome in STORE so all its states run again.

    The seed's "Re-Runs" recipe (rm workers/* done/* in_progress/*, optionally
    *.state-*) as one safe command: it refuses while workers are alive, and failed
    states come back too. Asks for confirmation on a terminal unless --yes.
    """
    with _opened(_store_target(store), params) as opened:
        if not yes and sys.stdin.isatty():
            what = "and DELETE every successor file" if successors else "(successor files are kept)"
            if not click.confirm(f"Make every state in {opened.description} pending again {what}?"):
                click.echo("nothing changed")
                return EXIT_SOME_FAILED
        count = opened.reset(successors=successors)
        click.echo(f"reset {opened.description}: {count} state(s) pending again"
                   + ("; successor files deleted" if successors else ""))
    return EXIT_OK


@cli.command()
@click.argument("args", nargs=-1, metavar="[STORE] [NAME...]")
@store_options(visible=False)
def retry(args: Sequence[str], **params: Any) -> int:
    """Make failed states pending again with fresh attempts: all of them, or the NAMEs given.

    Run 'doves run' (or let a --watch run pick them up) afterwards.
    STORE may be left out when DOVES_STORE is set. Exits 1 if a NAME was not failed.
    """
    target, names = _split_store(args, None)
    with _opened(target, params) as store:
        count = store.retry_failed([os.path.basename(n) for n in names] if names else None)
        click.echo(f"{count} failed state(s) in {store.description} pending again")
    if names and count < len(names):
        click.echo(f"doves: {len(names) - count} of the {len(names)} named state(s) are not failed states "
                   "of this store (not failed, or no such name)", err=True)
        return EXIT_SOME_FAILED
    return EXIT_OK


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@machines_option
@allow_unknown_option
@option("--max-state-bytes", type=click.IntRange(min=64), default=codec.DEFAULT_MAX_STATE_BYTES,
        help="Larger state files are invalid.")
def validate(paths: Sequence[str], **params: Any) -> int:
    """Check state files (or folders of them) without touching any store.

    Checks each file's name, size and JSON, that it is a state document, and that a
    loaded machine handles its state (and accepts its payload). Prints one line per
    problem; exits 1 if any file is invalid.
    """
    checks = api.check_paths(paths, _registry(params), params["max_state_bytes"])
    bad = [check for check in checks if check.error is not None]
    for check in bad:
        assert check.error is not None
        click.echo(f"{check.path}: {check.error.code}: {check.error.message}")
    if not checks:
        click.echo(f"doves: no state files (*.state, *.state-N) found in {' '.join(paths)}", err=True)
        return EXIT_SOME_FAILED
    click.echo(f"{len(checks) - len(bad)} valid, {len(bad)} invalid", err=bool(bad))
    return EXIT_SOME_FAILED if bad else EXIT_OK


@cli.command()
@store_argument
@store_options(visible=False)
def migrate(store: str | None, **params: Any) -> int:
    """Create or upgrade the store's schema (PostgreSQL); folders need no migration."""
    with _opened(_store_target(store), params, must_exist=False) as opened:
        migrate_store = getattr(opened, "migrate", None)
        if not callable(migrate_store):
            click.echo(f"nothing to migrate: {opened.description} has no schema")
            return EXIT_OK
        result = migrate_store()
        click.echo(f"migrated {opened.description}" + (f" to schema version {result}" if result is not None else ""))
    return EXIT_OK


@cli.command()
@click.argument("args", nargs=-1, metavar="[STORE] DIR")
@store_options(visible=False)
def export(args: Sequence[str], **params: Any) -> int:
    """Write every state of a database store to DIR as state files (the same format).

    STORE may be left out when DOVES_STORE is set.
    """
    target, (directory,) = _split_store(args, 1)
    with _opened(target, params) as store:
        export_store = getattr(store, "export", None)
        if not callable(export_store):
            raise ConfigError(f"{store.description} cannot export: it already is a folder of state files "
                              "(copy it instead)")
        result = export_store(directory)
        click.echo(f"exported {result if isinstance(result, int) else 'the'} state(s) to {directory}")
    return EXIT_OK


# -- demo ------------------------------------------------------------------------------------------


def _demo_folder(directory: str | None) -> Path:
    """A new, empty folder for the demo: ``--dir``, else ``./doves-demo-<time>``, else a temp dir."""
    if directory:
        path = Path(directory)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(f"--dir {directory}: must be a new or empty folder")
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(100):
        path = Path.cwd() / (f"doves-demo-{stamp}" + (f"-{attempt}" if attempt else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError:
            break  # the current folder is not writable
    return Path(tempfile.mkdtemp(prefix="doves-demo-"))


def _example_states(fast: bool) -> list[State]:
    """The packaged examples, with a short ``tick_seconds`` in each payload when ``fast``."""
    states = []
    examples = importlib.resources.files("martian_doves") / "examples"
    for entry in sorted(examples.iterdir(), key=lambda e: e.name):
        if not codec.is_state_file_name(entry.name):
            continue
        state = codec.decode(entry.read_bytes(), entry.name)
        payload = {**state.payload, "tick_seconds": DEMO_FAST_TICK_SECONDS} if fast else state.payload
        states.append(State(entry.name, state.state, payload))
    return states


@cli.command()
@option("--workers", "-w", type=click.IntRange(1, 1024), default=4, help="Worker processes to run.")
@option("--dir", "directory", env="DOVES_DEMO_DIR", type=click.Path(file_okay=False), default=None,
        show_default="./doves-demo-<time>", help="Folder for the demo store (new or empty).")
@option("--fast/--seed-timing", env="DOVES_DEMO_FAST", default=True,
        help=f"--fast sets every tick to {DEMO_FAST_TICK_SECONDS:g} s so the demo takes seconds; --seed-timing "
             "keeps the seed's 1 s per tick and 10 s per slow-countdown tick (about a minute).")
@log_options()
@progress_options()
def demo(workers: int, directory: str | None, fast: bool, **params: Any) -> int:
    """See it work: copy the packaged example states into a fresh store and run them.

    Runs the seed's examples (three simple machines, a countdown, a slow countdown) and
    a traffic light with several workers, shows their output and progress, then the
    store's status and where to look next.
    """
    folder = _demo_folder(directory).resolve()
    states = _example_states(fast)
    spec = WorkerSpec(
        target=str(folder), worker=WorkerOptions(name="set-in-each-process").validate(),
        log_level=params["log_level"].lower(), log_format=params["log_format"],
    )
    with _opened(spec.target, {}, must_exist=False) as store:
        store.submit(states)
    click.echo(f"Demo store: {folder}")
    click.echo(f"Copied {len(states)} example states into it: {', '.join(s.name for s in states)}")
    click.echo(f"Running them with {workers} workers"
               + (f" ({DEMO_FAST_TICK_SECONDS:g} s per tick; --seed-timing for the original timing)" if fast
                  else " (seed timing: about a minute)") + " ...")
    options = SupervisorOptions(workers=workers, status_seconds=1.0 if _stdout_is_terminal() else 5.0)
    code = _supervise(spec, options, params, title="doves demo")
    with _opened(spec.target, {}) as store:
        result = store.status()
    click.echo("")
    if _stdout_is_terminal():
        Console().print(report.status_renderable(result))
    else:
        click.echo(report.status_text(result))
    hints = [
        (f"ls {folder}", "every state file, successors included (countdown.state-1 ...)"),
        (f"ls {folder}/done", "one marker per finished state: who ran it"),
        (f"doves status {folder}", "this summary again"),
        (f"doves history {folder} countdown.state", "one machine's lineage, worker by worker"),
        (f"doves reset {folder} --successors", "start over, then: doves run {folder} --workers 4"),
    ]
    click.echo("\nWhere to look:")
    width = max(len(command) for command, _ in hints)
    for command, meaning in hints:
        click.echo(f"  {command:<{width}}  # {meaning.format(folder=folder)}")
    return code


# -- entry point -----------------------------------------------------------------------------------


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the ``doves`` command line and return its exit status (no ``sys.exit``)."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="doves",
                          standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help())
        return EXIT_USAGE
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        _error(e.format_message() + hint)
        return EXIT_USAGE
    except click.Abort:
        _error("interrupted")
        return 130
    except click.ClickException as e:
        _error(e.format_message())
        return e.exit_code
    except DovesError as e:
        _error(e.message)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except OSError as e:
        _error(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        return EXIT_USAGE
    return result if isinstance(result, int) else EXIT_OK


def main() -> None:
    """Console-script entry point: ``doves``."""
    sys.exit(run_cli())
