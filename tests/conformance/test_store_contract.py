"""The Store contract and the guarantees of DESIGN.md, written once, run against every store.

Each test takes ``any_store`` (one run per entry of ``BACKENDS`` in ``conftest.py``),
and, where a second worker process is needed, ``peer_store``: another handle on the
same backing store. Time moves only through ``travel`` (see ``conftest.py``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from contract_helpers import _claim_one, _drain, _lineage, _registry, _state, _submit, _worker

from martian_doves.config import WorkerOptions
from martian_doves.errors import ClaimLost, Retry
from martian_doves.model import Claim, Failure, State, Status
from martian_doves.retry import RetryPolicy
from martian_doves.steps import Event
from martian_doves.stores.base import Store
from martian_doves.worker import Worker

if TYPE_CHECKING:
    from conftest import Backend, ShiftedClock, TimeTravel


# -- submit, claim, commit -------------------------------------------------------------------


def test_submit_claim_commit_follows_the_lineage(any_store: Store) -> None:
    """A submitted root is claimed with a token; committing writes its successor under the seed's
    name with the root as parent, and the lineage ends when the handler says so."""
    _submit(any_store, _state("c.state", 2))
    claim = _claim_one(any_store, "w1")
    assert (claim.name, claim.state.state, claim.state.payload, claim.state.parent) == (
        "c.state", "count", {"count": 2}, None)
    assert claim.token and claim.worker == "w1" and claim.attempts == 0
    assert any_store.claim("w1", 5) == []

    assert any_store.commit(claim, ("count", {"count": 1})) is None
    child = _claim_one(any_store, "w2")
    assert (child.name, child.state.payload, child.state.parent) == ("c.state-1", {"count": 1}, "c.state")
    any_store.commit(child, None)

    assert any_store.claim("w1", 5) == []
    assert any_store.is_finished()
    assert _lineage(any_store, "c.state") == [("c.state", Status.DONE, 2), ("c.state-1", Status.DONE, 1)]
    assert [e.worker for e in any_store.history("c.state")] == ["w1", "w2"]


def test_claim_respects_the_limit(any_store: Store) -> None:
    """``claim`` hands out at most ``limit`` states and each state once."""
    _submit(any_store, *(_state(f"s{i}.state") for i in range(5)))
    first = any_store.claim("w1", 2)
    second = any_store.claim("w1", 10)
    assert (len(first), len(second)) == (2, 3)
    assert len({c.name for c in first + second}) == 5
    assert any_store.claim("w1", 10) == []


def test_commit_with_keep_hands_over_the_successor(any_store: Store, peer_store: Store) -> None:
    """``keep=True`` may hand the committing worker a claim on the successor; nobody else gets it
    meanwhile. A store that declines leaves the successor pending instead."""
    _submit(any_store, _state("c.state", 2))
    claim = _claim_one(any_store)
    child = any_store.commit(claim, ("count", {"count": 1}), keep=True)
    if child is None:
        child = _claim_one(peer_store)
    else:
        assert peer_store.claim("w2", 10) == []
        assert any_store.status().in_progress == 1
    assert (child.name, child.state.parent, child.state.payload, child.attempts) == (
        "c.state-1", "c.state", {"count": 1}, 0)
    any_store.commit(child, None)
    assert any_store.is_finished()
    assert any_store.status().done == 2


# -- submit is safe ---------------------------------------------------------------------------


def test_submit_refuses_an_existing_name_and_never_overwrites(any_store: Store) -> None:
    """Guarantee 3: submitting a name that exists, in any status, is refused and changes nothing."""
    _submit(any_store, _state("p.state", 5), _state("d.state", 2), _state("f.state", 1))
    done = _claim_by_name(any_store, "d.state")
    any_store.commit(done, ("count", {"count": 1}))
    failed = _claim_by_name(any_store, "f.state")
    any_store.fail(failed, Failure("tick_failed", "boom"))

    for name in ("p.state", "d.state", "f.state", "d.state-1"):
        result = any_store.submit([_state(name, 99)])
        assert len(result) == 1 and not result[0].added, name
        assert result[0].reason
    assert [r.added for r in any_store.submit([_state("n.state", 1), _state("n.state", 99)])] == [True, False]

    payloads = {c.name: c.state.payload for c in any_store.claim("w", 10)}
    assert payloads == {"p.state": {"count": 5}, "d.state-1": {"count": 1}, "n.state": {"count": 1}}
    assert _lineage(any_store, "f.state") == [("f.state", Status.FAILED, 1)]
    status = any_store.status()
    assert (status.done, status.failed, status.in_progress, status.pending) == (1, 1, 3, 0)


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x.state", "a/b.state", "x\x00.state", "x\n.state", ".hidden.state", "x" * 300 + ".state"],
    ids=["empty", "dot", "dotdot", "parent", "slash", "nul", "newline", "hidden", "too-long"],
)
def test_submit_refuses_unsafe_names(any_store: Store, name: str) -> None:
    """Guarantee 4: a name that could not be a plain file in a store folder is refused with a reason."""
    result = any_store.submit([_state(name)])
    assert not result[0].added and result[0].reason
    assert any_store.claim("w", 10) == []
    assert any_store.status().pending == 0


def _claim_by_name(store: Store, name: str) -> Claim:
    """Claim everything claimable, keep ``name`` and release the others."""
    wanted = None
    for claim in store.claim("w-pick", 100):
        if claim.name == name:
            wanted = claim
        else:
            store.release(claim)
    assert wanted is not None, f"{name} was not claimable"
    return wanted


# -- claims are exclusive and fenced -----------------------------------------------------------


def test_two_handles_never_claim_the_same_state(any_store: Store, peer_store: Store) -> None:
    """Two worker processes asking in turn split the states between them without overlap."""
    _submit(any_store, *(_state(f"s{i:02}.state") for i in range(20)))
    names: list[str] = []
    for round_ in range(30):
        store, worker = (any_store, "A") if round_ % 2 else (peer_store, "B")
        names.extend(c.name for c in store.claim(worker, 3))
    assert sorted(names) == sorted(f"s{i:02}.state" for i in range(20))


def test_concurrent_claimers_split_the_work(any_store: Store, open_handle: Callable[[], Store]) -> None:
    """Four handles claiming at the same time from four threads each get distinct states, all of them."""
    _submit(any_store, *(_state(f"s{i:03}.state") for i in range(120)))
    handles = [open_handle() for _ in range(4)]
    got: list[list[str]] = [[] for _ in handles]
    start = threading.Barrier(len(handles))

    def grab(index: int) -> None:
        start.wait()
        while True:
            claims = handles[index].claim(f"w{index}", 2)
            if not claims:
                return
            got[index].extend(c.name for c in claims)

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(len(handles))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a claimer hung"
    everything = [name for names in got for name in names]
    assert Counter(everything).most_common(1)[0][1] == 1, "a state was claimed twice"
    assert len(everything) == 120


def test_commit_after_takeover_raises_claim_lost_and_writes_nothing(any_store: Store, peer_store: Store,
                                                                   travel: TimeTravel) -> None:
    """Guarantee 2 (fencing): once a lease expired and was taken over, the old owner's commit is
    refused and writes no successor; the new owner's commit writes exactly one."""
    _submit(any_store, _state("c.state", 2))
    old = _claim_one(any_store, "A")
    travel.expire_leases()
    new = _claim_one(peer_store, "B")
    assert new.name == "c.state" and new.token != old.token

    with pytest.raises(ClaimLost):
        any_store.commit(old, ("count", {"count": 1}))
    with pytest.raises(ClaimLost):
        any_store.commit(old, ("count", {"count": 1}), keep=True)
    assert _lineage(any_store, "c.state") == [("c.state", Status.IN_PROGRESS, 2)]
    assert peer_store.claim("C", 10) == []

    peer_store.commit(new, ("count", {"count": 1}))
    assert _lineage(any_store, "c.state") == [("c.state", Status.DONE, 2), ("c.state-1", Status.PENDING, 1)]
    assert any_store.history("c.state")[0].worker == "B"
    assert any_store.status().pending == 1


