"""One benchmark, measured as the peers' harness measures each queue.

For each run: a fresh store, a fleet (``doves run --watch``) started and warmed up
(probes ten at a time until every worker has run one).
On the first run only, while the fleet is idle: submit-to-start latency (one probe
at a time, each after ``idle_gap_seconds`` of quiet: submit time to the first
statement of its tick) and the fleet's CPU use over ``idle_seconds``. Then the
throughput: the clock starts just before the M states are submitted through the
public API (``Store.submit``, the submit time included) and stops when the store has
nothing pending or in progress (polled every 10 ms); the store must then count
exactly M x K more transitions done. Peak resident memory of each worker is read
last, before the fleet stops.
"""

from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from martian_doves import phases
from martian_doves.benchmark import procfs
from martian_doves.benchmark.ceiling import file_ceiling
from martian_doves.benchmark.fleet import BenchError, Fleet
from martian_doves.benchmark.probe import PROBE_STATE
from martian_doves.benchmark.target import fresh_store
from martian_doves.benchmark.workload import BenchOptions, Throughput, countdowns, median_rate, percentile
from martian_doves.errors import ConfigError
from martian_doves.model import State
from martian_doves.stores import is_postgres_url, open_store
from martian_doves.stores.base import Store

#: Receives a line saying what the benchmark does now (None: quiet).
Progress = Callable[[str], None] | None

#: How often the driver looks whether a run is over (the peers' harness: 10 ms).
_POLL_SECONDS = 0.01


@dataclass(frozen=True)
class BenchReport:
    """What one ``doves bench`` measured."""

    #: ``folder`` or ``postgresql``.
    store: str
    mode: str
    options: BenchOptions
    runs: tuple[Throughput, ...]
    #: Idle submit-to-start latencies, in milliseconds (first run).
    latency_ms: tuple[float, ...]
    #: CPU used by the idle fleet (supervisor and workers), in % of one core (first run).
    idle_cpu_percent: float | None
    #: Peak resident memory of each worker of the first run, in MB.
    peak_rss_mb: tuple[float, ...]
    #: Phase totals of every worker of every run (``phases.combine``), or None if not timed.
    phases: dict[str, dict[str, float]] | None
    #: The stores left in place (``keep``).
    kept: tuple[str, ...] = ()
    #: The file ceiling's rate after each run (``ceiling``), transitions/s.
    ceilings: tuple[float, ...] = ()

    @property
    def ceiling_per_second(self) -> float | None:
        return statistics.median(self.ceilings) if self.ceilings else None

    @property
    def transitions_per_second(self) -> float:
        return median_rate(self.runs)

    def phase_rows(self) -> list[tuple[str, int, float | None]]:
        """(phase, calls, microseconds per transition or None if not timed apart) of each phase.

        Transitions are commits. Claim and commit without the read and write inside them:
        the five add up. A store that reads in its claim's one round trip (PostgreSQL)
        times no read apart, nor a write apart from its commit.
        """
        if not self.phases:
            return []
        transitions = self.phases["commit"]["calls"] or 1
        seconds = phases.exclusive_seconds(self.phases)
        return [(name, int(self.phases[name]["calls"]),
                 seconds[name] / transitions * 1e6 if self.phases[name]["calls"] else None)
                for name in phases.PHASES]

    def as_dict(self) -> dict[str, Any]:
        o = self.options
        latency = None
        if self.latency_ms:
            latency = {"probes": len(self.latency_ms), "gap_seconds": o.idle_gap_seconds,
                       "p50_ms": round(percentile(self.latency_ms, 50), 3),
                       "p99_ms": round(percentile(self.latency_ms, 99), 3),
                       "samples_ms": [round(x, 3) for x in self.latency_ms]}
        return {
            "system": "martian-doves", "store": self.store, "mode": self.mode, **host(),
            "workload": {"machines": o.count, "steps": o.steps, "transitions": o.count * o.steps,
                         "tick_seconds": o.tick_seconds},
            "fleet": {"workers": o.workers, "concurrency": o.concurrency},
            "runs": [run.as_dict() for run in self.runs],
            "transitions_per_second": round(self.transitions_per_second, 1),
            "idle_latency": latency,
            "idle_cpu": None if self.idle_cpu_percent is None else
            {"seconds": o.idle_seconds, "percent_of_one_core": round(self.idle_cpu_percent, 3)},
            "peak_rss_mb": [round(x, 1) for x in self.peak_rss_mb],
            "phases": None if self.phases is None else {
                name: {"calls": calls, "us_per_transition": None if us is None else round(us, 2)}
                for name, calls, us in self.phase_rows()},
            "kept": list(self.kept),
            "file_ceiling": None if self.ceiling_per_second is None else {
                "runs": [round(rate, 1) for rate in self.ceilings],
                "transitions_per_second": round(self.ceiling_per_second, 1),
                "share": round(self.transitions_per_second / self.ceiling_per_second, 3)},
        }


