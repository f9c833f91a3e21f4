"""The worker loop, one ``step`` at a time, on the reference store and a fake clock.

Every test drives ``Worker.step()`` by hand against a real ``MemoryStore`` whose time
is a ``FakeClock``, so retries and delays are checked by moving the clock, never by
sleeping. ``RecordingStore`` is the real memory store plus a list of the failures it
was given, because a ``Failure``'s traceback is not part of ``history``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from martian_doves.clock import FakeClock
from martian_doves.config import WorkerOptions
from martian_doves.errors import ConfigError, Retry, StoreUnavailable
from martian_doves.model import Claim, Failure, State, Status
from martian_doves.registry import Registry
from martian_doves.retry import RetryPolicy
from martian_doves.steps import Event
from martian_doves.stores import open_store
from martian_doves.stores.memory import MemoryStore, expire_all
from martian_doves.worker import FAST_TICK_SECONDS, Worker, next_prefetch


class RecordingStore(MemoryStore):
    """The memory store, also keeping every ``Failure`` handed to ``fail``."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.failures: dict[str, Failure] = {}

    def fail(self, claim: Claim, failure: Failure) -> None:
        super().fail(claim, failure)
        self.failures[claim.name] = failure


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> RecordingStore:
    return RecordingStore(clock)


def _worker(store: MemoryStore, registry: Registry, clock: FakeClock, name: str = "w1", **options: Any) -> Worker:
    options.setdefault("retry", RetryPolicy(max_attempts=3, base_delay_seconds=2, max_delay_seconds=60, jitter=0))
    return Worker(store, registry, WorkerOptions(name=name, **options), clock=clock)


def _registry(**handlers: Callable[[Any], Any]) -> Registry:
    registry = Registry()
    for name, handler in handlers.items():
        registry.register(name.replace("_", "-"), handler)
    return registry


def _count_down(payload: dict[str, Any]) -> dict[str, Any] | None:
    count = int(payload["count"]) - 1
    return {"count": count} if count > 0 else None


def _submit(store: MemoryStore, name: str, state: str, payload: dict[str, Any]) -> None:
    assert store.submit([State(name, state, payload)])[0].added


# -- outcomes ----------------------------------------------------------------------------


def test_successor_is_committed(store: RecordingStore, clock: FakeClock) -> None:
    """One step ticks one state and writes its successor under the seed's name, pending."""
    _submit(store, "c.state", "count", {"count": 2})
    worker = _worker(store, _registry(count=_count_down), clock, chain=False)
    result = worker.step()
    assert (result.claimed, result.committed, result.retried, result.failed) == (1, 1, 0, 0)
    history = store.history("c.state")
    assert [(e.name, e.status, e.payload) for e in history] == [
        ("c.state", Status.DONE, {"count": 2}),
        ("c.state-1", Status.PENDING, {"count": 1}),
    ]
    assert history[0].worker == "w1"


def test_machine_end_commits_without_successor(store: RecordingStore, clock: FakeClock) -> None:
    """A handler returning None ends the machine: done, and nothing new."""
    _submit(store, "c.state", "count", {"count": 1})
    result = _worker(store, _registry(count=_count_down), clock).step()
    assert result.committed == 1
    assert [e.name for e in store.history("c.state")] == ["c.state"]
    assert store.is_finished()
    assert _worker(store, _registry(count=_count_down), clock).step().claimed == 0


def test_successor_in_another_state(store: RecordingStore, clock: FakeClock) -> None:
    """A (state, payload) pair switches the successor's state."""
    _submit(store, "t.state", "green", {"n": 1})
    registry = _registry(green=lambda p: ("yellow", p), yellow=lambda p: None)
    _worker(store, registry, clock).step()
    assert [(e.state, e.status) for e in store.history("t.state")] == [
        ("green", Status.DONE), ("yellow", Status.DONE)]


