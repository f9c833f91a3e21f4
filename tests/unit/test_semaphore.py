"""The temporal semaphore's arithmetic and protocol, on simulated clocks.

Phase arithmetic, rendezvous assignment and the skew guard are pure; the protocol
tests run several ``SemaphoreStore`` instances (one per simulated worker) on one real
folder, each with its own clock derived from a shared fake "true" clock, and the
filesystem's clock injected as that true clock. Nothing sleeps for real.
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path

import pytest

from martian_doves.clock import FakeClock
from martian_doves.config import Phase, Phases, SemaphoreOptions, WorkerOptions
from martian_doves.errors import ConfigError
from martian_doves.model import State
from martian_doves.registry import Registry
from martian_doves.stores.directory import semaphore
from martian_doves.stores.directory.semaphore import SemaphoreStore, available_workers, read_skew, rendezvous_owner
from martian_doves.worker import Worker

SEED = Phases(3, 3, 3, 1)


class OffsetClock:
    """A host clock: the true clock plus a fixed (or later changed) offset."""

    def __init__(self, true_clock: FakeClock, offset_seconds: float = 0.0) -> None:
        self.true_clock = true_clock
        self.offset_seconds = offset_seconds

    def time(self) -> float:
        return self.true_clock.time() + self.offset_seconds

    def monotonic(self) -> float:
        return self.true_clock.monotonic()

    def sleep(self, seconds: float) -> None:
        self.true_clock.advance(max(0.0, seconds))


# -- phase arithmetic ------------------------------------------------------------------


def test_seed_phases_match_the_seed_readme() -> None:
    """0-3 assignment, 4-7 commitment, 8-11 update, 12 s cycle; the README's worked example."""
    assert SEED.cycle_seconds == 12
    assert SEED.at(12 * 100 + 0.5)[1] is Phase.ASSIGNMENT
    assert SEED.at(12 * 100 + 3.5)[1] is Phase.BUFFER
    assert SEED.at(12 * 100 + 4.0)[1] is Phase.COMMITMENT
    assert SEED.at(12 * 100 + 7.5)[1] is Phase.BUFFER
    assert SEED.at(12 * 100 + 8.0)[1] is Phase.UPDATE
    assert SEED.at(12 * 100 + 11.2)[1] is Phase.BUFFER
    # "A worker that comes online at 1652942715.10 ... must wait 4.90 more seconds for Update."
    now = 1652942715.10
    cycle, phase, offset = SEED.at(now)
    assert offset == pytest.approx(3.10)
    assert phase is Phase.BUFFER
    update_start = SEED.cycle_start(cycle) + 8
    assert update_start - now == pytest.approx(4.90)


def test_next_boundary_walks_every_phase_in_order() -> None:
    t = SEED.cycle_start(7) + 0.2
    seen = []
    for _ in range(7):
        t = SEED.next_boundary(t)
        seen.append(SEED.at(t + 1e-6)[1])
    assert seen == [Phase.BUFFER, Phase.COMMITMENT, Phase.BUFFER, Phase.UPDATE, Phase.BUFFER,
                    Phase.ASSIGNMENT, Phase.BUFFER]


def test_phases_validate() -> None:
    with pytest.raises(ConfigError):
        Phases(0, 3, 3, 1).validate()
    with pytest.raises(ConfigError):
        Phases(3, 3, 3, -1).validate()


# -- assignment --------------------------------------------------------------------------


def test_rendezvous_is_deterministic_and_balanced() -> None:
    workers = ["w1", "w2", "w3", "w4"]
    states = [f"m{i}.state" for i in range(4000)]
    owners = [rendezvous_owner(s, workers) for s in states]
    assert owners == [rendezvous_owner(s, list(reversed(workers))) for s in states]
    counts = collections.Counter(owners)
    assert set(counts) == set(workers)
    assert max(counts.values()) < 1.2 * 1000 and min(counts.values()) > 0.8 * 1000


def test_rendezvous_moves_only_the_leaving_workers_states() -> None:
    states = [f"m{i}.state" for i in range(1000)]
    before = {s: rendezvous_owner(s, ["a", "b", "c"]) for s in states}
    after = {s: rendezvous_owner(s, ["a", "c"]) for s in states}
    moved = {s for s in states if before[s] != after[s]}
    assert moved == {s for s in states if before[s] == "b"}
    assert rendezvous_owner("x.state", []) is None


def test_available_workers_are_those_stamped_in_the_previous_cycle() -> None:
    start, cycle = 1200.0, 12.0
    stamps = {"fresh": 1195.0, "stale": 1180.0, "edge": 1188.0, "future": 1201.0}
    assert available_workers(stamps, start, cycle) == ["edge", "fresh"]


