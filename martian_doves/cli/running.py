"""``doves run``: worker processes on this host until the work is done (or, with ``--watch``, stopped)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import sys
from typing import Any

import click
from rich.console import Console

from martian_doves import api, report
from martian_doves.cli.options import (
    fields_options,
    machines_option,
    mode_option,
    option,
    options_from,
    store_argument,
    store_config,
    store_options,
    worker_name_prefix,
)
from martian_doves.cli.output import EXIT_OK, EXIT_SOME_FAILED, stdout_is_terminal
from martian_doves.config import LogOptions, ProgressOptions, SupervisorOptions, WorkerOptions
from martian_doves.loader import default_registry
from martian_doves.logs import StderrWriter, Writer, setup_logging
from martian_doves.retry import RetryPolicy
from martian_doves.supervisor import Supervisor, WorkerSpec

log = logging.getLogger(__name__)

#: The options ``doves run`` shares with ``doves demo``: logging and progress.
display_options = fields_options(LogOptions, ProgressOptions)


@click.command()
@store_argument
@fields_options(SupervisorOptions, only=("workers",))
@mode_option
@machines_option
@fields_options(WorkerOptions, RetryPolicy)
@store_options(visible=True, with_mode=False)
@option("--name", "name_prefix", default=None, metavar="PREFIX",
        help="Worker names are PREFIX-<pid>, shown in logs, status and history.", show_default="the host name")
@display_options
@fields_options(SupervisorOptions, only=("metrics_port", "metrics_host"))
@option("--phase-timings", "phase_timings", default=None, metavar="DIR", show_default=False,
        type=click.Path(file_okay=False),
        help="Time the phases of every transition (claim, read, tick, write, commit) and write each worker's "
             "totals to DIR/<worker>.json when it stops (doves bench --phase-timings reads them). Off: no cost.")
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
    config = store_config(store, params)
    api.require_folder(config)  # a mistyped path must not become a new, empty store
    retry = options_from(RetryPolicy, params)
    logs = options_from(LogOptions, params)
    spec = WorkerSpec(
        store=config, machine_sources=tuple(params.get("machines") or ()),
        worker=options_from(WorkerOptions, params, name="set-in-each-process", retry=retry),
        name_prefix=worker_name_prefix(params.get("name_prefix") or socket.gethostname()),
        log_level=logs.log_level.lower(), log_format=logs.log_format,
        clock_offset_seconds=params.get("clock_offset_seconds") or 0.0,
        phase_timings=_phase_folder(params.get("phase_timings")),
    )
    return supervise(spec, options_from(SupervisorOptions, params), options_from(ProgressOptions, params),
                     title="doves run")


def _phase_folder(folder: str | None) -> str | None:
    """``--phase-timings`` as an absolute folder that exists (workers may run elsewhere)."""
    if folder is None:
        return None
    os.makedirs(folder, exist_ok=True)
    return os.path.abspath(folder)


def supervise(spec: WorkerSpec, options: SupervisorOptions, progress: ProgressOptions, *, title: str) -> int:
    """Check the configuration here (one clear line on error), then run the supervisor.

    Returns:
        ``EXIT_OK`` if the run did its job, else ``EXIT_SOME_FAILED``.

    Raises:
        WorkerCannotStart: a worker process cannot start with this configuration.
    """
    handler = setup_logging(spec.log_level, spec.log_format, worker=f"{spec.name_prefix}-supervisor")
    default_registry(spec.machine_sources)  # fail here, once, rather than in every worker
    live = report.LiveProgress(Console(), title) if progress.progress and stdout_is_terminal() else None
    sink = live or (report.LogProgress(progress.progress_seconds) if progress.progress else None)
    if live is None and options.metrics_port is None:  # a live line and metrics want the default pace
        options = dataclasses.replace(options, status_seconds=progress.progress_seconds)
    with contextlib.closing(spec.open_store()) as store:
        spec.worker.fitted_to(store.lease_seconds)  # what each worker checks, here once and in one line
        log.info("running %d worker(s) on %s (%s mode)%s", options.workers, store.description, store.mode,
                 " until stopped (--watch)" if not spec.worker.exit_when_finished else "",
                 extra={"action": "run", "workers": options.workers})
        output: Writer = StderrWriter()
        with live if live is not None else contextlib.nullcontext():
            if live is not None and sys.stderr.isatty():
                output = handler.writer = live.write  # log lines scroll above the live line
            try:
                result = Supervisor(spec, options, store=store, progress=sink, output=output).run()
            finally:
                handler.writer = StderrWriter()
    code = EXIT_OK if result.ok else EXIT_SOME_FAILED
    status = result.final_status
    log.info("finished: %d done, %d failed, %d pending, %d in progress", status.done, status.failed,
             status.pending, status.in_progress, extra={"action": "finished", "exit_code": code})
    return code
