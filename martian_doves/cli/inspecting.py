"""Commands that read a store: ``status``, ``history`` and ``dashboard``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import click

from martian_doves import api, report
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


@click.command()
@store_argument
@option("--json", "as_json", is_flag=True, default=False,
        help="Print one JSON object (pending, in_progress, done, failed, workers, ...) for scripts.")
@store_options(visible=False)
def status(store: str | None, as_json: bool, **params: Any) -> int:
    """Show how far STORE is: pending, in progress, done, failed, workers, recent failures."""
    with api.opened(store_config(store, params)) as opened:
        result = opened.status()
    show(as_json, report.status_dict(result), report.status_renderable(result), report.status_text(result))
    return EXIT_OK


@click.command()
@click.argument("args", nargs=-1, metavar="[STORE] NAME")
@option("--json", "as_json", is_flag=True, default=False, help="Print a JSON list, oldest state first.")
@store_options(visible=False)
def history(args: Sequence[str], as_json: bool, **params: Any) -> int:
    """Show the lineage of one machine: every state from the root NAME on, its outcome,
    which worker ran it, when, after how many attempts, and why it failed.

    NAME is a state file name in STORE (countdown.state, or any successor of it).
    STORE may be left out when DOVES_STORE is set.
    """
    target, (name,) = split_store(args, 1)
    with api.opened(store_config(target, params)) as store:
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
    """Serve a read-only web page of STORE for operators, until SIGTERM or Ctrl-C.

    The page shows the counts, the transition rate, workers, the oldest pending state,
    recent failures and the store's details, updated every --refresh-seconds. Also
    serves /api/status (JSON), /metrics (Prometheus) and /healthz. Opening the page,
    however often, adds no load: one status sample per refresh serves every request.
    """
    from martian_doves.dashboard import serve_dashboard

    logs, options = options_from(LogOptions, params), options_from(DashboardOptions, params)
    setup_logging(logs.log_level.lower(), logs.log_format, worker="dashboard")
    with api.opened(store_config(store, params)) as opened:
        serve_dashboard(opened, options.host, options.port, options.refresh_seconds, options.allowed_hosts)
    return EXIT_OK