def test_skew_reading() -> None:
    times = iter([100.0, 100.2])
    reading = read_skew(lambda: next(times), lambda: 103.1)
    assert reading.skew_seconds == pytest.approx(3.0)
    assert reading.uncertainty_seconds == pytest.approx(0.1)
    assert not reading.within(0.5)
    assert read_skew(lambda: 50.0, lambda: 50.3).within(0.5)


# -- the protocol on simulated clocks -----------------------------------------------------------


def _counting_registry(executions: collections.Counter[str]) -> Registry:
    registry = Registry()

    def tick(payload: dict[str, int]) -> dict[str, int] | None:
        executions[f"{payload['id']}:{payload['count']}"] += 1
        return {"id": payload["id"], "count": payload["count"] - 1} if payload["count"] > 1 else None

    registry.register("count", tick)
    return registry


class Fleet:
    """Simulated workers sharing one folder; ``run`` interleaves their loops in fake time."""

    def __init__(self, root: Path, phases: Phases, offsets: dict[str, float], max_skew: float | None = None,
                 start: float = 1_800_000_000.0) -> None:
        self.true_clock = FakeClock(start)
        self.options = SemaphoreOptions(
            assignment_seconds=phases.assignment_seconds, commitment_seconds=phases.commitment_seconds,
            update_seconds=phases.update_seconds, buffer_seconds=phases.buffer_seconds,
            max_skew_seconds=max_skew, lease_seconds=1e9, scan_seconds=1e9,
        )
        self.root = root
        self.executions: collections.Counter[str] = collections.Counter()
        self.clocks = {name: OffsetClock(self.true_clock, offset) for name, offset in offsets.items()}
        self.stores = {
            name: SemaphoreStore(root, self.options, clock=clock, filesystem_time=self.true_clock.time)
            for name, clock in self.clocks.items()
        }
        registry = _counting_registry(self.executions)
        self.workers = {
            name: Worker(store, registry, WorkerOptions(name=name), clock=self.clocks[name])
            for name, store in self.stores.items()
        }
        self.registered: set[str] = set()

    def submit(self, machines: int, count: int) -> None:
        store = next(iter(self.stores.values()))
        store.submit([State(f"m{i}.state", "count", {"id": i, "count": count}) for i in range(machines)])

    def join(self, name: str) -> None:
        self.stores[name].register_worker(name)  # waits (in fake time) for the update phase
        self.registered.add(name)

    def run(self, seconds: float, step_seconds: float = 0.05, skip: set[str] | None = None) -> None:
        end = self.true_clock.time() + seconds
        while self.true_clock.time() < end:
            for name in sorted(self.registered - (skip or set())):
                self.workers[name].step(limit=10_000)
                self.stores[name].heartbeat(name, [])
            self.true_clock.advance(step_seconds)

    def finished(self) -> bool:
        return next(iter(self.stores.values())).is_finished()

    def contended(self) -> int:
        return sum(store.contended for store in self.stores.values())


def test_simulated_fleet_in_sync_runs_every_tick_once_without_contention(tmp_path: Path) -> None:
    """Four workers, clocks within the bound: all done, each tick once, no contention, shared out."""
    fleet = Fleet(tmp_path, SEED, {"w1": 0.0, "w2": 0.2, "w3": -0.2, "w4": 0.1})
    fleet.submit(200, 3)
    for name in fleet.stores:
        fleet.join(name)
    fleet.run(4 * SEED.cycle_seconds)
    assert fleet.finished()
    assert len(fleet.executions) == 600 and set(fleet.executions.values()) == {1}
    assert fleet.contended() == 0
    per_worker = [w.totals.committed for w in fleet.workers.values()]
    assert all(n > 0 for n in per_worker), per_worker


def test_simulated_many_transitions_per_cycle(tmp_path: Path) -> None:
    """The seed did one transition per worker per cycle; 1,000 machines x 3 need a handful of cycles."""
    fleet = Fleet(tmp_path, SEED, {"w1": 0.0, "w2": 0.0, "w3": 0.0, "w4": 0.0})
    fleet.submit(1000, 3)
    for name in fleet.stores:
        fleet.join(name)
    start = fleet.true_clock.time()
    cycles = 0
    while not fleet.finished() and cycles < 10:
        fleet.run(SEED.cycle_seconds, step_seconds=0.25)
        cycles += 1
    assert fleet.finished()
    assert cycles <= 4, f"took {cycles} cycles ({fleet.true_clock.time() - start:.0f} s simulated)"
    assert sum(fleet.executions.values()) == 3000


