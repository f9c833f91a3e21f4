"""What operators read and do, on every store: find and open states, counts by state name, forget,
workers with their claims, and a worker its supervisor saw die.

Each test runs against every backend of ``BACKENDS``; a store without the capability is
skipped with the reason (the ``inspected`` fixture).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from contract_helpers import _claim_one, _drain, _registry, _state, _submit, _worker

from martian_doves.model import Child, Claim, Failure, State, StateQuery, StateRecord, Status, Successor, WaitFor
from martian_doves.stores.base import InspectableStore, Store, SupervisedStore

if TYPE_CHECKING:
    from conftest import Backend, ShiftedClock, TimeTravel


@pytest.fixture
def inspected(any_store: Store, backend_name: str) -> InspectableStore:
    if not isinstance(any_store, InspectableStore):
        pytest.skip(f"the {backend_name} store cannot be inspected yet")
    return any_store


def _store(inspected: InspectableStore) -> Store:
    assert isinstance(inspected, Store)
    return inspected


def _fail(store: Store, name: str, *, code: str = "tick_failed", message: str = "boom") -> None:
    """Claim ``name`` (the only claimable state) and fail it after one retried attempt."""
    claim = _claim_one(store)
    assert claim.name == name
    store.retry_later(claim, 0, "RuntimeError: first try")
    claim = _claim_one(store)
    store.fail(claim, Failure(code, message, "Traceback (most recent call last):\n  boom\nRuntimeError: boom", 2,
                              ("RuntimeError: first try", f"RuntimeError: {message}")))


# -- show ------------------------------------------------------------------------------------


def test_show_opens_a_failed_state_with_every_attempt_and_its_traceback(inspected: InspectableStore) -> None:
    store = _store(inspected)
    before = time.time() - 5
    _submit(store, State("broken.state", "count", {"count": 1, "why": "test"}))
    _fail(store, "broken.state")
    record = inspected.show("broken.state")
    assert record is not None
    assert (record.name, record.state, record.status, record.payload) == (
        "broken.state", "count", Status.FAILED, {"count": 1, "why": "test"})
    assert record.worker == "w1" and record.attempts == 2
    assert record.errors == ("RuntimeError: first try", "RuntimeError: boom")
    assert record.failure is not None and record.failure.code == "tick_failed"
    assert record.failure.message == "boom" and "RuntimeError: boom" in (record.failure.traceback or "")
    assert record.reason == "tick_failed: boom"
    assert record.parent is None and record.machine_name == "broken.state"
    assert record.submitted_at is not None and record.claimed_at is not None and record.finished_at is not None
    assert before <= record.submitted_at <= record.claimed_at + 1 <= record.finished_at + 2
    assert record.duration_seconds is not None and record.duration_seconds >= 0
    assert inspected.show("no-such.state") is None


def test_show_opens_any_state_of_a_lineage_with_its_parent_and_machine(inspected: InspectableStore) -> None:
    store = _store(inspected)
    _submit(store, _state("c.state", 2))
    store.commit(_claim_one(store), ("count", {"count": 1}))
    pending = inspected.show("c.state-1")
    assert pending is not None
    assert (pending.status, pending.parent, pending.machine_name, pending.worker) == (
        Status.PENDING, "c.state", "c.state", None)
    assert pending.finished_at is None and pending.duration_seconds is None
    claim = _claim_one(store, "w2")
    running = inspected.show("c.state-1")
    assert running is not None and (running.status, running.worker) == (Status.IN_PROGRESS, "w2")
    store.commit(claim, None)
    done = inspected.show("c.state")
    assert done is not None and (done.status, done.worker, done.attempts, done.failure) == (
        Status.DONE, "w1", 0, None)
    assert done.duration_seconds is not None


def test_history_records_carry_what_show_does(inspected: InspectableStore) -> None:
    """Any state of a lineage, a failed one too, opens the whole lineage with parents and times."""
    store = _store(inspected)
    _submit(store, _state("h.state", 2))
    store.commit(_claim_one(store), ("count", {"count": 1}))
    _fail(store, "h.state-1")
    lineage = store.history("h.state-1")
    assert [(e.name, e.status, e.parent) for e in lineage] == [
        ("h.state", Status.DONE, None), ("h.state-1", Status.FAILED, "h.state")]
    assert lineage[1].failure is not None and lineage[1].failure.code == "tick_failed"
    assert lineage[1].reason == "tick_failed: boom"
    assert all(e.claimed_at is not None and e.duration_seconds is not None for e in lineage)


# -- find ----------------------------------------------------------------------------------------


def _names(records: list[StateRecord]) -> list[str]:
    return [r.name for r in records]


def test_find_filters_by_status_state_code_and_text(inspected: InspectableStore) -> None:
    store = _store(inspected)
    _submit(store, State("a.state", "count", {"count": 1, "colour": "Ultramarine"}))
    _fail(store, "a.state")
    _submit(store, State("b.state", "other", {"count": 1}))
    _fail(store, "b.state", code="bad_return", message="returned a list")
    _submit(store, _state("c.state"), State("d.state", "other", {"count": 1}))

    assert sorted(_names(inspected.find(StateQuery()))) == ["a.state", "b.state", "c.state", "d.state"]
    assert sorted(_names(inspected.find(StateQuery(status=Status.FAILED)))) == ["a.state", "b.state"]
    assert sorted(_names(inspected.find(StateQuery(status=Status.PENDING)))) == ["c.state", "d.state"]
    assert sorted(_names(inspected.find(StateQuery(state="other")))) == ["b.state", "d.state"]
    assert _names(inspected.find(StateQuery(state="other", status=Status.FAILED))) == ["b.state"]
    assert _names(inspected.find(StateQuery(code="bad_return"))) == ["b.state"]
    assert _names(inspected.find(StateQuery(text="RETURNED A"))) == ["b.state"]
    assert _names(inspected.find(StateQuery(text="ultramarine"))) == ["a.state"]
    assert inspected.find(StateQuery(state="nothing-of-this-name")) == []
    failed = inspected.find(StateQuery(code="tick_failed"))
    assert len(failed) == 1 and failed[0].failure is not None and failed[0].failure.message == "boom"


def test_find_is_newest_first_and_pages(inspected: InspectableStore, travel: TimeTravel) -> None:
    store = _store(inspected)
    for index in range(5):
        _submit(store, _state(f"s{index}.state"))
        # Folder stores date states by the filesystem's clock (coarse, real time), others by theirs.
        time.sleep(0.05)
        travel.advance(1.1)
    newest_first = _names(inspected.find(StateQuery()))
    assert newest_first == [f"s{index}.state" for index in reversed(range(5))]
    assert _names(inspected.find(StateQuery(limit=2))) == newest_first[:2]
    assert _names(inspected.find(StateQuery(limit=2, offset=2))) == newest_first[2:4]
    assert _names(inspected.find(StateQuery(offset=4, limit=10))) == newest_first[4:]
    assert _names(inspected.find(StateQuery(limit=None))) == newest_first
    third, fourth = inspected.show("s2.state"), inspected.show("s3.state")
    assert third is not None and fourth is not None and third.updated_at and fourth.updated_at
    since = (third.updated_at + fourth.updated_at) / 2
    assert _names(inspected.find(StateQuery(since=since))) == newest_first[:2]


# -- counts by state ---------------------------------------------------------------------------


def test_counts_by_state_break_every_status_down_by_state_name(inspected: InspectableStore) -> None:
    store = _store(inspected)
    _submit(store, _state("a.state", 2), _state("b.state"), State("x.state", "other", {"count": 1}))
    assert inspected.counts_by_state() == {"count": {Status.PENDING: 2}, "other": {Status.PENDING: 1}}
    claims: dict[str, Claim] = {}
    for _ in range(10):
        claims.update((c.name, c) for c in store.claim("w1", 3))
    assert sorted(claims) == ["a.state", "b.state", "x.state"]
    store.commit(claims["a.state"], ("count", {"count": 1}))
    store.fail(claims["x.state"], Failure("tick_failed", "boom"))
    counts = inspected.counts_by_state()
    assert counts["other"] == {Status.FAILED: 1}
    assert counts["count"] == {Status.DONE: 1, Status.PENDING: 1, Status.IN_PROGRESS: 1}


def test_counts_by_state_know_timers_and_waits(inspected: InspectableStore, backend: Backend) -> None:
    if not backend.machine_model:
        pytest.skip("this store keeps no timers or waits yet")
    store = _store(inspected)
    _submit(store, _state("t.state"), _state("w.state"))
    claims = {c.name: c for c in store.claim("w1", 2)}
    store.commit(claims["t.state"], Successor("count", {"count": 1}, not_before=time.time() + 3600))
    store.commit(claims["w.state"], Successor("doves.wait", {}, wait=WaitFor("later", event="go")))
    counts = inspected.counts_by_state()
    assert counts["count"] == {Status.DONE: 2, Status.SCHEDULED: 1}
    assert counts["doves.wait"] == {Status.WAITING: 1}


# -- forget ------------------------------------------------------------------------------------


def test_forget_removes_ended_machines_whole_and_nothing_unsettled(inspected: InspectableStore,
                                                                   store_clock: ShiftedClock) -> None:
    store = _store(inspected)
    _submit(store, _state("ended.state", 2), _state("short.state"))
    worker = _worker(store, store_clock, registry=_registry())
    _drain(worker)
    _submit(store, _state("later.state"))
    assert len(store.history("ended.state")) == 2

    assert inspected.forget(["ended.state-1", "later.state", "no-such.state"]) == 2
    assert store.history("ended.state") == [] and inspected.show("ended.state-1") is None
    assert inspected.show("later.state") is not None  # pending: never forgotten
    assert store.status().done == 1 and store.status().pending == 1
    # The name is free again: a new machine of that name runs from the start.
    _submit(store, _state("ended.state", 1))
    _drain(worker)
    assert [(e.name, e.status) for e in store.history("ended.state")] == [("ended.state", Status.DONE)]


def test_forget_removes_failed_machines(inspected: InspectableStore) -> None:
    store = _store(inspected)
    _submit(store, _state("f.state", 2))
    store.commit(_claim_one(store), ("count", {"count": 1}))
    _fail(store, "f.state-1")
    assert inspected.forget(["f.state-1"]) == 2
    assert store.status().failed == 0 and store.status().done == 0
    assert inspected.find(StateQuery(status=Status.FAILED)) == []


def test_forget_leaves_a_child_machine_its_running_parent_waits_for(inspected: InspectableStore,
                                                                    backend: Backend) -> None:
    if not backend.machine_model:
        pytest.skip("this store keeps no children yet")
    store = _store(inspected)
    _submit(store, _state("p.state"))
    store.commit(_claim_one(store), Successor("doves.join", {}, wait=WaitFor("count", children=1),
                                              children=(Child("count", {"count": 1}),)))
    child = _claim_one(store)
    assert child.state.origin is not None
    store.commit(child, None)
    assert inspected.forget([child.name]) == 0
    assert inspected.show(child.name) is not None


# -- workers -----------------------------------------------------------------------------------


def test_status_shows_each_workers_claims_machines_and_outcomes(inspected: InspectableStore) -> None:
    store = _store(inspected)
    store.register_worker("w1", ["count"])
    _submit(store, _state("a.state"), _state("b.state"))
    first = _claim_one(store, "w1")
    store.commit(first, None)
    held = _claim_one(store, "w1")
    workers = {w.name: w for w in store.status().workers}
    assert "w1" in workers
    info = workers["w1"]
    assert info.alive and info.ended is None
    assert [(c.name, c.state) for c in info.claims] == [(held.name, "count")]
    assert info.claims[0].since is not None
    assert info.started_at is not None and info.started_at <= info.last_seen + 1
    assert info.machines in (None, ("count",))  # a store may not keep what a worker can run
    if info.processed is not None:
        assert (info.processed, info.failed) == (1, 0)
    document = store.status().as_dict()["workers"][0]
    assert document["claims"] == [{"name": held.name, "state": "count", "since": info.claims[0].since}]
    assert {"name", "host", "pid", "last_seen", "alive", "started_at", "ended"} <= set(document)


def test_a_worker_its_supervisor_saw_die_is_dead_and_its_claims_are_taken_over_at_once(
        any_store: Store, peer_store: Store, backend_name: str) -> None:
    if not isinstance(any_store, SupervisedStore):
        pytest.skip(f"the {backend_name} store is not told of dead workers yet")
    any_store.register_worker("dead-1")
    peer_store.register_worker("w2")
    _submit(any_store, _state("x.state"))
    held = _claim_one(any_store, "dead-1")
    assert peer_store.claim("w2", 5) == []
    assert any_store.worker_exited("dead-1", "killed by signal 9") == 1
    taken = _claim_one(peer_store, "w2")  # no lease had to expire
    assert taken.name == held.name and taken.attempts == 1
    assert any("dead-1" in error and "killed by signal 9" in error for error in taken.errors)
    workers = {w.name: w for w in peer_store.status().workers}
    assert not workers["dead-1"].alive and workers["dead-1"].ended == "killed by signal 9"
    assert workers["w2"].alive and workers["w2"].ended is None
    # Told again (or of a worker that unregistered), there is nothing left to give back.
    assert any_store.worker_exited("dead-1", "killed by signal 9") == 0
    peer_store.commit(taken, None)


def test_claims_say_when_their_state_became_due(any_store: Store, travel: TimeTravel) -> None:
    """``Claim.due_at`` (for the queue-wait metric): submitted or due, never after the claim."""
    before = travel.now() - 2
    _submit(any_store, _state("q.state"))
    travel.advance(1.5)
    claim = _claim_one(any_store)
    if claim.due_at is None:
        pytest.skip("this store does not say when a state became due")
    assert before <= claim.due_at <= travel.now() + 1