def test_a_taken_over_claim_cannot_commit_where_its_successor_must_branch(any_store: Store, peer_store: Store,
                                                                         travel: TimeTravel) -> None:
    """Fencing on the path that names a branch: the successor's first name belongs to another machine
    (another document than the tick's: a folder store adopts a file holding the very document, as
    the seed's own successor), so the commit must pick ``x.state-1~2``; a claim taken over meanwhile
    is refused there too, and writes no branch."""
    _submit(any_store, _state("x.state", 2), _state("x.state-1", 5))
    claims = {c.name: c for c in any_store.claim("A", 2)}
    old = claims["x.state"]
    any_store.commit(claims["x.state-1"], None)
    travel.expire_leases()
    new = next(c for c in peer_store.claim("B", 10) if c.name == "x.state")
    assert new.token != old.token

    with pytest.raises(ClaimLost):
        any_store.commit(old, ("count", {"count": 1}))
    with pytest.raises(ClaimLost):
        any_store.commit(old, ("count", {"count": 1}), keep=True)
    assert _lineage(any_store, "x.state") == [("x.state", Status.IN_PROGRESS, 2)]

    peer_store.commit(new, ("count", {"count": 1}))
    assert _lineage(any_store, "x.state") == [("x.state", Status.DONE, 2), ("x.state-1~2", Status.PENDING, 1)]
    assert any_store.history("x.state")[0].worker == "B"


def test_other_outcomes_after_takeover_are_refused(any_store: Store, peer_store: Store,
                                                   travel: TimeTravel) -> None:
    """A worker that lost its claim can neither retry, fail nor release the state."""
    _submit(any_store, _state("c.state"))
    old = _claim_one(any_store, "A")
    travel.expire_leases()
    new = _claim_one(peer_store, "B")
    with pytest.raises(ClaimLost):
        any_store.retry_later(old, 0, "late")
    with pytest.raises(ClaimLost):
        any_store.fail(old, Failure("tick_failed", "late"))
    with pytest.raises(ClaimLost):
        any_store.release(old)
    status = any_store.status()
    assert (status.in_progress, status.pending, status.failed, status.done) == (1, 0, 0, 0)
    peer_store.commit(new, None)
    assert any_store.is_finished()


