"""The machine model's scenarios of ``doves bench --scenario``, on a warm fleet of a fresh store.

- ``timers``: ``timers`` states each arm one timer (``Next(at=now + after)``), the
  afters spread ``timer_gap_seconds`` apart so the fleet is idle when each fires: the
  lateness of each firing (the start of its tick minus its due time). Then the idle
  fleet's CPU use with nothing scheduled, and again once ``scheduled`` more timers are
  armed a day ahead (many timers should cost no polling): its processes' and, on a
  PostgreSQL server on this host, the backends' serving them.
- ``fanout``: one state spawns ``children`` children that end at once, joined by one
  state: the time from the submit to the start of the join's tick, and children/s.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from martian_doves.benchmark.fleet import BenchError, Fleet
from martian_doves.benchmark.measure import Progress, host, idle_cpu_split, wait_finished, warm_up
from martian_doves.benchmark.probe import FANOUT_STATE, TIMER_STATE
from martian_doves.benchmark.target import fresh_store
from martian_doves.benchmark.workload import BenchOptions, percentile
from martian_doves.model import State, StatusReport
from martian_doves.settings import Checked, setting
from martian_doves.stores import is_postgres_url, open_store
from martian_doves.stores.base import Store

#: States per ``submit`` call when arming the scheduled timers.
_CHUNK = 10_000
#: How far ahead the idle CPU's scheduled timers are due: never while measured.
_FAR_SECONDS = 86_400.0
#: How often the driver reads the side channel or the store's status (timings come from the ticks).
_LOOK_SECONDS = 0.2


@dataclass(frozen=True)
class ScenarioOptions(Checked):
    """The sizes of ``doves bench --scenario``."""

    scenario: str | None = setting(None, "Measure the machine model instead: 'timers' (timer lateness, idle CPU "
                                         "with many timers scheduled) or 'fanout' (a Spawn's time to its join).",
                                   choices=("timers", "fanout"), env="DOVES_BENCH_SCENARIO", show_default="off")
    timers: int = setting(200, "timers: timers whose lateness is measured.", minimum=1, env="DOVES_BENCH_TIMERS")
    timer_after_seconds: float = setting(1.0, "timers: the first timer's delay (Next after=).", minimum=0,
                                         env="DOVES_BENCH_TIMER_AFTER_SECONDS")
    timer_gap_seconds: float = setting(0.05, "timers: each further timer is due this much later than the one "
                                             "before, so each fires on an idle fleet.", minimum=0,
                                       env="DOVES_BENCH_TIMER_GAP_SECONDS")
    scheduled: int = setting(100_000, "timers: timers scheduled a day ahead while the idle CPU is measured again; "
                                      "0: not.", minimum=0, env="DOVES_BENCH_SCHEDULED")
    children: int = setting(10_000, "fanout: children of the one Spawn.", minimum=1, maximum=100_000,
                            env="DOVES_BENCH_CHILDREN")


def _store_fields(target: str, mode: str, options: BenchOptions, scenario: str) -> dict[str, Any]:
    postgres = is_postgres_url(target)
    return {"system": "martian-doves", "scenario": scenario, "store": "postgresql" if postgres else "folder",
            "mode": "postgres" if postgres else mode, **host(),
            "fleet": {"workers": options.workers, "concurrency": options.concurrency}}


@contextmanager
def _warm_fleet(where: str | None, mode: str, options: BenchOptions, run_args: list[str],
                say: Callable[[str], None]) -> Iterator[tuple[str, Store, Fleet, Path]]:
    """A fresh store, its fleet started and warm, and a side channel file; all removed after."""
    channel_dir = tempfile.mkdtemp(prefix="doves-bench-channel-")
    channel = Path(channel_dir)
    try:
        with fresh_store(where) as target:
            store = open_store(target, mode)
            fleet = Fleet(target, mode, options.workers, options.concurrency, run_args)
            try:
                say(f"starting {options.workers} worker(s) on {store.description}")
                warm_up(store, fleet, channel / "warm.log", fleet.wait_started(store))
                yield target, store, fleet, channel
            finally:
                fleet.stop()
                store.close()
    finally:
        shutil.rmtree(channel_dir, ignore_errors=True)


def _lines(path: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def _no_failure(store: Store) -> StatusReport:
    """The store's status; ``BenchError`` naming the first failure if a state failed."""
    report = store.status()
    if report.failed:
        name, code, message = (report.recent_failures or [("?", "?", "?")])[0]
        raise BenchError(f"{report.failed} state(s) failed, e.g. {name}: {code}: {message}")
    return report


def _wait_lines(path: Path, count: int, store: Store, fleet: Fleet, timeout_seconds: float) -> list[list[str]]:
    """Wait until the side channel holds ``count`` lines; stop early if the fleet exits or a state fails."""
    deadline = time.monotonic() + timeout_seconds
    while len(lines := _lines(path)) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"{len(lines)} of {count} ticks reported within {timeout_seconds:g} s")
        fleet.check()
        _no_failure(store)
        time.sleep(_LOOK_SECONDS)
    return lines