def test_failing_tick_retries_with_backoff_then_fails_with_traceback(store: RecordingStore,
                                                                     clock: FakeClock) -> None:
    """Guarantee 5: a raising tick is retried after 2 s, then 4 s, then failed with its traceback
    and the history of every attempt."""
    calls: list[int] = []

    def flaky(payload: dict[str, Any]) -> None:
        calls.append(len(calls) + 1)
        raise ValueError(f"boom {len(calls)}")

    _submit(store, "f.state", "flaky", {})
    worker = _worker(store, _registry(flaky=flaky), clock)

    assert worker.step().retried == 1
    clock.advance(1.9)
    assert worker.step().claimed == 0, "claimed before its backoff elapsed"
    clock.advance(0.2)
    assert worker.step().retried == 1
    clock.advance(3.9)
    assert worker.step().claimed == 0
    clock.advance(0.2)
    assert worker.step().failed == 1
    assert calls == [1, 2, 3]

    failure = store.failures["f.state"]
    assert failure.code == "tick_failed"
    assert failure.attempts == 3
    assert failure.errors == ("ValueError: boom 1", "ValueError: boom 2", "ValueError: boom 3")
    assert failure.traceback is not None
    assert "Traceback" in failure.traceback and "ValueError: boom 3" in failure.traceback
    assert "flaky" in failure.traceback
    status = store.status()
    assert (status.failed, status.pending, status.in_progress) == (1, 0, 0)
    assert status.recent_failures == [("f.state", "tick_failed", "ValueError: boom 3")]
    assert store.is_finished()


def test_retry_then_success(store: RecordingStore, clock: FakeClock) -> None:
    """A tick that fails once and then succeeds commits normally on its second attempt."""
    attempts: list[int] = []

    def once(payload: dict[str, Any]) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("transient")

    _submit(store, "o.state", "once", {})
    worker = _worker(store, _registry(once=once), clock)
    assert worker.step().retried == 1
    clock.advance(2)
    assert worker.step().committed == 1
    entry = store.history("o.state")[0]
    assert entry.status is Status.DONE


def test_retry_delay_requested_by_handler_is_honoured(store: RecordingStore, clock: FakeClock) -> None:
    """``raise Retry(30)`` puts the state back for exactly 30 s instead of the backoff."""
    calls: list[int] = []

    def waits(payload: dict[str, Any]) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise Retry(30, "not ready")

    _submit(store, "r.state", "waits", {})
    worker = _worker(store, _registry(waits=waits), clock)
    assert worker.step().retried == 1
    clock.advance(29)
    assert worker.step().claimed == 0
    clock.advance(1.5)
    assert worker.step().committed == 1
    assert len(calls) == 2


def test_retry_without_delay_uses_backoff(store: RecordingStore, clock: FakeClock) -> None:
    """``raise Retry()`` waits the policy's backoff (2 s here)."""
    calls: list[int] = []

    def waits(payload: dict[str, Any]) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise Retry()

    _submit(store, "r.state", "waits", {})
    worker = _worker(store, _registry(waits=waits), clock)
    assert worker.step().retried == 1
    clock.advance(1.5)
    assert worker.step().claimed == 0
    clock.advance(0.5)
    assert worker.step().committed == 1


def test_endless_retry_requests_are_bounded_on_their_own(store: RecordingStore, clock: FakeClock) -> None:
    """A handler that always asks to retry does not loop forever: its requests are not failed attempts
    (max_attempts is untouched) but have a bound of their own, then it fails with ``retry_limit``."""

    def never(payload: dict[str, Any]) -> None:
        raise Retry(1, "still waiting")

    _submit(store, "n.state", "never", {})
    worker = _worker(store, _registry(never=never), clock, max_requested_retries=4)
    for _ in range(4):
        assert worker.step().retried == 1
        clock.advance(1)
    assert worker.step().failed == 1
    failure = store.failures["n.state"]
    assert (failure.code, failure.attempts) == ("retry_limit", 0)
    assert "still waiting" in failure.message and "--max-requested-retries" in failure.message


def test_a_requested_retry_is_not_a_failed_attempt(store: RecordingStore, clock: FakeClock) -> None:
    """``raise Retry(delay)`` reschedules the state after exactly that delay without using an attempt:
    a handler that asks three times and then succeeds is done, with no failed attempt on record."""
    asked: list[int] = []

    def patient(payload: dict[str, Any]) -> None:
        if len(asked) < 3:
            asked.append(1)
            raise Retry(0.5, "not yet")

    _submit(store, "p.state", "patient", {})
    worker = _worker(store, _registry(patient=patient), clock)  # max_attempts=3: 3 requests would use it up
    for _ in range(3):
        assert worker.step().retried == 1
        assert worker.step().claimed == 0  # held back for the delay
        clock.advance(0.5)
    assert worker.step().committed == 1
    (entry,) = store.history("p.state")
    assert (entry.status, entry.attempts) == (Status.DONE, 0)