def test_takeover_uses_an_attempt_and_says_why(any_store: Store, peer_store: Store, travel: TimeTravel) -> None:
    """A claim recovered from a dead worker counts one attempt and records why."""
    _submit(any_store, _state("c.state"))
    _claim_one(any_store, "A")
    travel.expire_leases()
    new = _claim_one(peer_store, "B")
    assert new.attempts == 1
    assert len(new.errors) == 1 and "A" in new.errors[0]


def test_heartbeat_reports_lost_claims(any_store: Store, peer_store: Store, travel: TimeTravel) -> None:
    """``heartbeat`` returns nothing while the claims are ours and returns the ones taken over (a
    store may also recover the other expired claims at once: those are lost too)."""
    _submit(any_store, _state("a.state"), _state("b.state"))
    mine = any_store.claim("A", 2)
    assert len(mine) == 2
    assert any_store.heartbeat("A", mine) == []
    travel.expire_leases()
    taken = peer_store.claim("B", 1)
    assert len(taken) == 1
    lost = {c.name for c in any_store.heartbeat("A", mine)}
    assert taken[0].name in lost
    for claim in mine:
        if claim.name in lost:
            with pytest.raises(ClaimLost):
                any_store.commit(claim, None)
        else:
            any_store.commit(claim, None)


def test_successor_written_once_when_a_crashed_commit_is_repeated(any_store: Store, peer_store: Store,
                                                                  travel: TimeTravel, backend: Backend) -> None:
    """Guarantee 2: worker A writes the successor and is killed before marking the state done; B takes
    over, re-runs the tick and commits: the successor exists once, under its first name."""
    if backend.write_successor_only is None:
        pytest.skip("this store's commit is one atomic step: there is no moment to crash in")
    _submit(any_store, _state("c.state", 2))
    claim_a = _claim_one(any_store, "A")
    backend.write_successor_only(any_store, claim_a, ("count", {"count": 1}))
    travel.expire_leases()  # A is dead
    claim_b = _claim_one(peer_store, "B")
    assert claim_b.name == "c.state"
    peer_store.commit(claim_b, ("count", {"count": 1}))
    assert _lineage(peer_store, "c.state") == [("c.state", Status.DONE, 2), ("c.state-1", Status.PENDING, 1)]
    _drain(_worker(peer_store, travel.clock, "B"))
    assert _lineage(peer_store, "c.state") == [("c.state", Status.DONE, 2), ("c.state-1", Status.DONE, 1)]
    status = peer_store.status()
    assert (status.done, status.pending, status.failed) == (2, 0, 0)


def test_worker_that_loses_its_claim_mid_tick_does_not_commit(any_store: Store, peer_store: Store,
                                                             travel: TimeTravel) -> None:
    """Guarantee 2 through the worker loop: A's lease expires during its tick and B runs the tick
    again; A's result is dropped (counted as lost) and the transition is committed once, by B."""
    ticks: list[str] = []
    workers: dict[str, Worker] = {}

    def slow(payload: dict[str, Any]) -> dict[str, Any] | None:
        if payload["who"] != "root":
            return None
        ticks.append("tick")
        if len(ticks) == 1:  # A's tick: its lease runs out, and B takes the state over meanwhile
            travel.expire_leases()
            assert workers["B"].step(1).committed == 1
            return {"who": "from A"}
        return {"who": "from B"}

    registry = _registry(slow=slow)
    workers["A"] = _worker(any_store, travel.clock, "A", registry, chain=False)
    workers["B"] = _worker(peer_store, travel.clock, "B", registry, chain=False)
    _submit(any_store, State("s.state", "slow", {"who": "root"}))

    result = workers["A"].step(1)
    assert (result.claimed, result.committed, result.lost) == (1, 0, 1)
    assert len(ticks) == 2
    history = any_store.history("s.state")
    assert [(e.name, e.status, e.worker) for e in history] == [
        ("s.state", Status.DONE, "B"), ("s.state-1", Status.PENDING, None)]
    assert history[1].payload == {"who": "from B"}
    assert any_store.status().pending == 1


# -- delays, release, failure ---------------------------------------------------------------------


def test_retry_later_holds_the_state_back_then_counts_an_attempt(any_store: Store, peer_store: Store,
                                                                 travel: TimeTravel) -> None:
    """``retry_later`` gives the state back, runnable only after the delay, with one attempt used."""
    _submit(any_store, _state("r.state"))
    claim = _claim_one(any_store)
    any_store.retry_later(claim, travel.delay_seconds, "ValueError: first")
    assert any_store.claim("w1", 10) == []
    assert peer_store.claim("w2", 10) == []
    status = any_store.status()
    assert (status.pending + status.scheduled, status.in_progress) == (1, 0)  # held back: scheduled
    assert not any_store.is_finished()

    travel.past_delay()
    again = _claim_one(peer_store, "w2")
    assert (again.name, again.attempts, again.errors) == ("r.state", 1, ("ValueError: first",))
    peer_store.retry_later(again, 0, "ValueError: second")
    third = _claim_one(any_store, "w1")
    assert (third.attempts, third.errors) == (2, ("ValueError: first", "ValueError: second"))


