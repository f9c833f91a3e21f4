"""``doves bench``: the countdown workload on a fresh store and a warm fleet, as the peers are measured."""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

import click

from martian_doves.benchmark import plots, render
from martian_doves.benchmark.measure import run_bench
from martian_doves.benchmark.scale import ScaleOptions, memory_curve, pending_curve
from martian_doves.benchmark.scenarios import ScenarioOptions, fanout_scenario, timers_scenario
from martian_doves.benchmark.workload import BenchOptions
from martian_doves.cli.options import fields_options, mode_option, option, options_from
from martian_doves.cli.output import EXIT_OK, show
from martian_doves.errors import ConfigError
from martian_doves.stores import is_postgres_url


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
@fields_options(ScaleOptions)
@fields_options(ScenarioOptions)
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

    \b
    --scenario measures the machine model on a warm fleet instead:
      timers   the lateness of --timers timers firing on the idle fleet (the
               start of each tick minus its due time), and its idle CPU with
               nothing scheduled, then with --scheduled timers due in a day
      fanout   one Spawn of --children children that end at once: the time
               from its submit to its join's tick, and children/s

    \b
    --scale draws a curve instead, into --out as JSON (and PNG with matplotlib):
      memory   worker RSS against transitions processed by one --watch fleet
               (--transitions in all, fed --batch machines at a time)
      pending  for each --pending size: a fleet started on that backlog, its time
               to a first commit and its rate over --window-seconds
    """
    options = options_from(BenchOptions, params)
    scale = options_from(ScaleOptions, params)
    scenario = options_from(ScenarioOptions, params)
    progress = None if quiet else (lambda line: click.echo(f"doves bench: {line}", err=True))
    extra = shlex.split(run_args)
    if scenario.scenario is not None:
        if scale.scale is not None:
            raise ConfigError("give --scenario or --scale, not both")
        measure = timers_scenario if scenario.scenario == "timers" else fanout_scenario
        found = measure(where, mode, options, scenario, extra, progress=progress)
        show(as_json, found, render.scenario_table(found), render.scenario_text(found))
        return EXIT_OK
    if scale.scale is not None:
        return _curve(where, mode, options, scale, extra, as_json, progress)
    report = run_bench(where, mode, options, extra, keep=keep, progress=progress)
    show(as_json, report.as_dict(), render.table(report), render.text(report))
    return EXIT_OK


def _curve(where: str | None, mode: str, options: BenchOptions, scale: ScaleOptions, run_args: list[str],
           as_json: bool, progress: Any) -> int:
    """``--scale``: measure the curve, write it (JSON, PNG if it can) and print it."""
    if scale.scale == "memory":
        curve = memory_curve(where, mode, options, scale.transitions, scale.batch, scale.points, run_args,
                             progress=progress)
    else:
        curve = pending_curve(where, mode, options, scale.sizes(), scale.window_seconds, run_args,
                              progress=progress)
    store = "postgresql" if where is not None and is_postgres_url(where) else f"folder-{mode}"
    curve["store"] = store
    os.makedirs(scale.out, exist_ok=True)
    base = os.path.join(scale.out, f"{store}-{scale.scale}")
    with open(f"{base}.json", "w", encoding="utf-8") as out:
        json.dump(curve, out, indent=2)
    written = [f"{base}.json"]
    if plots.available():
        plots.plot(curve, f"{base}.png", render.curve_title(curve))
        written.append(f"{base}.png")
    elif progress is not None:
        progress("no PNG: matplotlib is not installed (pip install 'martian-doves[bench]')")
    if progress is not None:
        progress(f"wrote {', '.join(written)}")
    show(as_json, curve, render.curve_table(curve), render.curve_text(curve))
    return EXIT_OK
