"""The handler contract: ``Next``, ``Wait``, ``Spawn`` and the plain forms, normalised or refused.

A bad argument is the handler's mistake: it fails the tick with ``bad_return`` and never
reaches a store or stops the worker.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import pytest

from martian_doves.clock import FakeClock
from martian_doves.config import WorkerOptions
from martian_doves.contract import Next, Spawn, Wait, successor_of
from martian_doves.errors import BadReturn
from martian_doves.model import JOIN_STATE, WAIT_STATE, Child, State, Successor, WaitFor
from martian_doves.registry import Registry, machine
from martian_doves.stores.memory import MemoryStore
from martian_doves.worker import Worker

NOW = 1_000_000.0


@dataclass
class Order:
    order: int


def test_next_without_a_delay_is_a_plain_successor() -> None:
    assert successor_of("a", Next("b", {"x": 1}), NOW) == Successor("b", {"x": 1})
    assert successor_of("a", ("b", {"x": 1}), NOW) == Successor("b", {"x": 1})
    assert successor_of("a", {"x": 1}, NOW) == Successor("a", {"x": 1})
    assert successor_of("a", None, NOW) is None


def test_next_after_and_at_set_the_due_time() -> None:
    assert successor_of("a", Next("b", {}, after=60), NOW) == Successor("b", {}, not_before=NOW + 60)
    assert successor_of("a", Next("b", {}, at=NOW + 5.5), NOW) == Successor("b", {}, not_before=NOW + 5.5)
    moment = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    assert successor_of("a", Next("b", Order(1), at=moment), NOW) == Successor(
        "b", {"order": 1}, not_before=moment.timestamp())


def test_wait_becomes_a_waiting_entry() -> None:
    result = successor_of("a", Wait("payment", then="paid", timeout=10, on_timeout="gone", payload={"o": 1}), NOW)
    assert result == Successor(WAIT_STATE, {"o": 1}, wait=WaitFor("paid", event="payment", deadline=NOW + 10,
                                                                    on_timeout="gone"))
    forever = successor_of("a", Wait("payment", then="paid"), NOW)
    assert forever is not None and forever.wait == WaitFor("paid", event="payment") and forever.payload == {}


def test_spawn_becomes_a_join_with_its_children() -> None:
    result = successor_of("a", Spawn([("resize", {"i": 0}), ("resize", Order(2))], then="done", payload={"n": 2}),
                          NOW)
    assert result == Successor(JOIN_STATE, {"n": 2}, wait=WaitFor("done", children=2),
                               children=(Child("resize", {"i": 0}), Child("resize", {"order": 2})))


@pytest.mark.parametrize(
    "returned",
    [
        Next("b", {}, after=-1),
        Next("b", {}, after=float("nan")),
        Next("b", {}, after=float("inf")),
        Next("b", {}, after="soon"),  # type: ignore[arg-type]
        Next("b", {}, after=1, at=NOW),
        Next("b", {}, at="tomorrow"),  # type: ignore[arg-type]
        Next("b", [1]),
        Next("", {}),
        Next("doves.wait", {}),
        Wait("", then="b"),
        Wait("e\nvil", then="b"),
        Wait("e", then=""),
        Wait("e", then="b", timeout=-5),
        Wait("e", then="b", on_timeout="c"),
        Wait("e", then="b", payload=[1]),
        Spawn("not a list", then="b"),  # type: ignore[arg-type]
        Spawn([("c", {})], then=""),
        Spawn([("c",)], then="b"),  # type: ignore[list-item]
        Spawn([("c", [1])], then="b"),
        Spawn([(None, {})], then="b"),  # type: ignore[list-item]
        Spawn([("c", {"t": "\x00"})], then="b"),
    ],
    ids=["negative-after", "nan-after", "inf-after", "str-after", "after-and-at", "str-at", "list-payload",
         "empty-state", "reserved-state", "empty-event", "control-event", "empty-then", "negative-timeout",
         "on-timeout-without-timeout", "list-wait-payload", "str-children", "empty-join-state", "1-tuple-child",
         "list-child-payload", "none-child-state", "nul-child-payload"],
)
def test_bad_arguments_are_bad_returns(returned: Any) -> None:
    with pytest.raises(BadReturn) as info:
        successor_of("a", returned, NOW)
    assert info.value.code == "bad_return" and "'a'" in info.value.message


def test_a_bad_wait_fails_the_state_and_the_worker_goes_on() -> None:
    """Through a real worker: the state that returned a bad ``Wait`` fails with bad_return, the next runs."""
    clock = FakeClock(NOW)
    store = MemoryStore(clock=clock)
    registry = Registry()
    registry.register("bad", lambda p: Wait("e", then="b", timeout=float("nan")))
    registry.register("good", lambda p: None)
    store.submit([State("bad.state", "bad", {}), State("good.state", "good", {})])
    worker = Worker(store, registry, WorkerOptions(name="w"), clock=clock)
    results = [worker.step(), worker.step()]
    assert sum(r.failed for r in results) == 1 and sum(r.committed for r in results) == 1
    (failure,) = store.status().recent_failures
    assert failure[:2] == ("bad.state", "bad_return")


def test_reserved_state_names_cannot_be_registered() -> None:
    with pytest.raises(TypeError, match="reserved"):
        machine("doves.wait")


def test_a_worker_waits_out_a_deadline_a_little_ahead_of_its_clock() -> None:
    """The store may judge a deadline passed slightly before the worker's clock does: the worker
    waits the rest out holding the claim, then runs the timeout state, instead of handing it back."""
    store_clock, worker_clock = FakeClock(NOW), FakeClock(NOW - 0.3)
    store = MemoryStore(clock=store_clock)
    registry = Registry()
    registry.register("gone", lambda p: None)
    store.submit([State("w.state", "place", {})])
    (claim,) = store.claim("w", 1)
    wait = WaitFor("paid", event="e", deadline=NOW + 0.5, on_timeout="gone")
    store.commit(claim, Successor(WAIT_STATE, {}, wait=wait))
    assert store.claim("w", 1) == []
    store_clock.advance(0.5)
    worker_clock.advance(0.5)  # 0.3 s behind the store's: the deadline has not passed for the worker
    worker = Worker(store, registry, WorkerOptions(name="w"), clock=worker_clock)
    assert worker.step().committed == 2  # the timeout, then (following the lineage) "gone"
    assert [e.state for e in store.history("w.state")] == ["place", WAIT_STATE, "gone"]


def test_the_contract_names_come_from_the_package() -> None:
    """``from martian_doves import machine, Next, Wait, Spawn``, as users write it, keeps working."""
    import martian_doves

    assert (martian_doves.Next, martian_doves.Wait, martian_doves.Spawn) == (Next, Wait, Spawn)
    assert martian_doves.machine is machine