def test_delayed_state_is_not_claimed_early_by_a_peer_that_listed_it_before(any_store: Store, peer_store: Store,
                                                                            travel: TimeTravel,
                                                                            backend: Backend) -> None:
    """A worker that saw a state as runnable before it was retried must not claim it before its delay
    (a stale listing of pending work must not bypass the backoff)."""
    if backend.claims_whole_share:
        pytest.skip("assigns per cycle from hints stamped before the cycle; delays: test_retry_later_*")
    _submit(any_store, _state("a.state"), _state("b.state"))
    first = _claim_one(peer_store, "P")  # the peer has now listed both states
    second = _claim_one(any_store, "S")
    assert {first.name, second.name} == {"a.state", "b.state"}
    any_store.retry_later(second, travel.delay_seconds, "ValueError: not yet")
    assert peer_store.claim("P", 10) == []
    assert any_store.claim("S", 10) == []
    peer_store.commit(first, None)
    travel.past_delay()
    assert [c.name for c in peer_store.claim("P", 10)] == [second.name]


def test_release_makes_the_state_claimable_at_once_without_an_attempt(any_store: Store,
                                                                      peer_store: Store) -> None:
    """``release`` (clean shutdown) hands the state straight back and uses no attempt."""
    _submit(any_store, _state("r.state"))
    claim = _claim_one(any_store, "A")
    any_store.release(claim)
    again = _claim_one(peer_store, "B")
    assert (again.name, again.attempts, again.errors) == ("r.state", 0, ())
    peer_store.retry_later(again, 0, "E: once")
    third = _claim_one(any_store, "A")
    any_store.release(third)
    fourth = _claim_one(peer_store, "B")
    assert (fourth.attempts, fourth.errors) == (1, ("E: once",)), "release must neither add nor forget attempts"


def test_fail_records_a_machine_readable_reason(any_store: Store) -> None:
    """``fail`` settles the state with its reason code and message, visible in status and history."""
    _submit(any_store, _state("f.state"), _state("ok.state"))
    failing = _claim_by_name(any_store, "f.state")
    failure = Failure("tick_failed", "ValueError: boom", "Traceback (most recent call last):\n...", 3,
                      ("ValueError: boom",) * 3)
    any_store.fail(failing, failure)
    status = any_store.status()
    assert (status.failed, status.pending, status.in_progress) == (1, 1, 0)
    assert status.recent_failures == [("f.state", "tick_failed", "ValueError: boom")]
    assert status.as_dict()["recent_failures"] == [
        {"name": "f.state", "code": "tick_failed", "message": "ValueError: boom"}]
    (entry,) = any_store.history("f.state")
    assert entry.status is Status.FAILED
    assert entry.reason is not None and "ValueError: boom" in entry.reason
    assert [c.name for c in any_store.claim("w", 10)] == ["ok.state"]


def test_retry_failed_makes_failed_states_pending_with_fresh_attempts(any_store: Store) -> None:
    """``retry_failed`` (all, or those named) makes failed states runnable again from attempt 0."""
    _submit(any_store, _state("a.state"), _state("b.state"), _state("c.state"))
    for claim in any_store.claim("w", 3):
        if claim.name == "c.state":
            any_store.commit(claim, None)
        else:
            any_store.fail(claim, Failure("tick_failed", f"{claim.name} broke", None, 3))
    assert any_store.retry_failed(["a.state", "c.state", "nope.state"]) == 1
    status = any_store.status()
    assert (status.failed, status.pending, status.done) == (1, 1, 1)
    again = _claim_one(any_store)
    assert (again.name, again.attempts) == ("a.state", 0)
    any_store.commit(again, None)
    assert any_store.retry_failed() == 1
    assert _claim_one(any_store).name == "b.state"
    assert any_store.retry_failed() == 0


# -- reporting ------------------------------------------------------------------------------------


def test_is_finished(any_store: Store, travel: TimeTravel) -> None:
    """Finished means nothing pending (even delayed) and nothing claimed."""
    assert any_store.is_finished()
    _submit(any_store, _state("a.state"))
    assert not any_store.is_finished()
    claim = _claim_one(any_store)
    assert not any_store.is_finished()
    any_store.retry_later(claim, travel.delay_seconds, "later")
    assert not any_store.is_finished()
    travel.past_delay()
    claim = _claim_one(any_store)
    any_store.commit(claim, ("count", {"count": 1}))
    assert not any_store.is_finished()
    any_store.fail(_claim_one(any_store), Failure("tick_failed", "x"))
    assert any_store.is_finished()


