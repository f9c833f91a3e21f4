"""What ``doves bench`` prints: the report as rows, then a rich table or plain lines."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from martian_doves.benchmark.measure import BenchReport
from martian_doves.benchmark.workload import percentile


def rows(report: BenchReport) -> list[tuple[str, str]]:
    """(measure, value) pairs, in the order a reader wants them."""
    o = report.options
    rates = ", ".join(f"{run.per_second:,.0f}" for run in report.runs)
    found = [
        ("store", report.store if report.store == "postgresql" else f"{report.store}, {report.mode} mode"),
        ("workload", f"{o.count:,} x countdown({o.steps}) = {o.count * o.steps:,} transitions"
                     + (f", ticks of {o.tick_seconds:g} s" if o.tick_seconds else "")),
        ("fleet", f"{o.workers} worker(s), concurrency {o.concurrency}"),
        ("transitions/s", f"{report.transitions_per_second:,.0f}"
                          + (f" (median of {len(report.runs)}: {rates})" if len(report.runs) > 1 else "")),
        ("submit time", ", ".join(f"{run.submit_seconds:.2f} s" for run in report.runs)),
    ]
    if report.ceiling_per_second is not None:
        found.append(("file ceiling", f"{report.ceiling_per_second:,.0f} transitions/s on the same filesystem: "
                                      f"{report.transitions_per_second / report.ceiling_per_second:.0%} of it"))
    if report.latency_ms:
        found.append(("idle submit-to-start", f"p50 {percentile(report.latency_ms, 50):.2f} ms, "
                                              f"p99 {percentile(report.latency_ms, 99):.2f} ms "
                                              f"({len(report.latency_ms)} probes)"))
    if report.idle_cpu_percent is not None:
        found.append(("idle fleet CPU", f"{report.idle_cpu_percent:.2f}% of one core over {o.idle_seconds:g} s"))
    if report.peak_rss_mb:
        found.append(("peak RSS per worker", ", ".join(f"{mb:.0f} MB" for mb in report.peak_rss_mb)))
    return found


def phase_lines(report: BenchReport) -> list[tuple[str, str, str]]:
    """(phase, calls, µs per transition) of each phase timed."""
    return [(name, f"{calls:,}", "in the step around it" if us is None else f"{us:,.1f}")
            for name, calls, us in report.phase_rows()]


#: Said under the phase table: which phases hold others.
PHASE_NOTE = ("claim without the read in it, commit without the write: the five add up; a chained "
              "successor is claimed by its parent's commit")


def _summary(title: str, found: list[tuple[str, str]]) -> Table:
    summary = Table(title=title, show_header=False)
    summary.add_column("measure", style="bold")
    summary.add_column("value")
    for label, value in found:
        summary.add_row(label, value)
    return summary


def table(report: BenchReport) -> RenderableType:
    summary = _summary("doves bench", rows(report))
    if not report.phases:
        return summary
    timings = Table(title="time per transition, by phase", caption=PHASE_NOTE)
    for column in ("phase", "calls", "µs per transition"):
        timings.add_column(column, justify="left" if column == "phase" else "right")
    for line in phase_lines(report):
        timings.add_row(*line)
    return Group(summary, timings)


def text(report: BenchReport) -> str:
    lines = [f"{label}: {value}" for label, value in rows(report)]
    if report.phases:
        lines.append(f"time per transition, by phase ({PHASE_NOTE}):")
        lines += [f"  {name}: {us}{' µs' if us[0].isdigit() else ''} ({calls} calls)"
                  for name, calls, us in phase_lines(report)]
    return "\n".join(lines)


def curve_title(curve: dict[str, Any]) -> str:
    """A curve's title: what was measured, on which store, by how many workers."""
    what = "worker memory and rate against history" if curve["scale"] == "memory" \
        else "rate and first commit against the backlog"
    return f"{what}, {curve['store']}, {curve['workers']} worker(s), countdown({curve['steps']})"


def curve_rows(curve: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """A curve's columns and rows, as text."""
    if curve["scale"] == "memory":
        return (["transitions", "seconds", "RSS per worker (MB)", "transitions/s"],
                [[f"{p['transitions']:,}", f"{p['seconds']:.1f}", ", ".join(f"{mb:.0f}" for mb in p["rss_mb"]),
                  "" if p["transitions_per_second"] is None else f"{p['transitions_per_second']:,.0f}"]
                 for p in curve["points"]])
    return (["pending", "submit/s", "status (s)", "first commit (s)", "transitions/s"],
            [[f"{p['pending']:,}", f"{p['submit_per_second']:,.0f}", f"{p['status_seconds']:.2f}",
              f"{p['first_commit_seconds']:.2f}", f"{p['transitions_per_second']:,.0f}"] for p in curve["points"]])


def curve_table(curve: dict[str, Any]) -> RenderableType:
    columns, lines = curve_rows(curve)
    found = Table(title=curve_title(curve))
    for column in columns:
        found.add_column(column, justify="right")
    for line in lines:
        found.add_row(*line)
    return found


def curve_text(curve: dict[str, Any]) -> str:
    columns, lines = curve_rows(curve)
    return "\n".join("  ".join(line) for line in [columns, *lines])


def _served(percent: float | None) -> str:
    """The share of an idle CPU figure spent in the PostgreSQL server's backends, if any."""
    return f", {percent:.2f}% of it in the server's backends" if percent else ""


def scenario_rows(found: dict[str, Any]) -> list[tuple[str, str]]:
    """(measure, value) pairs of a ``--scenario`` report."""
    store = found["store"] if found["store"] == "postgresql" else f"{found['store']}, {found['mode']} mode"
    fleet = found["fleet"]
    lines = [("store", store), ("fleet", f"{fleet['workers']} worker(s), concurrency {fleet['concurrency']}")]
    if found["scenario"] == "fanout":
        return [*lines, ("fan-out", f"{found['children']:,} children and their join"),
                ("submit to join", f"{found['seconds_to_join']:.2f} s"),
                ("children/s", "" if found["children_per_second"] is None else f"{found['children_per_second']:,.0f}")]
    timers, late, idle = found["timers"], found["lateness_ms"], found["idle_cpu"]
    lines += [("timers", f"{timers['count']:,}, due {timers['after_seconds']:g} s after arming, "
                         f"{timers['gap_seconds']:g} s apart"),
              ("lateness", f"p50 {late['p50']:.2f} ms, p99 {late['p99']:.2f} ms, max {late['max']:.2f} ms"),
              ("idle fleet CPU", f"{idle['empty_percent_of_one_core']:.2f}% of one core over {idle['seconds']:g} s"
                                 f"{_served(idle['empty_server_percent_of_one_core'])}")]
    if idle["scheduled_percent_of_one_core"] is not None:
        cpu, armed = idle["scheduled_percent_of_one_core"], idle["arm_seconds"]
        lines.append((f"... with {idle['scheduled']:,} scheduled", f"{cpu:.2f}% of one core"
                      f"{_served(idle['scheduled_server_percent_of_one_core'])} (armed in {armed:.1f} s)"))
    return lines


def scenario_table(found: dict[str, Any]) -> RenderableType:
    return _summary(f"doves bench --scenario {found['scenario']}", scenario_rows(found))


def scenario_text(found: dict[str, Any]) -> str:
    return "\n".join(f"{label}: {value}" for label, value in scenario_rows(found))