def test_unknown_state_waits_for_a_worker_that_has_its_machine(store: RecordingStore, clock: FakeClock) -> None:
    """A worker never claims a state it has no machine for: the state stays pending for another
    worker (a host with that machine, or a later deploy), and this worker counts itself finished."""
    _submit(store, "u.state", "no-such-machine", {})
    _submit(store, "c.state", "count", {"count": 1})
    worker = _worker(store, _registry(count=_count_down), clock)
    assert (worker.step().committed, worker.step().claimed) == (1, 0)
    assert (store.status().pending, store.status().failed) == (1, 0)
    assert store.is_finished(["count"]) and not store.is_finished()
    other = _worker(store, _registry(no_such_machine=lambda payload: None), clock, name="w2")
    assert other.step().committed == 1
    assert store.is_finished()


def test_unknown_state_fails_without_retry_when_asked(store: RecordingStore, clock: FakeClock) -> None:
    """With ``fail_unknown_states`` a state no machine handles fails at once (retrying cannot help)
    with unknown_state."""
    _submit(store, "u.state", "no-such-machine", {})
    result = _worker(store, _registry(count=_count_down), clock, fail_unknown_states=True).step()
    assert (result.failed, result.retried) == (1, 0)
    failure = store.failures["u.state"]
    assert failure.code == "unknown_state"
    assert failure.attempts == 1
    assert "no-such-machine" in failure.message


def test_invalid_payload_fails_without_retry(store: RecordingStore, clock: FakeClock) -> None:
    """A payload the typed machine refuses fails at once with invalid_payload; the handler never runs."""
    from dataclasses import dataclass

    @dataclass
    class Count:
        count: int

    ran: list[object] = []
    registry = Registry()
    registry.register("typed", ran.append, Count)
    _submit(store, "t.state", "typed", {"count": "three"})
    result = _worker(store, registry, clock).step()
    assert (result.failed, result.retried) == (1, 0)
    assert store.failures["t.state"].code == "invalid_payload"
    assert ran == []


@pytest.mark.parametrize("returned", [[1, 2], "next", ("", {}), 7])
def test_bad_return_fails_without_retry(store: RecordingStore, clock: FakeClock, returned: object) -> None:
    """A return value outside the contract fails the state with bad_return, no retries."""
    _submit(store, "b.state", "bad", {})
    result = _worker(store, _registry(bad=lambda p: returned), clock).step()
    assert (result.failed, result.retried, result.committed) == (1, 0, 0)
    assert store.failures["b.state"].code == "bad_return"


