"""The curves of ``doves bench --scale``: how a fleet holds up as the numbers grow.

- ``memory``: one ``--watch`` fleet runs ``transitions`` in all, fed in batches of
  ``batch`` machines whenever fewer than half a batch are left; after every
  ``transitions / points`` transitions each worker's resident memory is read, and
  the rate since the sample before. A worker whose memory grows with the states it
  has seen, or a store whose every transition costs more as its history grows,
  shows it here.
- ``pending``: for each backlog size, a fresh store gets that many machines before
  any worker runs (the submit rate is measured too), then a fleet starts: the time to
  its first commit (a folder store's first done marker; any other store's status), and
  its rate over ``window_seconds`` from then on, judged by two status reads (whose
  duration at that size is reported as well).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

from martian_doves.benchmark import procfs
from martian_doves.benchmark.fleet import BenchError, Fleet
from martian_doves.benchmark.measure import Progress, host, wait_finished
from martian_doves.benchmark.target import fresh_store
from martian_doves.benchmark.workload import BenchOptions, countdowns
from martian_doves.errors import ConfigError
from martian_doves.model import State, StatusReport
from martian_doves.sampler import next_status_after
from martian_doves.settings import Checked, setting
from martian_doves.stores import is_postgres_url, open_store
from martian_doves.stores.base import Store

#: Machines per ``submit`` call: the driver never holds a million states at once.
SUBMIT_CHUNK = 10_000
#: How often the memory run looks at the store (status) to feed it and to sample.
_LOOK_SECONDS = 0.5


@dataclass(frozen=True)
class ScaleOptions(Checked):
    """The sizes of ``doves bench --scale`` and where its curves go."""

    scale: str | None = setting(None, "Draw a curve instead: 'memory' (worker RSS against transitions of one "
                                      "--watch fleet) or 'pending' (rate and first commit against the backlog).",
                                choices=("memory", "pending"), env="DOVES_BENCH_SCALE", show_default="off")
    transitions: int = setting(1_000_000, "memory: transitions in all.", minimum=1, env="DOVES_BENCH_TRANSITIONS")
    batch: int = setting(10_000, "memory: machines submitted whenever fewer than half as many are left.",
                         minimum=1, env="DOVES_BENCH_BATCH")
    points: int = setting(50, "memory: memory samples along the run.", minimum=1, env="DOVES_BENCH_POINTS")
    pending: str = setting("10000,100000,1000000", "pending: the backlog sizes, separated by commas.",
                           metavar="N,N,...", env="DOVES_BENCH_PENDING")
    window_seconds: float = setting(10.0, "pending: how long the rate is measured after the first commit.",
                                    minimum=0, above_minimum=True, env="DOVES_BENCH_WINDOW_SECONDS")
    out: str = setting(".", "Folder the curve is written to: <store>-<scale>.json, and .png with matplotlib "
                            "(pip install 'martian-doves[bench]').", metavar="DIR", env="DOVES_BENCH_OUT")

    def sizes(self) -> list[int]:
        """``pending`` as numbers.

        Raises:
            ConfigError: a size is not a positive whole number.
        """
        try:
            sizes = [int(part.replace("_", "")) for part in self.pending.split(",") if part.strip()]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1:
            raise ConfigError(f"--pending takes positive numbers separated by commas, not {self.pending!r}")
        return sizes

    def validate(self) -> Self:
        super().validate()
        self.sizes()
        return self


def _chunks(count: int, steps: int, tick_seconds: float, prefix: str) -> Iterator[list[State]]:
    for start in range(0, count, SUBMIT_CHUNK):
        states = countdowns(min(SUBMIT_CHUNK, count - start), steps, tick_seconds, f"{prefix}{start}-")
        yield states


def submit_all(store: Store, count: int, steps: int, tick_seconds: float, prefix: str) -> float:
    """Submit ``count`` countdowns in chunks; the seconds it took."""
    started = time.perf_counter()
    for states in _chunks(count, steps, tick_seconds, prefix):
        store.submit(states)
    return time.perf_counter() - started


def _timed_status(store: Store) -> tuple[StatusReport, float, float]:
    """The store's status, the monotonic time it was asked at, and how long the answer took."""
    asked = time.monotonic()
    report = store.status()
    return report, asked, time.monotonic() - asked