def test_status_counts(any_store: Store, backend: Backend) -> None:
    """``status`` counts pending, in-progress, done and failed states and finds the oldest pending."""
    if backend.claims_whole_share:
        pytest.skip("claims a whole share per cycle; its counts are checked in tests/unit/test_semaphore.py")
    empty = any_store.status()
    assert (empty.pending, empty.in_progress, empty.done, empty.failed) == (0, 0, 0, 0)
    assert empty.oldest_pending_at is None and empty.finished
    _submit(any_store, *(_state(f"s{i}.state", 2) for i in range(4)))
    status = any_store.status()
    assert (status.pending, status.in_progress, status.done, status.failed) == (4, 0, 0, 0)
    assert status.oldest_pending_at is not None

    first, second = any_store.claim("w", 2)
    assert (any_store.status().pending, any_store.status().in_progress) == (2, 2)
    any_store.commit(first, ("count", {"count": 1}))
    any_store.fail(second, Failure("invalid_payload", "nope"))
    status = any_store.status()
    assert (status.pending, status.in_progress, status.done, status.failed) == (3, 0, 1, 1)
    assert not status.finished
    for key in ("pending", "in_progress", "done", "failed", "workers"):
        assert key in status.as_dict()


def test_status_lists_registered_workers(any_store: Store) -> None:
    """Registered workers appear in ``status`` as alive until they unregister."""
    any_store.register_worker("worker-one")
    any_store.heartbeat("worker-one", [])
    workers = {w.name: w for w in any_store.status().workers}
    assert "worker-one" in workers and workers["worker-one"].alive
    any_store.unregister_worker("worker-one")
    assert "worker-one" not in {w.name for w in any_store.status().workers}


def test_history_lists_the_lineage_in_order_from_any_member(any_store: Store, store_clock: ShiftedClock) -> None:
    """``history`` of any state of a lineage gives the whole lineage, root first; unknown names give []."""
    _submit(any_store, _state("h.state", 4), _state("other.state", 2))
    _drain(_worker(any_store, store_clock, chain=False))
    expected = [("h.state", Status.DONE, 4), ("h.state-1", Status.DONE, 3), ("h.state-2", Status.DONE, 2),
                ("h.state-3", Status.DONE, 1)]
    for member in ("h.state", "h.state-2", "h.state-3"):
        assert _lineage(any_store, member) == expected
    assert _lineage(any_store, "other.state-1") == [("other.state", Status.DONE, 2),
                                                    ("other.state-1", Status.DONE, 1)]
    assert all(e.worker == "w1" for e in any_store.history("h.state"))
    assert any_store.history("nope.state") == []


# -- reset ----------------------------------------------------------------------------------------


def _run_all(store: Store, clock: ShiftedClock) -> None:
    _drain(_worker(store, clock, "runner", registry=_registry(boom=_boom)))


def _boom(payload: dict[str, Any]) -> None:
    raise ValueError("boom")


def test_reset_with_successors_runs_the_roots_again_from_scratch(any_store: Store, store_clock: ShiftedClock) -> None:
    """``reset(successors=True)``: successors deleted, every root (failed ones too) pending again."""
    _submit(any_store, _state("c.state", 3), _state("s.state", 1), State("b.state", "boom", {}))
    _run_all(any_store, store_clock)
    assert any_store.status().done == 4 and any_store.status().failed == 1

    assert any_store.reset(successors=True) == 3
    status = any_store.status()
    assert (status.pending, status.in_progress, status.done, status.failed) == (3, 0, 0, 0)
    assert _lineage(any_store, "c.state") == [("c.state", Status.PENDING, 3)]
    assert any_store.history("c.state-1") == []

    _run_all(any_store, store_clock)
    assert _lineage(any_store, "c.state") == [("c.state", Status.DONE, 3), ("c.state-1", Status.DONE, 2),
                                              ("c.state-2", Status.DONE, 1)]
    assert (any_store.status().done, any_store.status().failed) == (4, 1)


def test_reset_with_successors_never_deletes_a_submitted_root_named_like_a_successor(
        any_store: Store, store_clock: ShiftedClock) -> None:
    """``x.state-1`` submitted as a machine of its own is a root, whatever its name says: reset
    deletes only what ticks wrote (x.state's successors went to the x.state-1~2 branch)."""
    _submit(any_store, _state("x.state", 2), _state("x.state-1", 3))
    _run_all(any_store, store_clock)
    assert any_store.reset(successors=True) == 2
    assert _lineage(any_store, "x.state") == [("x.state", Status.PENDING, 2)]
    assert _lineage(any_store, "x.state-1") == [("x.state-1", Status.PENDING, 3)]
    _run_all(any_store, store_clock)
    assert any_store.status().done == 5