def test_hook_that_raises_is_logged_and_ignored(store: RecordingStore, clock: FakeClock,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A broken event hook never stops the loop; it is logged with its traceback."""
    seen: list[Event] = []

    def broken(event: Event, claim: Claim) -> None:
        raise RuntimeError("hook bug")

    def recorder(event: Event, claim: Claim) -> None:
        seen.append(event)

    _submit(store, "c.state", "count", {"count": 1})
    worker = Worker(store, _registry(count=_count_down), WorkerOptions(name="w1"), clock=clock,
                    hooks=[broken, recorder])
    with caplog.at_level(logging.ERROR, logger="martian_doves.worker"):
        result = worker.step()
    assert result.committed == 1
    assert seen == [Event.CLAIMED, Event.COMMITTED]
    hook_errors = [r for r in caplog.records if "event hook" in r.getMessage()]
    assert len(hook_errors) == 2
    assert hook_errors[0].exc_info is not None


def test_claim_lost_after_takeover_is_counted_and_new_owner_commits_once(store: RecordingStore,
                                                                         clock: FakeClock) -> None:
    """Guarantee 2: a worker whose lease was taken over mid-tick cannot commit; the new owner
    commits the transition exactly once."""
    ticks: list[str] = []
    other: list[Worker] = []

    def slow(payload: dict[str, Any]) -> dict[str, Any] | None:
        ticks.append(payload["who"])
        if len(ticks) == 1:
            # While A is still ticking, its lease runs out and B takes the state over.
            expire_all(store)
            assert other[0].step().committed == 1
            return {"who": "from A"}
        return None if payload["who"] != "root" else {"who": "from B"}

    registry = _registry(slow=slow)
    worker_a = _worker(store, registry, clock, name="A", chain=False)
    worker_b = _worker(store, registry, clock, name="B", chain=False)
    other.append(worker_b)
    _submit(store, "s.state", "slow", {"who": "root"})

    result = worker_a.step()
    assert (result.claimed, result.committed, result.lost) == (1, 0, 1)
    assert worker_b.totals.committed == 1
    history = store.history("s.state")
    assert [(e.name, e.status, e.worker) for e in history] == [
        ("s.state", Status.DONE, "B"), ("s.state-1", Status.PENDING, None)]
    assert history[1].payload == {"who": "from B"}
    assert history[0].attempts == 1  # the takeover used one attempt
    assert store.status().pending == 1


def test_chaining_keeps_the_lineage_in_one_worker(store: RecordingStore, clock: FakeClock) -> None:
    """With chaining, one step runs the whole lineage in the worker that claimed its root."""
    _submit(store, "c.state", "count", {"count": 4})
    worker_a = _worker(store, _registry(count=_count_down), clock, name="A", chain=True)
    worker_b = _worker(store, _registry(count=_count_down), clock, name="B", chain=True)
    result = worker_a.step()
    assert (result.claimed, result.committed) == (4, 4)
    assert worker_b.step().claimed == 0
    history = store.history("c.state")
    assert [e.name for e in history] == ["c.state", "c.state-1", "c.state-2", "c.state-3"]
    assert {e.worker for e in history} == {"A"}
    assert all(e.status is Status.DONE for e in history)


def test_without_chaining_each_tick_is_a_claim(store: RecordingStore, clock: FakeClock) -> None:
    """With chaining off, successors go back to the store where any worker may claim them."""
    _submit(store, "c.state", "count", {"count": 3})
    worker_a = _worker(store, _registry(count=_count_down), clock, name="A", chain=False)
    worker_b = _worker(store, _registry(count=_count_down), clock, name="B", chain=False)
    assert worker_a.step().committed == 1
    assert worker_b.step().committed == 1
    assert worker_a.step().committed == 1
    assert [e.worker for e in store.history("c.state")] == ["A", "B", "A"]


def test_stop_releases_unprocessed_claims(store: RecordingStore, clock: FakeClock) -> None:
    """Guarantee 6: after stop() the worker finishes the tick in hand and releases the rest of its
    prefetched claims, immediately claimable and without using an attempt."""
    for i in range(3):
        _submit(store, f"s{i}.state", "count", {"count": 1})
    worker = _worker(store, _registry(count=_count_down), clock, name="A", prefetch=3)
    released: list[str] = []

    def stop_on_claim(event: Event, claim: Claim) -> None:
        if event is Event.CLAIMED:
            worker.stop()
        if event is Event.RELEASED:
            released.append(claim.name)

    worker.hooks.append(stop_on_claim)
    result = worker.step()
    assert (result.claimed, result.committed) == (1, 1)
    assert len(released) == 2
    status = store.status()
    assert (status.done, status.pending, status.in_progress) == (1, 2, 0)
    claims = store.claim("B", 5)
    assert sorted(c.name for c in claims) == sorted(released)
    assert all(c.attempts == 0 for c in claims)


def test_stop_ends_a_chain_after_the_current_tick(store: RecordingStore, clock: FakeClock) -> None:
    """A chained lineage stops at the tick in hand; its successor is left pending for others."""
    _submit(store, "c.state", "count", {"count": 5})
    worker = _worker(store, _registry(count=_count_down), clock, name="A", chain=True)
    worker.hooks.append(lambda event, claim: worker.stop() if claim.name == "c.state-1" else None)
    result = worker.step()
    assert result.committed == 2
    status = store.status()
    assert (status.done, status.pending, status.in_progress) == (2, 1, 0)


def test_run_processes_everything_and_unregisters(store: RecordingStore, clock: FakeClock) -> None:
    """``run`` loops ``step`` until the store is finished, then returns its totals and unregisters."""
    for i in range(5):
        _submit(store, f"c{i}.state", "count", {"count": 3})
    _submit(store, "u.state", "unknown", {})
    worker = _worker(store, _registry(count=_count_down), clock, name="A", concurrency=2, poll_seconds=0.05)
    totals = worker.run()
    assert (totals.committed, totals.failed) == (15, 0)
    status = store.status()  # the state no machine here can run is left for a worker that can
    assert (status.done, status.failed, status.pending, status.in_progress) == (15, 0, 1, 0)
    assert status.workers == []


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"prefetch": 0},
        {"heartbeat_seconds": 0},
        {"poll_seconds": -1},
        {"tick_timeout_seconds": -1},
        {"retry": RetryPolicy(max_attempts=0)},
    ],
)
def test_worker_options_are_validated(options: dict[str, Any]) -> None:
    """Impossible worker settings are a ConfigError when the worker is built."""
    with pytest.raises(ConfigError):
        Worker(MemoryStore(), Registry(), WorkerOptions(**options))


@pytest.mark.parametrize("delay", [float("inf"), float("nan"), -1, 1e20, "5", True])
def test_retry_refuses_a_delay_no_store_can_honour(delay: Any) -> None:
    """``Retry`` checks its delay where the handler raises it, so the mistake is that tick's failure."""
    with pytest.raises(ValueError, match="delay"):
        Retry(delay)


@pytest.mark.parametrize("delay", [None, 0, 0.5, 3600, 366 * 86400])
def test_retry_accepts_sensible_delays(delay: float | None) -> None:
    """None (use the backoff), zero and anything up to a year are fine."""
    assert Retry(delay).delay_seconds == delay


def _exit(code: int) -> None:
    import sys

    sys.exit(code)


def _cancelled() -> None:
    import asyncio

    raise asyncio.CancelledError()


def _interrupted() -> None:
    raise KeyboardInterrupt()


@pytest.mark.parametrize(("raise_it", "kind"), [
    (lambda: _exit(3), "SystemExit"), (_cancelled, "CancelledError"), (_interrupted, "KeyboardInterrupt"),
])
def test_a_handler_raising_a_base_exception_fails_its_tick_not_the_worker(raise_it: Any, kind: str) -> None:
    """``sys.exit()``, a stray ``asyncio.CancelledError`` or ``KeyboardInterrupt`` inside a handler
    (in a worker thread) is a failed attempt (retried, then failed), never a dead worker thread
    that would leave its claim to be released and run again forever."""
    import threading

    from martian_doves.clock import FakeClock
    from martian_doves.config import WorkerOptions
    from martian_doves.model import State
    from martian_doves.registry import Registry
    from martian_doves.retry import RetryPolicy
    from martian_doves.stores.memory import MemoryStore
    from martian_doves.worker import Worker

    clock = FakeClock()
    store = MemoryStore(clock=clock)
    registry = Registry()
    registry.register("quitter", lambda payload: raise_it())
    store.submit([State("q.state", "quitter", {})])
    worker = Worker(store, registry, WorkerOptions(name="w", retry=RetryPolicy(max_attempts=2, base_delay_seconds=0)),
                    clock=clock)

    def steps() -> None:  # in a thread, as in a running worker
        while not store.is_finished():
            worker.step()

    thread = threading.Thread(target=steps)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    (entry,) = store.history("q.state")
    assert entry.status.value == "failed" and entry.attempts == 2
    assert kind in (entry.reason or "")


def test_a_tick_timeout_of_zero_is_no_limit() -> None:
    """``tick_timeout_seconds=0`` (``--tick-timeout 0``) turns the limit off: a day-long tick stays."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.submit([State("slow.state", "countdown", {"count": 1})])
    worker = Worker(store, _registry(countdown=_count_down), WorkerOptions(name="w", tick_timeout_seconds=0),
                    clock=clock)
    (claim,) = store.claim("w", 1)
    worker._hold(claim)
    clock.advance(86400)
    worker._check_tick_timeout(list(worker._held.values()))
    assert not worker.timed_out and worker._held


def test_tick_timeout_counts_from_the_start_of_the_tick_not_the_claim() -> None:
    """States claimed in a batch wait their turn; the time they wait is not run time, so a long
    wait never counts as an overrun (which would stop the worker)."""
    from martian_doves.clock import FakeClock
    from martian_doves.config import WorkerOptions
    from martian_doves.loader import default_registry
    from martian_doves.model import State
    from martian_doves.stores.memory import MemoryStore
    from martian_doves.worker import Worker

    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.submit([State(f"s{i}.state", "simple", {"target": "x", "tick_seconds": 0}) for i in range(3)])
    worker = Worker(store, default_registry(), WorkerOptions(name="w", prefetch=3, tick_timeout_seconds=5),
                    clock=clock)
    waiting = store.claim("w", 3)
    for claim in waiting:
        worker._hold(claim, running=False)
    clock.advance(60)  # the batch waited a minute behind some other tick
    worker._check_tick_timeout(list(worker._held.values()))
    assert not worker.timed_out and not worker.stopping
    worker._hold(waiting[0])  # now it runs ...
    clock.advance(6)  # ... past the limit
    worker._check_tick_timeout(list(worker._held.values()))
    assert worker.timed_out and worker.stopping, "a tick that really overran was not stopped"
    assert worker.totals.timed_out == 1 and worker.totals.retried == 1
    assert not worker._held, "the other claims of the batch are released, not kept"
    status = store.status()
    assert (status.pending, status.scheduled) == (2, 1)  # the overrun one waits out its retry backoff


def test_an_overrunning_tick_makes_run_return_and_never_ends_the_process() -> None:
    """``martian_doves.run`` (a Worker in the caller's own process) with ``tick_timeout_seconds``:
    a tick that overruns is retried, and ``run`` returns with ``timed_out`` counted instead of
    ending the caller's process. The stuck tick's late result is refused, and a second run
    finishes the state once the handler no longer blocks."""
    import dataclasses
    import threading

    import martian_doves
    from martian_doves.steps import StepResult

    release = threading.Event()
    calls: list[str] = []

    def handler(payload: dict[str, object]) -> None:
        calls.append("tick")
        if len(calls) == 1:
            release.wait(60)  # the first attempt hangs (hang guard only)

    store = MemoryStore()
    registry = Registry()
    registry.register("hangs-once", handler)
    store.submit([State("h.state", "hangs-once", {})])
    options = WorkerOptions(name="api", heartbeat_seconds=0.05, tick_timeout_seconds=0.3,
                            retry=RetryPolicy(max_attempts=3, base_delay_seconds=0))
    returned: list[StepResult] = []
    runner = threading.Thread(target=lambda: returned.append(martian_doves.run(store, registry, options)))
    runner.start()
    runner.join(60)  # hang guard: run() must return by itself, with the tick still hanging
    assert not runner.is_alive(), "run() did not return after the tick overran"
    assert not release.is_set()
    (totals,) = returned
    assert (totals.timed_out, totals.retried, totals.committed) == (1, 1, 0)
    (entry,) = store.history("h.state")
    assert entry.status.value == "pending" and entry.attempts == 1  # retried, with the attempt counted

    release.set()  # the stuck tick ends now; its commit is refused (the claim was retried)
    again = martian_doves.Worker(store, registry, dataclasses.replace(options, name="again")).run()
    assert (again.committed, again.timed_out) == (1, 0)
    assert store.status().as_dict()["done"] == 1 and len(calls) == 2


def test_a_crashed_heartbeat_thread_stops_the_worker() -> None:
    """If the heartbeat thread dies, the worker must not go on holding leases nobody renews."""
    import threading

    from martian_doves.config import WorkerOptions
    from martian_doves.model import State
    from martian_doves.registry import Registry
    from martian_doves.stores.memory import MemoryStore
    from martian_doves.worker import Worker

    release = threading.Event()

    store = MemoryStore()
    registry = Registry()
    registry.register("wait", lambda payload: release.wait(10) and None)
    store.submit([State("w.state", "wait", {})])
    worker = Worker(store, registry, WorkerOptions(name="w", heartbeat_seconds=0.05, shutdown_grace_seconds=0.1))
    worker._check_tick_timeout = lambda held: 1 / 0  # type: ignore[method-assign]  # a bug in the thread
    runner = threading.Thread(target=worker.run)
    runner.start()
    runner.join(5)
    release.set()
    runner.join(5)
    assert worker.crashed and worker.stopping


# -- store outages -----------------------------------------------------------------------


class OutageStore(RecordingStore):
    """The memory store, unavailable for the next ``down[method]`` calls of each method named there.

    Stands for a store in an outage (a full disk, a database restarting): the call does
    nothing and raises ``StoreUnavailable``, as the real stores do.
    """

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.down: dict[str, int] = {}

    def _outage(self, method: str) -> None:
        if self.down.get(method, 0) > 0:
            self.down[method] -= 1
            raise StoreUnavailable(f"{method}: the store is unavailable")

    def register_worker(self, worker: str, states: Any = None) -> None:
        self._outage("register_worker")
        super().register_worker(worker, states)

    def retry_later(self, claim: Claim, delay_seconds: float, error: str, *, requested: bool = False) -> None:
        self._outage("retry_later")
        super().retry_later(claim, delay_seconds, error, requested=requested)

    def fail(self, claim: Claim, failure: Failure) -> None:
        self._outage("fail")
        super().fail(claim, failure)

    def release(self, claim: Claim) -> None:
        self._outage("release")
        super().release(claim)

    def is_finished(self, states: Any = None) -> bool:
        self._outage("is_finished")
        return super().is_finished(states)

    def take_event(self, claim: Claim) -> Any:
        self._outage("take_event")
        return super().take_event(claim)


def _raises(payload: dict[str, Any]) -> None:
    raise ValueError("boom")


@pytest.mark.parametrize("method", ["retry_later", "fail"])
def test_an_outcome_the_store_refuses_in_an_outage_is_written_once_it_answers(
        clock: FakeClock, method: str, caplog: pytest.LogCaptureFixture) -> None:
    """A retry or failure that meets an outage is written when the store answers again: the
    claim is neither kept forever nor given up, and the worker logs no warning per try
    (the store logs the outage itself, once)."""
    store = OutageStore(clock)
    _submit(store, "r.state", "raises", {})
    attempts = 1 if method == "fail" else 3
    worker = _worker(store, _registry(raises=_raises), clock,
                     retry=RetryPolicy(max_attempts=attempts, base_delay_seconds=1, jitter=0))
    store.down[method] = 4
    with caplog.at_level(logging.INFO, logger="martian_doves.worker"):
        result = worker.step()
    assert store.down[method] == 0, "the outcome was not tried again"
    assert not worker._held, "the claim is still held after its outcome was written"
    entry = store.history("r.state")[0]
    if method == "fail":
        assert result.failed == 1 and entry.status is Status.FAILED
    else:
        assert result.retried == 1 and entry.status is Status.SCHEDULED and entry.attempts == 1
    assert not [r for r in caplog.records if "unavailable" in r.getMessage()]


def test_a_release_refused_in_an_outage_while_stopping_leaves_the_claim_to_its_lease(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """Stopping is bounded: a release the store refuses is tried once, said in one line, and the
    claim is left to run out its lease (another worker takes it over), not kept by this worker."""
    store = OutageStore(clock)
    _submit(store, "a.state", "count", {"count": 1})
    _submit(store, "b.state", "count", {"count": 1})
    worker = _worker(store, _registry(count=_count_down), clock, prefetch=2)
    worker.hooks.append(lambda event, claim: worker.stop() if event is Event.CLAIMED else None)
    store.down["release"] = 1
    with caplog.at_level(logging.WARNING, logger="martian_doves.worker"):
        result = worker.step()
    assert result.committed == 1 and not worker._held
    assert [r.getMessage() for r in caplog.records if "could not release" in r.getMessage()]
    assert store.status().in_progress == 1  # until its lease runs out
    expire_all(store)
    (taken,) = store.claim("other", 5)
    assert taken.attempts == 1


def test_registering_during_an_outage_waits_for_the_store(clock: FakeClock,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A worker started while the store is unavailable registers once it answers, and runs:
    no traceback, no exception out of ``run``."""
    store = OutageStore(clock)
    _submit(store, "c.state", "count", {"count": 2})
    store.down["register_worker"] = 5
    worker = _worker(store, _registry(count=_count_down), clock, poll_seconds=0.05)
    with caplog.at_level(logging.DEBUG, logger="martian_doves.worker"):
        totals = worker.run()
    assert store.down["register_worker"] == 0 and totals.committed == 2
    assert not [r for r in caplog.records if r.exc_info]


def test_an_outage_met_while_looking_whether_all_is_done_is_not_a_crash(clock: FakeClock) -> None:
    """The store may be unavailable just when an idle worker asks whether everything is done:
    it is not known to be, the worker keeps looking, and ends once the store answers."""
    store = OutageStore(clock)
    _submit(store, "c.state", "count", {"count": 1})
    store.down["is_finished"] = 3
    worker = _worker(store, _registry(count=_count_down), clock, poll_seconds=0.05)
    totals = worker.run()
    assert store.down["is_finished"] == 0 and totals.committed == 1 and not worker.crashed


def test_an_event_the_store_cannot_hand_over_in_an_outage_is_delivered_after_it(clock: FakeClock) -> None:
    """Taking a waiting machine's event is the worker's own step: an outage there is no failed
    attempt of the machine; the entry is given back and gets its event once the store answers."""
    from martian_doves.contract import Wait

    store = OutageStore(clock)
    _submit(store, "w.state", "waiter", {})
    worker = _worker(store, _registry(waiter=lambda p: Wait("go", then="went", payload=p),
                                      went=lambda p: None), clock, chain=False)
    assert worker.step().committed == 1  # now waiting for "go"
    store.send("w.state", "go", {"n": 1})
    store.down["take_event"] = 2
    for _ in range(2):
        assert worker.step().failed == 0
    assert (worker.step().committed, worker.step().committed) == (1, 1)
    last = store.history("w.state")[-1]
    assert last.status is Status.DONE and last.attempts == 0 and store.down["take_event"] == 0


def test_an_adapting_batch_doubles_on_short_ticks_up_to_its_bound_and_falls_to_one_on_a_slow_tick() -> None:
    assert [next_prefetch(n, 0.001) for n in (1, 2, 32, 64)] == [2, 4, 64, 64]
    assert [next_prefetch(n, FAST_TICK_SECONDS) for n in (1, 64)] == [1, 1]


def test_a_store_that_cannot_commit_a_batch_is_asked_for_one_state_at_a_time_unless_told(tmp_path: Path) -> None:
    """The folder store commits each claim on its own: a batch there would only hold states."""
    store = open_store(str(tmp_path / "store"))
    store.submit([State(f"s{i}.state", "count", {"count": 1}) for i in range(8)])
    adapting = Worker(store, _registry(count=_count_down), WorkerOptions(name="a", chain=False))
    assert [adapting.step().claimed for _ in range(3)] == [1, 1, 1]
    told = Worker(store, _registry(count=_count_down), WorkerOptions(name="b", chain=False, prefetch=5))
    assert told.step().claimed == 5


class _HeartbeatAfterCommit(MemoryStore):
    """A store whose commit lands, then lets the worker's heartbeat run before the worker has
    dropped the claim: the moment a busy machine's heartbeat thread can meet."""

    worker: Worker | None = None

    def commit(self, claim: Claim, successor: Any, *, keep: bool = False) -> Claim | None:
        following = super().commit(claim, successor, keep=keep)
        assert self.worker is not None
        self.worker._beat()
        return following


def test_a_heartbeat_that_meets_a_claim_just_committed_does_not_call_it_taken_over(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    store = _HeartbeatAfterCommit(clock=clock)
    worker = store.worker = _worker(store, _registry(count=_count_down), clock)
    _submit(store, "c.state", "count", {"count": 3})
    with caplog.at_level(logging.WARNING, logger="martian_doves.worker"):
        worker.step()
    assert store.status().done == 3
    assert [r.getMessage() for r in caplog.records if "taken over" in r.getMessage()] == []


def test_a_worker_told_that_nothing_came_waits_again_without_claiming() -> None:
    """``wait_for_work`` answering False (PostgreSQL: no NOTIFY, nothing due) costs no claim."""
    import threading

    class QuietStore(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.claims = 0
            self.quiet_waits = 0

        def claim(self, worker: str, limit: int, states: Any = None) -> list[Claim]:
            self.claims += 1
            return super().claim(worker, limit, states)

        def wait_for_work(self, timeout_seconds: float) -> bool | None:
            self.quiet_waits += 1
            if self.quiet_waits >= 5:
                worker.stop()
            return False

    store = QuietStore()
    worker = Worker(store, Registry(), WorkerOptions(name="w", exit_when_finished=False, poll_seconds=0.01))
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    runner.join(30)
    assert store.quiet_waits == 5 and store.claims == 1