def _timer_states(prefix: str, count: int, after: float, gap: float, log: Path | None) -> Iterator[list[State]]:
    for start in range(0, count, _CHUNK):
        yield [State(f"{prefix}{i}.state", TIMER_STATE,
                     {"id": i, "after": after + i * gap, **({"log": str(log)} if log is not None else {})})
               for i in range(start, min(start + _CHUNK, count))]


def _arm_scheduled(store: Store, fleet: Fleet, count: int, timeout_seconds: float) -> float:
    """Submit ``count`` timers due a day ahead, wait until every one is armed; the seconds that took."""
    started = time.monotonic()
    for states in _timer_states("far", count, _FAR_SECONDS, 0.0, None):
        store.submit(states)
    while (report := _no_failure(store)).scheduled < count or report.pending or report.in_progress:
        if time.monotonic() - started > timeout_seconds:
            raise BenchError(f"{report.scheduled} of {count} timers scheduled within {timeout_seconds:g} s")
        fleet.check()
        time.sleep(_LOOK_SECONDS)
    return time.monotonic() - started


def timers_scenario(where: str | None, mode: str, options: BenchOptions, scenario: ScenarioOptions,
                    run_args: list[str], *, progress: Progress = None) -> dict[str, Any]:
    """Timer lateness on an idle warm fleet, and its idle CPU without and with ``scheduled`` timers.

    Raises:
        BenchError: the fleet did not start, a timer did not fire in time, or a state failed.
    """
    say = progress or (lambda _: None)
    n, after, gap = scenario.timers, scenario.timer_after_seconds, scenario.timer_gap_seconds
    with _warm_fleet(where, mode, options, run_args, say) as (target, store, fleet, channel):
        log = channel / "fired.log"
        say(f"timers: {n}, due {after:g} s to {after + (n - 1) * gap:g} s after they are armed")
        for states in _timer_states("t", n, after, gap, log):
            store.submit(states)
        timeout = after + n * gap + options.timeout_seconds
        lateness = [float(late) * 1000 for _, late in _wait_lines(log, n, store, fleet, timeout)]
        wait_finished(store, options.timeout_seconds, fleet)
        say(f"idle CPU over {options.idle_seconds:g} s, nothing scheduled")
        idle_empty = idle_cpu_split(fleet, options.idle_seconds, fleet.server_pids(store))
        idle_scheduled, arm_seconds = None, None
        if scenario.scheduled:
            say(f"arming {scenario.scheduled:,} timers due in a day")
            arm_seconds = _arm_scheduled(store, fleet, scenario.scheduled, options.timeout_seconds)
            say(f"idle CPU over {options.idle_seconds:g} s, {scenario.scheduled:,} timers scheduled")
            idle_scheduled = idle_cpu_split(fleet, options.idle_seconds, fleet.server_pids(store))
        found = _store_fields(target, mode, options, "timers")
    return {
        **found,
        "timers": {"count": n, "after_seconds": after, "gap_seconds": gap},
        "lateness_ms": {"p50": round(percentile(lateness, 50), 3), "p99": round(percentile(lateness, 99), 3),
                        "max": round(max(lateness), 3), "min": round(min(lateness), 3),
                        "samples": [round(x, 3) for x in lateness]},
        # The fleet's cost: its processes and, on PostgreSQL, the server's backends serving them.
        "idle_cpu": {"seconds": options.idle_seconds, "empty_percent_of_one_core": round(sum(idle_empty), 3),
                     "empty_server_percent_of_one_core": round(idle_empty[1], 3),
                     "scheduled": scenario.scheduled, "arm_seconds": None if arm_seconds is None else
                     round(arm_seconds, 2),
                     "scheduled_percent_of_one_core": None if idle_scheduled is None else round(sum(idle_scheduled), 3),
                     "scheduled_server_percent_of_one_core": None if idle_scheduled is None else
                     round(idle_scheduled[1], 3)},
    }


def fanout_scenario(where: str | None, mode: str, options: BenchOptions, scenario: ScenarioOptions,
                    run_args: list[str], *, progress: Progress = None) -> dict[str, Any]:
    """One ``Spawn`` of ``children`` children on a warm fleet: the time from its submit to its join.

    Raises:
        BenchError: the fleet did not start, the join did not run in time, a state (the join
            among them) failed, or the join saw other than every child done.
    """
    say = progress or (lambda _: None)
    n = scenario.children
    with _warm_fleet(where, mode, options, run_args, say) as (target, store, fleet, channel):
        log = channel / "joined.log"
        say(f"fan-out: {n:,} children and their join")
        submitted = time.time()
        store.submit([State("fanout.state", FANOUT_STATE, {"children": n, "log": str(log)})])
        [[started, seen, done]] = _wait_lines(log, 1, store, fleet, options.timeout_seconds)
        wait_finished(store, options.timeout_seconds, fleet)
        found = _store_fields(target, mode, options, "fanout")
    if (int(seen), int(done)) != (n, n):
        raise BenchError(f"the join saw {seen} children, {done} of them done; expected {n}, all done")
    seconds = float(started) - submitted
    return {**found, "children": n, "seconds_to_join": round(seconds, 3),
            "children_per_second": round(n / seconds, 1) if seconds > 0 else None}