def test_reset_without_successors_reruns_every_state_without_new_files(any_store: Store,
                                                                       store_clock: ShiftedClock) -> None:
    """``reset(successors=False)``: every state, successors included, runs again; a root's re-run
    finds the successor it wrote before instead of writing a second one."""
    _submit(any_store, _state("c.state", 3), _state("s.state", 1))
    _run_all(any_store, store_clock)
    assert any_store.reset(successors=False) == 4
    status = any_store.status()
    assert (status.pending, status.in_progress, status.done, status.failed) == (4, 0, 0, 0)
    _run_all(any_store, store_clock)
    assert _lineage(any_store, "c.state") == [("c.state", Status.DONE, 3), ("c.state-1", Status.DONE, 2),
                                              ("c.state-2", Status.DONE, 1)]
    status = any_store.status()
    assert (status.pending, status.done, status.failed) == (0, 4, 0)


def test_keep_never_doubles_a_claim_on_an_existing_successor(any_store: Store, peer_store: Store,
                                                             store_clock: ShiftedClock) -> None:
    """After ``reset(successors=False)`` a root's successor is already pending; committing the root
    with ``keep=True`` must not hand out a claim on it while another worker can claim it too."""
    _submit(any_store, _state("c.state", 2))
    _run_all(any_store, store_clock)
    assert any_store.reset(successors=False) == 2
    root = _claim_by_name(any_store, "c.state")
    child = any_store.commit(root, ("count", {"count": 1}), keep=True)
    others = peer_store.claim("B", 10)
    holders = ([child.name] if child is not None else []) + [c.name for c in others]
    assert holders.count("c.state-1") == 1, f"c.state-1 held {holders.count('c.state-1')} times"
    for claim in others:
        peer_store.commit(claim, None)
    if child is not None:
        any_store.commit(child, None)
    assert any_store.is_finished()
    assert _lineage(any_store, "c.state") == [("c.state", Status.DONE, 2), ("c.state-1", Status.DONE, 1)]


# -- no clobbering ---------------------------------------------------------------------------------


def test_machines_named_like_successors_are_never_clobbered(any_store: Store, store_clock: ShiftedClock) -> None:
    """Guarantee 3, the seed's warning: ``x.state``, ``x.state-1`` and ``x.state-2`` submitted as
    separate machines all complete, none is overwritten, and the colliding lineage branches."""
    _submit(any_store, _state("x.state", 3), _state("x.state-1", 4), _state("x.state-2", 5))
    _drain(_worker(any_store, store_clock, chain=False))

    status = any_store.status()
    assert (status.done, status.failed, status.pending) == (12, 0, 0)
    counts = {name: [c for _, _, c in _lineage(any_store, name)] for name in ("x.state", "x.state-1", "x.state-2")}
    assert counts == {"x.state": [3, 2, 1], "x.state-1": [4, 3, 2, 1], "x.state-2": [5, 4, 3, 2, 1]}
    names = {name: [n for n, _, _ in _lineage(any_store, name)] for name in counts}
    assert names["x.state"][0] == "x.state" and names["x.state-1"][0] == "x.state-1"
    assert names["x.state-2"][0] == "x.state-2"
    everything = [n for lineage in names.values() for n in lineage]
    assert len(set(everything)) == 12
    assert any("~" in n for n in names["x.state"]), "the colliding lineage should have branched"


def test_branch_when_the_other_machine_moved_first(any_store: Store) -> None:
    """If the machine ``x.state-1`` has already written ``x.state-2``, ``x.state`` branches at once
    and its branch keeps to itself."""
    _submit(any_store, _state("x.state", 3), _state("x.state-1", 4))  # another document than x.state's tick's
    claims = {c.name: c for c in any_store.claim("w", 2)}
    any_store.commit(claims["x.state-1"], ("count", {"count": 1}))  # writes x.state-2
    any_store.commit(claims["x.state"], ("count", {"count": 2}))  # x.state-1 is taken: branch
    successors = {c.state.parent: c for c in any_store.claim("w", 2)}
    assert successors["x.state-1"].name == "x.state-2"
    assert successors["x.state"].name == "x.state-1~2"
    any_store.commit(successors["x.state"], ("count", {"count": 1}))
    any_store.commit(successors["x.state-1"], None)
    last = _claim_one(any_store)
    assert (last.name, last.state.parent) == ("x.state-2~2", "x.state-1~2")
    any_store.commit(last, None)
    assert _lineage(any_store, "x.state") == [("x.state", Status.DONE, 3), ("x.state-1~2", Status.DONE, 2),
                                              ("x.state-2~2", Status.DONE, 1)]
    assert _lineage(any_store, "x.state-1") == [("x.state-1", Status.DONE, 4), ("x.state-2", Status.DONE, 1)]


# -- guarantees through the worker loop ---------------------------------------------------------------


