"""``doves bench``: the countdown workload on a fresh store and a warm fleet, as the peers are measured."""

from __future__ import annotations

import shlex
from typing import Any

import click

from martian_doves.benchmark import render
from martian_doves.benchmark.measure import run_bench
from martian_doves.benchmark.workload import BenchOptions
from martian_doves.cli.options import fields_options, mode_option, option, options_from
from martian_doves.cli.output import EXIT_OK, show


@click.command()
@click.argument("where", required=False, metavar="[STORE]")
@mode_option
@fields_options(BenchOptions)
@option("--run-args", default="", metavar="'OPTIONS'", show_default=False, env="DOVES_BENCH_RUN_ARGS",
        help="More options for the fleet's doves run, in one string: --run-args '--durable --prefetch 4'.")
@option("--keep", is_flag=True, default=False, env="DOVES_BENCH_KEEP",
        help="Leave the benchmark's stores in place (their locations are printed).")
@option("--json", "as_json", is_flag=True, default=False, env="DOVES_BENCH_JSON",
        help="Print one JSON object (every sample included) instead of the table.")
@option("--quiet", "-q", is_flag=True, default=False, env="DOVES_BENCH_QUIET",
        help="Say nothing on stderr while it runs.")
def bench(where: str | None, mode: str, run_args: str, keep: bool, as_json: bool, quiet: bool,
          **params: Any) -> int:
    """Measure this host: M x countdown(K) through the Python API on a warm fleet of worker processes.

    Each run makes a fresh store and removes it afterwards: in the system's temporary
    folder without STORE, inside the folder STORE (to measure that filesystem), or as a
    new schema of the database of a postgresql:// STORE. It starts `doves run --watch`
    and waits until every worker is up and warm, then (first run) submits probes one at
    a time to the idle fleet, measuring submit-to-start, and the idle fleet's CPU use,
    then submits the M machines at once and measures until none is left: transitions/s
    (submit time included), each worker's peak RSS, and with --phase-timings the time
    each phase of a transition takes. A benchmark, not a test: the machine's other work
    shows in the figures.
    """
    options = options_from(BenchOptions, params)
    progress = None if quiet else (lambda line: click.echo(f"doves bench: {line}", err=True))
    report = run_bench(where, mode, options, shlex.split(run_args), keep=keep, progress=progress)
    show(as_json, report.as_dict(), render.table(report), render.text(report))
    return EXIT_OK
