"""Commands that read a store: ``status``, ``list``, ``show``, ``history`` and ``dashboard``."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console, Group

from martian_doves import api, listing, report
from martian_doves.cli.filters import filter_options, inspectable, query_from
from martian_doves.cli.options import (
    fields_options,
    option,
    options_from,
    split_store,
    store_argument,
    store_config,
    store_options,
)
from martian_doves.cli.output import EXIT_OK, EXIT_SOME_FAILED, show
from martian_doves.config import DashboardOptions, LogOptions
from martian_doves.logs import setup_logging
from martian_doves.stores.base import Store


@click.command()
@store_argument
@option("--json", "as_json", is_flag=True, default=False,
        help="Print one JSON object (pending, in_progress, done, failed, workers, ...) for scripts.")
@option("--by-state", is_flag=True, default=False,
        help="Also count each status by state name (one row per machine's state).")
@option("--watch", is_flag=True, default=False, env="DOVES_STATUS_WATCH",
        help="Keep showing the status, live, until Ctrl-C: counts, rate, states, workers and what they hold, "
             "recent failures, and whether the store can be read.")
@option("--refresh-seconds", "watch_seconds", type=click.FloatRange(min=0.1), default=2.0, metavar="SECONDS",
        env="DOVES_STATUS_REFRESH_SECONDS",
        help="With --watch: how often the store is read (a slow count waits nine times its duration).")
@store_options(visible=False)
def status(store: str | None, as_json: bool, by_state: bool, watch: bool, watch_seconds: float,
           **params: Any) -> int:
    """Show how far STORE is: pending, in progress, done, failed, workers (what each holds, since when),
    recent failures; --by-state per state name, --watch live."""
    if watch and as_json:
        raise click.UsageError("--watch shows a live view; use --json without it")
    with api.opened(store_config(store, params), read_only=True) as opened:
        if watch:
            return _watch(opened, watch_seconds)
        result = opened.status()
        counts = inspectable(opened).counts_by_state() if by_state else None
    data = report.status_dict(result)
    table, text = report.status_renderable(result), report.status_text(result)
    if counts is not None:
        data["by_state"] = report.by_state_dict(counts)
        table = Group(table, report.by_state_table(counts))
        text = f"{text}\n\n{report.by_state_text(counts)}"
    show(as_json, data, table, text)
    return EXIT_OK


def _watch(store: Store, refresh_seconds: float) -> int:
    from martian_doves.live import watch

    with _interrupted_by_stop_signals():
        try:
            watch(store, Console(), refresh_seconds, threading.Event())
        except KeyboardInterrupt:
            pass  # Ctrl-C or SIGTERM: the way out of a live view, not an error
    return EXIT_OK


@contextmanager
def _interrupted_by_stop_signals() -> Iterator[None]:
    """SIGTERM and SIGINT end the live view (``KeyboardInterrupt``), with exit status 0.

    SIGINT too, explicitly, as ``doves run`` does: a process started in the background
    of a script inherits SIGINT ignored, and Python then never turns it into
    ``KeyboardInterrupt``, so Ctrl-C or ``kill -INT`` would leave the view running.
    """
    def handle(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@click.command("list")
@store_argument
@filter_options(limit=50)
@option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many matches first (paging).")
@option("--json", "as_json", is_flag=True, default=False,
        help="Print a JSON list of whole records (payload, times, errors, failure), newest first.")
@store_options(visible=False)
def list_states(store: str | None, offset: int, as_json: bool, **params: Any) -> int:
    """List the states of STORE that match every filter given, newest change first.

    \b
    doves list ./store --status failed                  the latest failures
    doves list ./store --state resize --since 1h        one machine's states of the last hour
    doves list ./store --code tick_failed --text timeout
    """
    query = query_from(params, offset=offset)
    with api.opened(store_config(store, params), read_only=True) as opened:
        records = inspectable(opened).find(query)
    show(as_json, listing.list_dicts(records), listing.list_renderable(records), listing.list_text(records))
    return EXIT_OK


@click.command("show")
@click.argument("args", nargs=-1, metavar="[STORE] NAME")
@option("--json", "as_json", is_flag=True, default=False, help="Print the record as one JSON object.")
@store_options(visible=False)
def show_state(args: Sequence[str], as_json: bool, **params: Any) -> int:
    """Open one state: payload, status, worker, times, attempts, every attempt's error and the traceback.

    NAME is a state file name in STORE (any state of any lineage, failed ones too).
    STORE may be left out when DOVES_STORE is set. Exits 1 if there is no such state.
    """
    target, (name,) = split_store(args, 1)
    with api.opened(store_config(target, params), read_only=True) as opened:
        record = inspectable(opened).show(os.path.basename(name))
        where = opened.description  # never the URL itself: it may hold a password
    if record is None:
        click.echo(f"doves: no state named {name} in {where}", err=True)
        return EXIT_SOME_FAILED
    show(as_json, listing.show_dict(record), listing.show_renderable(record), listing.show_text(record))
    return EXIT_OK


@click.command()
@click.argument("args", nargs=-1, metavar="[STORE] NAME")
@option("--json", "as_json", is_flag=True, default=False,
        help="Print a JSON list of whole records (payload, times, duration, errors, failure), oldest first.")
@store_options(visible=False)
def history(args: Sequence[str], as_json: bool, **params: Any) -> int:
    """Show the lineage of one machine: every state from its root on, its outcome, which
    worker ran it, when, how long it took, after how many attempts, and why it failed.

    NAME is any state file of the lineage in STORE (countdown.state, a successor of it, or
    a failed one). STORE may be left out when DOVES_STORE is set.
    """
    target, (name,) = split_store(args, 1)
    with api.opened(store_config(target, params), read_only=True) as store:
        entries = store.history(os.path.basename(name))
        where = store.description  # never the URL itself: it may hold a password
    if not entries:
        click.echo(f"doves: no state named {name} in {where}", err=True)
        return EXIT_SOME_FAILED
    show(as_json, report.history_dicts(entries), report.history_renderable(entries), report.history_text(entries))
    return EXIT_OK


@click.command()
@store_argument
@fields_options(DashboardOptions)
@fields_options(LogOptions)
@store_options(visible=False)
def dashboard(store: str | None, **params: Any) -> int:
    """Serve a web page of STORE for operators, until SIGTERM or Ctrl-C.

    The page shows the counts and the transition rate, counts by state name, workers with
    their claims, the failures (filter, search, pages), each state (payload, errors,
    traceback) and each machine's lineage as a timeline, updated every --refresh-seconds.
    Retry and delete need the token printed at start-up (or --token); without it the page
    is read-only. Also serves JSON under /api/, /metrics (Prometheus) and /healthz (503
    when the store cannot be read). The overview adds no load however often it is opened:
    one status sample per refresh serves every request.
    """
    from martian_doves.dashboard import serve_dashboard

    logs, options = options_from(LogOptions, params), options_from(DashboardOptions, params)
    setup_logging(logs.log_level.lower(), logs.log_format, worker="dashboard")
    with api.opened(store_config(store, params), read_only=True) as opened:
        serve_dashboard(opened, options.host, options.port, options.refresh_seconds, options.allowed_hosts,
                        token=options.token, read_only=options.read_only)
    return EXIT_OK