def test_failing_tick_is_retried_with_backoff_then_failed(any_store: Store, travel: TimeTravel) -> None:
    """Guarantee 5 on every store: retried after the backoff (not before), then failed with its reason."""
    calls: list[int] = []

    def flaky(payload: dict[str, Any]) -> None:
        calls.append(1)
        raise ValueError(f"boom {len(calls)}")

    delay = travel.delay_seconds
    worker = _worker(any_store, travel.clock, registry=_registry(flaky=flaky),
                     retry=RetryPolicy(max_attempts=3, base_delay_seconds=delay, max_delay_seconds=delay, jitter=0))
    _submit(any_store, State("f.state", "flaky", {}))
    assert worker.step().retried == 1
    assert worker.step().claimed == 0
    travel.past_delay()
    assert worker.step().retried == 1
    assert worker.step().claimed == 0
    travel.past_delay()
    assert worker.step().failed == 1
    assert len(calls) == 3
    status = any_store.status()
    assert status.recent_failures == [("f.state", "tick_failed", "ValueError: boom 3")]
    (entry,) = any_store.history("f.state")
    assert entry.status is Status.FAILED and entry.attempts == 3
    assert any_store.is_finished()


def test_a_tick_that_mutates_its_payload_is_retried_with_the_original(any_store: Store,
                                                                     travel: TimeTravel) -> None:
    """A handler that changes its payload in place and then raises gets the stored payload on the
    retry, and the stored state never changes: state files are data, not shared objects."""
    seen: list[int] = []

    def mutating(payload: dict[str, Any]) -> dict[str, Any] | None:
        seen.append(payload["count"])
        payload["count"] -= 1
        if len(seen) == 1:
            raise RuntimeError("after mutating")
        return payload if payload["count"] > 0 else None

    worker = _worker(any_store, travel.clock, registry=_registry(mutating=mutating),
                     retry=RetryPolicy(max_attempts=3, base_delay_seconds=0, jitter=0))
    _submit(any_store, State("m.state", "mutating", {"count": 2}))
    _drain(worker)
    assert seen == [2, 2, 1]
    assert [(e.payload, e.status) for e in any_store.history("m.state")] == [
        ({"count": 2}, Status.DONE), ({"count": 1}, Status.DONE)]


def test_an_error_message_no_store_could_hold_is_kept_escaped(any_store: Store, travel: TimeTravel) -> None:
    """A handler's exception message with NUL, a lone surrogate, a line break and a terminal escape
    is recorded (escaped, one line) like any other: it never breaks the store's retry or fail."""
    def nasty(payload: dict[str, Any]) -> None:
        raise ValueError("a\x00b \ud800 line\nbreak \x1b[31mred")

    worker = _worker(any_store, travel.clock, registry=_registry(nasty=nasty),
                     retry=RetryPolicy(max_attempts=2, base_delay_seconds=0, jitter=0))
    _submit(any_store, State("n.state", "nasty", {}))
    _drain(worker)
    message = "ValueError: a\\x00b \\ud800 line\\nbreak \\x1b[31mred"
    assert any_store.status().recent_failures == [("n.state", "tick_failed", message)]


def test_a_successor_payload_that_is_not_json_fails_the_state(any_store: Store, travel: TimeTravel) -> None:
    """A handler whose successor cannot be written as JSON fails its state (bad_return) on every
    store, instead of committing something a directory or database could not hold."""
    worker = _worker(any_store, travel.clock, registry=_registry(weird=lambda p: {"when": object()}))
    _submit(any_store, State("w.state", "weird", {}))
    assert worker.step().failed == 1
    status = any_store.status()
    assert (status.failed, status.done, status.pending) == (1, 0, 0)
    assert status.recent_failures[0][:2] == ("w.state", "bad_return")


def test_workers_on_separate_handles_run_everything_exactly_once(any_store: Store,
                                                                 open_handle: Callable[[], Store],
                                                                 travel: TimeTravel) -> None:
    """Guarantees 1 and 2 with real worker loops: three workers on three handles process 30 lineages;
    no state is ever held by two workers at once (unless the first one's lease ran out, and then it
    learns that it lost the claim) and every transition commits exactly once."""
    _submit(any_store, *(_state(f"m{i:02}.state", 3) for i in range(30)))
    travel.advance(2)  # files copied in by hand wait out an admission grace; these are old enough
    held: dict[str, str] = {}
    committed: Counter[str] = Counter()
    # (state, first holder, second holder); forgiven once the first holder reports the claim lost.
    both_held: list[tuple[str, str, str]] = []
    lost: set[tuple[str, str]] = set()
    lock = threading.Lock()

    def track(worker: str) -> Callable[[Event, Claim], None]:
        def hook(event: Event, claim: Claim) -> None:
            with lock:
                if event is Event.CLAIMED:
                    if claim.name in held:
                        both_held.append((claim.name, held[claim.name], worker))
                    held[claim.name] = worker
                else:
                    if held.get(claim.name) == worker:
                        del held[claim.name]
                    if event is Event.LOST:
                        lost.add((claim.name, worker))
                    if event is Event.COMMITTED:
                        committed[claim.name] += 1
        return hook

    workers = [
        Worker(open_handle(), _registry(), WorkerOptions(name=f"w{i}", poll_seconds=0.05, chain=i % 2 == 0),
               clock=travel.clock, hooks=[track(f"w{i}")])
        for i in range(3)
    ]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a worker did not finish"
    # Time moves fast here (every sleep advances the shared clock), so on a busy machine a lease
    # can run out while its holder waits for a core: then it must have been told it lost the claim.
    overlaps = [f"{name}: {first} and {second}" for name, first, second in both_held if (name, first) not in lost]
    assert overlaps == []
    assert len(committed) == 90 and set(committed.values()) == {1}
    status = any_store.status()
    assert (status.done, status.pending, status.in_progress, status.failed) == (90, 0, 0, 0)