def host() -> dict[str, Any]:
    """Where and when a figure was measured: the versions and the CPUs it ran on, the time."""
    return {"version": importlib.metadata.version("martian-doves"), "python": platform.python_version(),
            "cpus": os.cpu_count(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def wait_finished(store: Store, timeout_seconds: float, fleet: Fleet) -> None:
    """Wait until ``store`` has nothing pending or in progress.

    Raises:
        BenchError: not within ``timeout_seconds``, or the fleet exited meanwhile.
    """
    deadline = time.monotonic() + timeout_seconds
    while not store.is_finished():
        if time.monotonic() > deadline:
            raise BenchError(f"the store was not finished after {timeout_seconds:g} s")
        fleet.check()
        time.sleep(_POLL_SECONDS)


def _probe_state(name: str, probe_id: int, channel: Path) -> State:
    return State(name, PROBE_STATE, {"id": probe_id, "log": str(channel)})


def _channel(channel: Path) -> list[tuple[str, float, int]]:
    """The probes' ticks so far, from the side channel: (probe id, time it started, process id)."""
    try:
        text = channel.read_text()
    except FileNotFoundError:
        return []
    return [(probe_id, float(started), int(pid)) for probe_id, started, pid in
            (line.split() for line in text.splitlines())]


def _started_at(channel: Path, probe_id: int) -> float | None:
    """When the tick of probe ``probe_id`` started, as written on the side channel, or None yet."""
    return next((started for found, started, _ in _channel(channel) if found == str(probe_id)), None)


def warm_up(store: Store, fleet: Fleet, channel: Path, pids: Sequence[int], timeout_seconds: float = 60.0) -> None:
    """Submit probes ten at a time until every worker in ``pids`` has run one (as the peers' harness does).

    Raises:
        BenchError: not within ``timeout_seconds``.
    """
    deadline, batch = time.monotonic() + timeout_seconds, 0
    while not set(pids) <= {pid for _, _, pid in _channel(channel)}:
        if time.monotonic() > deadline:
            raise BenchError(f"not every worker ran a warm-up state within {timeout_seconds:g} s")
        store.submit([_probe_state(f"warm{batch}-{i}.state", -1, channel) for i in range(10)])
        batch += 1
        wait_finished(store, timeout_seconds, fleet)


def idle_latency(store: Store, channel: Path, probes: int, gap_seconds: float) -> list[float]:
    """Submit-to-start of ``probes`` probes, one at a time, each after ``gap_seconds`` idle; in ms.

    Raises:
        BenchError: a probe did not start within 30 s.
    """
    samples = []
    for probe_id in range(probes):
        time.sleep(gap_seconds)
        submitted = time.time()
        store.submit([_probe_state(f"probe{probe_id}.state", probe_id, channel)])
        deadline = time.monotonic() + 30
        while (started := _started_at(channel, probe_id)) is None:
            if time.monotonic() > deadline:
                raise BenchError(f"probe {probe_id} did not start within 30 s")
            time.sleep(0.0005)
        samples.append((started - submitted) * 1000)
    return samples


def idle_cpu_percent(fleet: Fleet, seconds: float) -> float:
    """CPU time the fleet's processes use while idle for ``seconds``, in % of one core."""
    return idle_cpu_split(fleet, seconds, [])[0]


def idle_cpu_split(fleet: Fleet, seconds: float, server: Sequence[int]) -> tuple[float, float]:
    """CPU time used while idle for ``seconds`` by the fleet's processes and by the ``server``
    processes (its PostgreSQL backends, ``Fleet.server_pids``), each in % of one core."""
    pids = fleet.pids()
    before, served, started = procfs.cpu_seconds(pids), procfs.cpu_seconds(server), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    used, serving = procfs.cpu_seconds(pids) - before, procfs.cpu_seconds(server) - served
    return 100 * used / elapsed, 100 * serving / elapsed


def throughput(store: Store, fleet: Fleet, options: BenchOptions) -> Throughput:
    """Submit M countdowns of K and wait for the end; checks the store counts M x K more done.

    Raises:
        BenchError: the count is off, or the run took longer than ``timeout_seconds``.
    """
    states = countdowns(options.count, options.steps, options.tick_seconds)
    done_before = store.status().done
    started = time.perf_counter()
    store.submit(states)
    submitted = time.perf_counter()
    wait_finished(store, options.timeout_seconds, fleet)
    finished = time.perf_counter()
    done = store.status().done - done_before
    expected = options.count * options.steps
    if done != expected:
        raise BenchError(f"expected {expected} transitions, the store counts {done}")
    return Throughput(done, finished - started, submitted - started)


@dataclass
class _RunOutcome:
    throughput: Throughput
    latency_ms: list[float]
    idle_cpu_percent: float | None
    peak_rss_mb: list[float]


def _run_once(target: str, mode: str, options: BenchOptions, run_args: Sequence[str], *, first: bool,
              phase_dir: str | None, progress: Progress) -> _RunOutcome:
    say = progress or (lambda _: None)
    store = open_store(target, mode)
    channel_dir = tempfile.mkdtemp(prefix="doves-bench-probes-")
    channel = Path(channel_dir) / "started.log"
    fleet = Fleet(target, mode, options.workers, options.concurrency, run_args, phase_dir)
    try:
        say(f"starting {options.workers} worker(s) on {store.description}")
        pids = fleet.wait_started(store)
        warm_up(store, fleet, channel, pids)
        latency: list[float] = []
        cpu = None
        if first and options.probes:
            say(f"idle latency: {options.probes} probes, {options.idle_gap_seconds:g} s apart")
            latency = idle_latency(store, channel, options.probes, options.idle_gap_seconds)
            wait_finished(store, 60, fleet)  # the last probe's tick has started; let it commit
        if first and options.idle_seconds:
            say(f"idle CPU over {options.idle_seconds:g} s")
            cpu = idle_cpu_percent(fleet, options.idle_seconds)
        say(f"throughput: {options.count} x countdown({options.steps})")
        result = throughput(store, fleet, options)
        say(f"{result.per_second:,.0f} transitions/s")
        rss = [mb for mb in (procfs.memory_mb(pid) for pid in pids) if mb is not None]
        return _RunOutcome(result, latency, cpu, rss)
    finally:
        fleet.stop()
        store.close()
        shutil.rmtree(channel_dir, ignore_errors=True)


def _read_phases(folder: str) -> list[dict[str, dict[str, float]]]:
    totals = []
    for path in glob.glob(os.path.join(folder, "*.json")):
        with open(path, encoding="utf-8") as f:
            totals.append(json.load(f))
    return totals


def run_bench(where: str | None, mode: str, options: BenchOptions, run_args: Sequence[str] = (), *,
              keep: bool = False, progress: Progress = None) -> BenchReport:
    """Run the benchmark ``options.runs`` times, each on a fresh store inside ``where``.

    Args:
        where: None (the system's temporary folder), a folder, or a ``postgresql://`` URL.
        mode: the folder store's mode.
        run_args: more options for the fleet's ``doves run``.
        keep: leave the stores in place (their targets are reported through ``progress``).

    Raises:
        BenchError: the fleet did not start, a run timed out, or a count was off.
    """
    options.validate()
    postgres = where is not None and is_postgres_url(where)
    if options.ceiling and postgres:
        raise ConfigError("--ceiling measures a folder's filesystem: it does not apply to a postgresql:// store")
    outcomes: list[_RunOutcome] = []
    ceilings: list[float] = []
    kept: list[str] = []
    timed: list[dict[str, dict[str, float]]] = []
    for run in range(options.runs):
        phase_dir = tempfile.mkdtemp(prefix="doves-bench-phases-") if options.phase_timings else None
        try:
            with fresh_store(where, keep=keep) as target:
                if keep:
                    kept.append(target)
                    if progress is not None:
                        progress(f"store kept: {target}")
                outcomes.append(_run_once(target, mode, options, run_args, first=run == 0, phase_dir=phase_dir,
                                          progress=progress))
            if phase_dir is not None:
                timed.extend(_read_phases(phase_dir))
            if options.ceiling:
                ceilings.append(file_ceiling(where, options.count, options.steps, options.workers))
                if progress is not None:
                    progress(f"file ceiling: {ceilings[-1]:,.0f} transitions/s")
        finally:
            if phase_dir is not None:
                shutil.rmtree(phase_dir, ignore_errors=True)
    first = outcomes[0]
    return BenchReport(
        store="postgresql" if postgres else "folder", mode="postgres" if postgres else mode, options=options,
        runs=tuple(o.throughput for o in outcomes), latency_ms=tuple(first.latency_ms),
        idle_cpu_percent=first.idle_cpu_percent, peak_rss_mb=tuple(first.peak_rss_mb),
        phases=phases.combine(timed) if options.phase_timings else None, kept=tuple(kept),
        ceilings=tuple(ceilings),
    )