def test_skew_beyond_the_buffer_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A worker 2 s fast against 1 s buffers claims nothing and says why; the rest finish everything."""
    fleet = Fleet(tmp_path, SEED, {"ok1": 0.0, "ok2": 0.1, "skewed": 2.0})
    fleet.submit(100, 2)
    with caplog.at_level(logging.ERROR, logger="martian_doves.stores.directory.semaphore"):
        for name in fleet.stores:
            fleet.join(name)
        fleet.run(4 * SEED.cycle_seconds)
    assert fleet.finished()
    assert fleet.workers["skewed"].totals.claimed == 0
    assert fleet.stores["skewed"].refusing
    assert any("clock skew" in r.getMessage() and "not taking part" in r.getMessage() for r in caplog.records)
    assert set(fleet.executions.values()) == {1}


def test_skew_at_the_bound_still_takes_part(tmp_path: Path) -> None:
    """Exactly at the limit (half a buffer) the worker takes part and nothing contends."""
    fleet = Fleet(tmp_path, SEED, {"a": 0.0, "b": 0.49, "c": -0.49})
    fleet.submit(300, 2)
    for name in fleet.stores:
        fleet.join(name)
    fleet.run(4 * SEED.cycle_seconds)
    assert fleet.finished()
    assert all(w.totals.claimed > 0 for w in fleet.workers.values())
    assert fleet.contended() == 0
    assert set(fleet.executions.values()) == {1}


def test_beyond_the_bound_without_the_guard_claims_still_never_double_run(tmp_path: Path) -> None:
    """With the guard switched off and skew of most of a cycle, views split (the semaphore's
    promise breaks) but the atomic claim still runs every tick exactly once."""
    fleet = Fleet(tmp_path, SEED, {"a": 0.0, "b": 5.0, "c": -4.0}, max_skew=1e9)
    fleet.submit(300, 2)
    for name in fleet.stores:
        fleet.join(name)
    fleet.run(6 * SEED.cycle_seconds)
    assert fleet.finished()
    assert len(fleet.executions) == 600 and set(fleet.executions.values()) == {1}


def test_a_clock_that_jumps_is_caught_at_the_next_cycle(tmp_path: Path) -> None:
    """A host whose clock is stepped an hour ahead stops taking part; when it is set right it rejoins."""
    fleet = Fleet(tmp_path, SEED, {"a": 0.0, "b": 0.0})
    for name in fleet.stores:
        fleet.join(name)
    fleet.run(2 * SEED.cycle_seconds)
    fleet.clocks["b"].offset_seconds = 3600.0
    fleet.submit(50, 2)
    fleet.run(3 * SEED.cycle_seconds)
    assert fleet.stores["b"].refusing
    assert fleet.workers["b"].totals.claimed == 0
    assert fleet.finished()
    fleet.clocks["b"].offset_seconds = 0.0
    fleet.stores["b"].submit([State(f"late{i}.state", "count", {"id": 1000 + i, "count": 1}) for i in range(60)])
    fleet.run(3 * SEED.cycle_seconds)
    assert not fleet.stores["b"].refusing
    assert fleet.workers["b"].totals.claimed > 0
    assert set(fleet.executions.values()) == {1}


def test_a_paused_worker_drops_out_of_the_assignment(tmp_path: Path) -> None:
    """A worker that stops answering (paused) is no longer assigned states after one cycle,
    so its share is not starved: the others finish everything."""
    fleet = Fleet(tmp_path, SEED, {"a": 0.0, "b": 0.0, "paused": 0.0})
    for name in fleet.stores:
        fleet.join(name)
    fleet.run(SEED.cycle_seconds)
    fleet.submit(90, 1)
    fleet.run(4 * SEED.cycle_seconds, skip={"paused"})
    assert fleet.finished()
    assert fleet.workers["paused"].totals.claimed == 0
    assert set(fleet.executions.values()) == {1}


def test_late_joiner_waits_for_the_update_phase(tmp_path: Path) -> None:
    """A worker joining mid-cycle registers only in the update phase (never mid-assignment)."""
    fleet = Fleet(tmp_path, SEED, {"early": 0.0, "late": 0.0})
    fleet.join("early")
    fleet.true_clock.set(SEED.cycle_start(int(fleet.true_clock.time() // 12) + 1) + 1.0)  # assignment phase
    fleet.join("late")
    assert SEED.at(fleet.true_clock.time())[1] is Phase.UPDATE
    fleet.submit(100, 2)
    fleet.run(4 * SEED.cycle_seconds)
    assert fleet.finished() and set(fleet.executions.values()) == {1}
    assert fleet.contended() == 0


def test_files_copied_in_mid_cycle_join_the_next_listing(tmp_path: Path) -> None:
    """A state file copied straight into the folder mid-cycle is admitted with a fresh stamp, so
    every worker first sees it in the same (next) cycle: no split views, no contention."""
    fleet = Fleet(tmp_path, SEED, {"a": 0.0, "b": 0.0, "c": 0.0})
    for name in fleet.stores:
        fleet.join(name)
    fleet.run(SEED.cycle_seconds + 5.0)  # now mid-commitment
    for i in range(40):
        (tmp_path / f"copied{i}.state").write_text(f'{{"state": "count", "payload": {{"id": {i}, "count": 1}}}}')
    for store in fleet.stores.values():
        store.admission._next_root_scan = 0.0
    fleet.run(4 * SEED.cycle_seconds)
    assert fleet.finished()
    assert set(fleet.executions.values()) == {1} and len(fleet.executions) == 40
    assert fleet.contended() == 0


def test_a_worker_busy_in_a_long_tick_is_left_out_until_a_thread_is_free(tmp_path: Path) -> None:
    """The seed's slow-countdown outlives a cycle. A worker whose only thread is inside such a
    tick is not stamped available, so the next cycle's states go to free workers instead of
    queueing behind the tick; once the thread asks for work again, the worker takes part."""
    fleet = Fleet(tmp_path, SEED, {"busy": 0.0, "free": 0.0})
    busy, free = fleet.stores["busy"], fleet.stores["free"]
    for name in fleet.stores:
        fleet.join(name)
    cycle = SEED.at(fleet.true_clock.time())[0]

    def go_to(cycles_ahead: int, phase_offset: float) -> None:
        fleet.true_clock.set(SEED.cycle_start(cycle + cycles_ahead) + phase_offset)

    def submit(prefix: str, count: int) -> None:
        busy.submit([State(f"{prefix}{i}.state", "count", {"id": i, "count": 1}) for i in range(count)])

    slow = next(f"slow{i}.state" for i in range(100) if rendezvous_owner(f"slow{i}.state", ["busy", "free"]) == "busy")
    busy.submit([State(slow, "count", {"id": 0, "count": 1})])
    go_to(1, 4.5)  # commitment: the busy worker's one thread takes the slow state and runs it
    [long_tick] = busy.claim("busy", 1)
    assert long_tick.name == slow and free.claim("free", 1) == []
    submit("next", 20)
    go_to(1, 8.5)  # update: only the heartbeat thread of the busy worker calls in
    busy.heartbeat("busy", [long_tick])
    assert free.claim("free", 1) == []
    go_to(2, 4.5)  # commitment: every state of this cycle goes to the free worker
    busy.heartbeat("busy", [long_tick])
    assert len(free.claim("free", 100)) == 20
    assert busy.heartbeat("busy", [long_tick]) == [] and not busy._queue

    assert busy.commit(long_tick, None) is None  # the long tick ends; the thread asks for work again
    assert busy.claim("busy", 1) == []
    submit("later", 40)
    go_to(2, 8.5)
    assert busy.claim("busy", 1) == [] and free.claim("free", 1) == []
    go_to(3, 4.5)
    assert len(busy.claim("busy", 100)) > 0 and len(free.claim("free", 100)) > 0


def test_a_cycle_assigns_each_worker_a_bounded_share_of_a_large_backlog(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(semaphore, "SHARE_START", 16)
    monkeypatch.setattr(semaphore, "SHARE_MAX", 16)
    fleet = Fleet(tmp_path, SEED, {"w1": 0.0, "w2": 0.0})
    fleet.submit(200, 1)
    for name in fleet.stores:
        fleet.join(name)
    fleet.run(SEED.cycle_seconds, step_seconds=0.25)
    assert 0 < sum(fleet.executions.values()) <= 2 * 16
    cycles = 1
    while not fleet.finished() and cycles < 30:
        fleet.run(SEED.cycle_seconds, step_seconds=0.25)
        cycles += 1
    assert fleet.finished() and len(fleet.executions) == 200 and set(fleet.executions.values()) == {1}
    assert fleet.contended() == 0


def test_a_worker_that_runs_dry_takes_a_larger_share_next_cycle(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(semaphore, "SHARE_START", 16)
    fleet = Fleet(tmp_path, SEED, {"w1": 0.0})
    fleet.submit(2000, 1)
    fleet.join("w1")
    fleet.run(3 * SEED.cycle_seconds, step_seconds=0.25)
    assert fleet.stores["w1"].share > 16