def test_wait_for_work_returns(any_store: Store) -> None:
    """``wait_for_work`` returns on its own with nothing to do, and with work waiting (a hang guard)."""
    any_store.wait_for_work(0.05)
    _submit(any_store, _state("a.state"))
    any_store.wait_for_work(0.05)
    assert _claim_one(any_store).name == "a.state"


@pytest.mark.parametrize("delay", [float("inf"), float("nan"), 1e20, -5.0, "5", True],
                         ids=["inf", "nan", "huge", "negative", "str", "bool"])
def test_retry_with_an_impossible_delay_never_stops_the_worker(any_store: Store, travel: TimeTravel,
                                                                delay: Any) -> None:
    """A handler raising ``Retry`` with a delay no store can honour is a failing tick like any other:
    retried with backoff, then failed with the reason, and the worker keeps going (an unchecked delay
    crashed the worker loop on the directory store, and every worker that took the state over)."""

    def bad_retry(payload: dict[str, Any]) -> None:
        raise Retry(delay, "with a silly delay")

    worker = _worker(any_store, travel.clock, registry=_registry(**{"bad-retry": bad_retry}))
    _submit(any_store, State("b.state", "bad-retry", {}), _state("ok.state"))
    _drain(worker)
    status = any_store.status()
    assert (status.done, status.failed, status.pending, status.in_progress) == (1, 1, 0, 0)
    (failure,) = status.recent_failures
    assert failure[:2] == ("b.state", "tick_failed")
    assert "delay" in failure[2]


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "successor",
    [("bad\nstate", {}), ("x" * 500, {}), ("count", {"count": 1, "deep": _nested(100)}),
     ("count", {"count": 1, "text": "a\x00b"}), ("count", {"count": 1, "a\x00b": 1}),
     ("count", {"count": 1, "text": "\ud800"}), ("count", {"count": 1, "big": "x" * 2_000_000})],
    ids=["control-char-state", "too-long-state", "too-deep-payload", "nul-in-text", "nul-in-key",
         "lone-surrogate", "over-the-size-limit"],
)
def test_a_successor_no_file_could_hold_fails_its_parent(any_store: Store, travel: TimeTravel,
                                                         successor: tuple[str, dict[str, Any]]) -> None:
    """A successor that could never be read back as a state (a state name with control characters or
    too long, a payload nested too deep, text PostgreSQL cannot hold, a file over the size limit)
    fails the state that produced it as bad_return, on every store, instead of being written and
    failing later under its child's name, or breaking the worker's commit over and over."""
    worker = _worker(any_store, travel.clock, registry=_registry(produce=lambda p: successor))
    _submit(any_store, State("p.state", "produce", {}))
    result = worker.step()
    assert (result.failed, result.committed) == (1, 0)
    status = any_store.status()
    assert (status.failed, status.done, status.pending) == (1, 0, 0)
    assert status.recent_failures[0][:2] == ("p.state", "bad_return")
    assert [e.name for e in any_store.history("p.state")] == ["p.state"]


def test_a_huge_error_message_never_resets_the_attempt_count(any_store: Store, travel: TimeTravel) -> None:
    """A handler whose error quotes a 600 KB payload field is retried up to ``max_attempts`` and then
    failed: each error kept is bounded, so the retry record stays readable and keeps its count (an
    unbounded record grew past the size limit, read back as 0 attempts, and retried for ever)."""

    def quoting(payload: dict[str, Any]) -> None:
        raise ValueError(f"bad field: {payload['blob']}")

    worker = _worker(any_store, travel.clock, registry=_registry(quoting=quoting),
                     retry=RetryPolicy(max_attempts=4, base_delay_seconds=0, jitter=0))
    _submit(any_store, State("q.state", "quoting", {"blob": "x" * 600_000}))
    for _ in range(10):
        if any_store.status().failed:
            break
        worker.step()
        travel.advance(0.1)
    status = any_store.status()
    assert (status.failed, status.pending) == (1, 0)
    (entry,) = any_store.history("q.state")
    assert entry.attempts == 4 and entry.reason is not None and len(entry.reason) < 10_000


def test_a_requested_retry_is_not_a_failed_attempt(any_store: Store, travel: TimeTravel) -> None:
    """``retry_later(requested=True)`` holds the state back like any retry but counts a retry, not an
    attempt, and records no error."""
    _submit(any_store, State("r.state", "count", {"count": 1}))
    claim = _claim_one(any_store)
    any_store.retry_later(claim, travel.delay_seconds, "Retry: later", requested=True)
    assert any_store.claim("w1", 10) == []
    travel.past_delay()
    again = _claim_one(any_store)
    assert (again.attempts, again.errors, again.retries) == (0, (), 1)