@dataclass(frozen=True)
class MemoryPoint:
    transitions: int
    seconds: float
    #: Resident memory of each worker now (VmRSS), MB.
    rss_mb: tuple[float, ...]


def _rates(curve: Sequence[MemoryPoint]) -> list[float | None]:
    """The rate since the point before, at each point (None at the first): a rate that falls as the
    transitions processed grow is a cost that grows with history."""
    rates: list[float | None] = [None]
    for before, point in itertools.pairwise(curve):
        elapsed = point.seconds - before.seconds
        rates.append(round((point.transitions - before.transitions) / elapsed, 1) if elapsed > 0 else None)
    return rates


def memory_curve(where: str | None, mode: str, options: BenchOptions, transitions: int, batch: int, points: int,
                 run_args: Sequence[str] = (), *, progress: Progress = None) -> dict[str, Any]:
    """Worker RSS against transitions processed, on one ``--watch`` fleet fed in batches.

    Raises:
        BenchError: the fleet did not start, or the store's count is off at the end.
    """
    say = progress or (lambda _: None)
    machines = -(-transitions // options.steps)
    every = max(1, transitions // max(1, points))
    curve: list[MemoryPoint] = []
    with fresh_store(where) as target:
        store = open_store(target, mode)
        fleet = Fleet(target, mode, options.workers, options.concurrency, run_args)
        try:
            pids = fleet.wait_started(store)
            say(f"memory: {machines:,} x countdown({options.steps}) in batches of {batch:,}, "
                f"a sample every {every:,} transitions")
            started, submitted, next_sample = time.monotonic(), 0, 0
            while True:
                report, _, took = _timed_status(store)
                if report.done >= next_sample:
                    rss = tuple(procfs.memory_mb(pid, "VmRSS") or 0.0 for pid in pids)
                    curve.append(MemoryPoint(report.done, time.monotonic() - started, rss))
                    say(f"{report.done:,} transitions: RSS {', '.join(f'{mb:.0f}' for mb in rss)} MB")
                    next_sample = (report.done // every + 1) * every
                if submitted >= machines and report.finished:
                    break
                if submitted < machines and report.pending + report.in_progress < batch / 2:
                    count = min(batch, machines - submitted)
                    submit_all(store, count, options.steps, options.tick_seconds, f"b{submitted}-")
                    submitted += count
                    continue
                fleet.check()
                # A status of millions of files takes seconds: reading it at most a tenth of the
                # time leaves the fleet the machine it is measured on.
                time.sleep(next_status_after(_LOOK_SECONDS, took))
            wait_finished(store, options.timeout_seconds, fleet)
            done = store.status().done
            rss = tuple(procfs.memory_mb(pid, "VmRSS") or 0.0 for pid in pids)
            if curve[-1].transitions < done:  # the last sample may be the end already
                curve.append(MemoryPoint(done, time.monotonic() - started, rss))
            peak = [procfs.memory_mb(pid) or 0.0 for pid in pids]
        finally:
            fleet.stop()
            store.close()
    if done != machines * options.steps:
        raise BenchError(f"expected {machines * options.steps} transitions, the store counts {done}")
    return {
        "scale": "memory", **host(), "workers": options.workers, "concurrency": options.concurrency,
        "steps": options.steps,
        "batch": batch, "transitions": done,
        "points": [{"transitions": p.transitions, "seconds": round(p.seconds, 2),
                    "rss_mb": [round(mb, 1) for mb in p.rss_mb], "transitions_per_second": rate}
                   for p, rate in zip(curve, _rates(curve), strict=True)],
        "peak_rss_mb": [round(mb, 1) for mb in peak],
    }


def _committed(store: Store, target: str) -> Callable[[], bool]:
    """Whether the fleet has committed a transition yet, asked as cheaply as the store allows:
    on a folder store its first done marker (a ``status`` there lists every pending hint, a
    second's work at a million), on any other its status."""
    if is_postgres_url(target):
        return lambda: store.status().done > 0
    done = os.path.join(target, "done")

    def seen() -> bool:
        try:
            with os.scandir(done) as listing:
                return next(listing, None) is not None
        except FileNotFoundError:
            return False

    return seen


def _pending_point(where: str | None, mode: str, options: BenchOptions, pending: int, window_seconds: float,
                   run_args: Sequence[str], say: Progress) -> dict[str, Any]:
    with fresh_store(where) as target:
        store = open_store(target, mode)
        try:
            submit_seconds = submit_all(store, pending, options.steps, options.tick_seconds, "p")
            _, _, status_seconds = _timed_status(store)
            fleet = Fleet(target, mode, options.workers, options.concurrency, run_args)
            try:
                started = time.monotonic()
                committed = _committed(store, target)
                while True:
                    asked = time.monotonic()
                    if committed():
                        break
                    fleet.check()
                    if asked - started > options.timeout_seconds:
                        raise BenchError(f"no commit within {options.timeout_seconds:g} s of the start")
                    time.sleep(0.01)
                first_commit = asked - started
                report, first_at, _ = _timed_status(store)
                first_done = report.done
                # How busy the workers are over the window: CPU time against wall time (ticks that
                # do not sleep keep a busy worker on a core; one waiting for work uses none).
                pids = fleet.worker_pids(store, report)
                cpu_before = procfs.cpu_seconds(pids)
                ended = False  # a backlog done before the window ends: the rate up to its end
                while not ended and time.monotonic() - first_at < window_seconds:
                    time.sleep(min(0.5, max(0.0, window_seconds - (time.monotonic() - first_at))))
                    ended = store.is_finished()
                cpu_seconds = procfs.cpu_seconds(pids) - cpu_before
                report, asked, _ = _timed_status(store)
            finally:
                fleet.stop()
        finally:
            store.close()
    rate = (report.done - first_done) / (asked - first_at)
    busy = cpu_seconds / ((asked - first_at) * len(pids)) if pids else None
    point = {"pending": pending, "submit_seconds": round(submit_seconds, 2),
             "submit_per_second": round(pending / submit_seconds, 1), "status_seconds": round(status_seconds, 3),
             "first_commit_seconds": round(first_commit, 2), "window_seconds": round(asked - first_at, 2),
             "transitions_per_second": round(rate, 1), "finished_in_window": ended,
             "worker_cpu_share": None if busy is None else round(busy, 3)}
    if say is not None:
        say(f"{pending:,} pending: first commit after {first_commit:.2f} s, {rate:,.0f} transitions/s, "
            f"status {status_seconds:.2f} s, submit {pending / submit_seconds:,.0f}/s"
            + ("" if busy is None else f", workers busy {busy:.0%} (CPU)"))
    return point


def pending_curve(where: str | None, mode: str, options: BenchOptions, sizes: Sequence[int], window_seconds: float,
                  run_args: Sequence[str] = (), *, progress: Progress = None) -> dict[str, Any]:
    """The rate of a fresh fleet, and its time to a first commit, for each backlog size in ``sizes``.

    Raises:
        BenchError: the fleet did not start or committed nothing in time.
    """
    points = []
    for size in sizes:
        if progress is not None:
            progress(f"pending: {size:,} x countdown({options.steps}), then {options.workers} worker(s)")
        points.append(_pending_point(where, mode, options, size, window_seconds, run_args, progress))
    return {"scale": "pending", **host(), "workers": options.workers, "concurrency": options.concurrency,
            "steps": options.steps, "points": points}
