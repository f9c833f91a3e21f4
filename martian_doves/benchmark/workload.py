"""The benchmark's options and the peers' countdown workload, with the figures it reports."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from martian_doves.model import State
from martian_doves.settings import Checked, setting


@dataclass(frozen=True)
class BenchOptions(Checked):
    """What ``doves bench`` runs: the workload, the fleet, and what it measures besides throughput."""

    count: int = setting(1000, "Machines submitted at once (M), each a countdown of --steps transitions.",
                         short="-M", minimum=1, env="DOVES_BENCH_COUNT")
    steps: int = setting(10, "Transitions per machine (K): M x K transitions in all.", short="-K", minimum=1,
                         env="DOVES_BENCH_STEPS")
    workers: int = setting(2, "Worker processes of the fleet (doves run --workers).", short="-w", minimum=1,
                           maximum=1024, env="DOVES_BENCH_WORKERS")
    concurrency: int = setting(1, "Ticks each worker runs at once (doves run --concurrency).", short="-c",
                               minimum=1, env="DOVES_BENCH_CONCURRENCY")
    tick_seconds: float = setting(0.0, "How long each tick sleeps (the countdown's tick_seconds).", minimum=0,
                                  env="DOVES_BENCH_TICK_SECONDS")
    runs: int = setting(1, "Throughput runs, each on a fresh store and fleet; the median is reported.",
                        minimum=1, env="DOVES_BENCH_RUNS")
    probes: int = setting(50, "Idle submit-to-start probes, one at a time on the warm, idle fleet of the first "
                              "run; 0: none.", minimum=0, env="DOVES_BENCH_PROBES")
    idle_gap_seconds: float = setting(0.5, "How long the fleet is left idle before each probe.", minimum=0,
                                      env="DOVES_BENCH_IDLE_GAP_SECONDS")
    idle_seconds: float = setting(5.0, "How long the CPU use of the idle fleet is measured (first run); 0: not.",
                                  minimum=0, env="DOVES_BENCH_IDLE_SECONDS")
    phase_timings: bool = setting(False, "Time each phase of a transition in the workers (claim, read, tick, "
                                         "write, commit); adds a little to every transition.",
                                  env="DOVES_BENCH_PHASE_TIMINGS")
    ceiling: bool = setting(False, "Folder stores: after each run, run the peers' file-operation ceiling (bare "
                                   "claim/read/write/rename, as many processes as workers, no coordination) on the "
                                   "same filesystem, and give the rate as a share of it.",
                            env="DOVES_BENCH_CEILING")
    timeout_seconds: float = setting(600.0, "Longest one run may take before the benchmark gives up.",
                                     minimum=0, above_minimum=True, env="DOVES_BENCH_TIMEOUT_SECONDS")


def countdowns(count: int, steps: int, tick_seconds: float, prefix: str = "m") -> list[State]:
    """``count`` machines ``{"state": "countdown", "payload": {"count": steps, "tick_seconds": ...}}``."""
    payload = {"count": steps, "tick_seconds": tick_seconds}
    return [State(f"{prefix}{i}.state", "countdown", dict(payload)) for i in range(count)]


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile, interpolated between ranks (numpy's 'linear', as the peers' harness)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * p / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Throughput:
    """One throughput run: the clock starts before the M submits and stops when nothing is left."""

    transitions: int
    seconds: float
    #: The part of ``seconds`` the submit itself took (included, as in the peers' harness).
    submit_seconds: float

    @property
    def per_second(self) -> float:
        return self.transitions / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"transitions": self.transitions, "seconds": round(self.seconds, 4),
                "submit_seconds": round(self.submit_seconds, 4), "transitions_per_second": round(self.per_second, 1)}


def median_rate(runs: Sequence[Throughput]) -> float:
    return statistics.median(run.per_second for run in runs)
