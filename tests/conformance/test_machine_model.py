"""Machines that wait, listen and branch, on every store: timers, events, children, per-machine claims.

The store-level tests drive ``commit`` with ``Successor`` records as the worker hands them
over; the worker-level tests run real handlers returning ``Next``, ``Wait`` and ``Spawn``
through ``Worker.step``. Time moves only through ``travel`` (see ``conftest.py``).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from contract_helpers import _claim_one, _submit

from martian_doves.config import WorkerOptions
from martian_doves.contract import Next, Spawn, Wait
from martian_doves.errors import ClaimLost, MachineEnded, NoSuchMachine
from martian_doves.model import JOIN_STATE, WAIT_STATE, Child, State, Status, Successor, WaitFor
from martian_doves.registry import Registry
from martian_doves.retry import RetryPolicy
from martian_doves.stores.base import InspectableStore, Store
from martian_doves.worker import Worker

if TYPE_CHECKING:
    from conftest import TimeTravel


def _worker(store: Store, travel: TimeTravel, registry: Registry, name: str = "w1", **options: Any) -> Worker:
    options.setdefault("retry", RetryPolicy(max_attempts=1, base_delay_seconds=0, jitter=0))
    return Worker(store, registry, WorkerOptions(name=name, **options), clock=travel.worker_clock())


def _run(worker: Worker, steps: int = 200) -> None:
    """Step until a step claims nothing."""
    for _ in range(steps):
        if worker.step().claimed == 0:
            return
    raise AssertionError("the worker never ran out of work")


def _names(store: Store, name: str) -> list[tuple[str, str, Status]]:
    return [(e.name, e.state, e.status) for e in store.history(name)]


def _wait_entry(store: Store, root: str, event: str = "payment", deadline: float | None = None,
                on_timeout: str | None = None) -> None:
    """Submit ``root`` and commit its tick as a ``Wait`` for ``event``."""
    _submit(store, State(root, "place", {"order": 42}))
    claim = _claim_one(store)
    wait = WaitFor("paid", event=event, deadline=deadline, on_timeout=on_timeout)
    assert store.commit(claim, Successor(WAIT_STATE, {"order": 42}, wait=wait), keep=True) is None


# -- timers ------------------------------------------------------------------------------------


def test_a_timer_holds_its_successor_back_until_due(model_store: Store, peer_store: Store,
                                                    travel: TimeTravel) -> None:
    """A successor with ``not_before`` is scheduled: counted apart, claimed by nobody (not even the
    committing worker asking to keep it) until due, then claimed once."""
    _submit(model_store, State("t.state", "count", {"count": 2}))
    claim = _claim_one(model_store)
    due = travel.now() + travel.delay_seconds
    assert model_store.commit(claim, Successor("count", {"count": 1}, not_before=due), keep=True) is None
    assert model_store.claim("w1", 10) == [] and peer_store.claim("w2", 10) == []
    status = model_store.status()
    assert (status.pending, status.scheduled, status.in_progress, status.done) == (0, 1, 0, 1)
    assert not model_store.is_finished()
    (_, timer) = model_store.history("t.state")
    assert timer.status is Status.SCHEDULED and timer.not_before == pytest.approx(due, abs=1.0)

    travel.past_delay()
    fired = _claim_one(peer_store, "w2")
    assert (fired.name, fired.state.payload) == ("t.state-1", {"count": 1})
    assert model_store.claim("w1", 10) == []
    assert model_store.status().scheduled == 0


def test_next_after_is_a_durable_timer_through_the_worker(model_store: Store, travel: TimeTravel) -> None:
    """``Next(state, payload, after=...)`` from a handler schedules the successor; ``Next`` without a
    delay is a plain successor."""
    ran: list[str] = []
    registry = Registry()
    registry.register("first", lambda p: Next("second", {**p, "n": 1}, after=travel.delay_seconds))
    registry.register("second", lambda p: Next("third", {**p, "n": 2}))
    registry.register("third", lambda p: ran.append("third"))
    worker = _worker(model_store, travel, registry)
    _submit(model_store, State("n.state", "first", {}))
    _run(worker)
    assert ran == [] and model_store.status().scheduled == 1
    travel.past_delay()
    _run(worker)
    assert ran == ["third"]
    assert [e.payload for e in model_store.history("n.state")][1:] == [{"n": 1}, {"n": 2}]


# -- events ------------------------------------------------------------------------------------


def test_wait_parks_the_machine_until_its_event_arrives(model_store: Store, peer_store: Store) -> None:
    """A waiting entry is counted as waiting and claimed by nobody; an event sent to the machine by its
    root name makes it claimable, and the entry receives that event (again, if asked again)."""
    _wait_entry(model_store, "o.state")
    assert model_store.claim("w1", 10) == []
    status = model_store.status()
    assert (status.pending, status.waiting, status.scheduled) == (0, 1, 0)
    assert model_store.is_finished()  # no deadline: only an event can move it on

    peer_store.send("o.state", "payment", {"amount": 3})
    claim = _claim_one(model_store)
    assert (claim.name, claim.state.state, claim.state.payload) == ("o.state-1", WAIT_STATE, {"order": 42})
    assert claim.state.wait is not None and claim.state.wait.event == "payment"
    event = model_store.take_event(claim)
    assert event is not None and (event.name, event.data) == ("payment", {"amount": 3})
    assert model_store.take_event(claim) == event
    model_store.commit(claim, Successor("paid", {"order": 42, "event": event.as_payload()}))
    paid = _claim_one(peer_store, "w2")
    assert (paid.name, paid.state.state) == ("o.state-2", "paid")
    assert paid.state.payload == {"order": 42, "event": {"name": "payment", "data": {"amount": 3}}}
    history = model_store.history("o.state-2")
    assert [e.name for e in history] == ["o.state", "o.state-1", "o.state-2"]
    assert history[1].event is not None and history[1].event.name == "payment"


def test_show_tells_the_event_a_wait_took_and_the_children_a_tick_started(model_store: Store) -> None:
    """``show`` gives what ``history`` does: the event a waiting entry took, the children of a spawning state."""
    assert isinstance(model_store, InspectableStore)
    _wait_entry(model_store, "s.state")
    model_store.send("s.state", "payment", 5)
    claim = _claim_one(model_store)
    assert model_store.take_event(claim) is not None
    shown = model_store.show("s.state-1")
    assert shown is not None and shown.event is not None and (shown.event.name, shown.event.data) == ("payment", 5)
    _submit(model_store, State("b.state", "batch", {}))
    (spawn,) = model_store.claim("w1", 10, ["batch"])
    children = (Child("resize", {"i": 0}), Child("resize", {"i": 1}))
    model_store.commit(spawn, Successor(JOIN_STATE, {}, wait=WaitFor("collect", children=2), children=children))
    spawner = model_store.show("b.state")
    assert spawner is not None and spawner.children == ("b.state+0.state", "b.state+1.state")


def test_an_event_sent_before_the_wait_is_kept_for_it(model_store: Store) -> None:
    """An event sent while the machine does something else waits in its mailbox; the wait for it is
    claimable as soon as it is committed."""
    _submit(model_store, State("e.state", "place", {}))
    model_store.send("e.state", "payment", 7)
    claim = _claim_one(model_store)
    wait = WaitFor("paid", event="payment")
    model_store.commit(claim, Successor(WAIT_STATE, {}, wait=wait))
    woken = _claim_one(model_store)
    event = model_store.take_event(woken)
    assert event is not None and event.data == 7


def test_events_are_taken_once_in_order_of_sending_and_only_by_name(model_store: Store) -> None:
    """Two events of one name go to two successive waits in the order they were sent; an event of
    another name wakes nothing and stays for a wait of its own name."""
    _submit(model_store, State("q.state", "place", {}))
    for data in (1, 2):
        model_store.send("q.state", "ping", data)
    model_store.send("q.state", "other", "x")
    claim = _claim_one(model_store)
    received = []
    for _ in range(2):
        model_store.commit(claim, Successor(WAIT_STATE, {}, wait=WaitFor("next", event="ping")))
        claim = _claim_one(model_store)
        event = model_store.take_event(claim)
        assert event is not None
        received.append(event.data)
    assert received == [1, 2]
    model_store.commit(claim, Successor(WAIT_STATE, {}, wait=WaitFor("next", event="ping")))
    assert model_store.claim("w1", 10) == []  # no third ping; "other" does not wake it
    model_store.send("q.state", "ping", 3)
    third = _claim_one(model_store)
    event = model_store.take_event(third)
    assert event is not None and event.data == 3


def test_a_taken_event_stays_with_its_wait_after_a_takeover(model_store: Store, peer_store: Store,
                                                            travel: TimeTravel) -> None:
    """A worker that took an event and died before committing: whoever takes the wait over gets the
    same event, not the next one, so no event is delivered twice or lost."""
    _wait_entry(model_store, "k.state")
    model_store.send("k.state", "payment", "first")
    claim = _claim_one(model_store)
    event = model_store.take_event(claim)
    assert event is not None and event.data == "first"
    model_store.send("k.state", "payment", "second")
    travel.expire_leases()
    again = _claim_one(peer_store, "w2")
    assert again.name == "k.state-1"
    taken = peer_store.take_event(again)
    assert taken is not None and taken.data == "first"
    with pytest.raises(ClaimLost):
        model_store.commit(claim, Successor("paid", {"event": event.as_payload()}))
    peer_store.commit(again, Successor("paid", {"event": taken.as_payload()}))
    assert peer_store.status().done == 2


def test_a_taken_over_claim_cannot_make_a_wait_where_its_successor_must_branch(model_store: Store,
                                                                              peer_store: Store,
                                                                              travel: TimeTravel) -> None:
    """Fencing where a commit both waits and branches (the successor's first name is another machine's):
    the claim that was taken over is refused and creates no waiting entry; its new owner's wait is the
    only one."""
    _submit(model_store, State("x.state", "place", {}), State("x.state-1", "other", {}))
    old = next(c for c in model_store.claim("A", 10) if c.name == "x.state")
    travel.expire_leases()
    new = next(c for c in peer_store.claim("B", 10) if c.name == "x.state")
    wait = Successor(WAIT_STATE, {}, wait=WaitFor("paid", event="payment"))
    with pytest.raises(ClaimLost):
        model_store.commit(old, wait)
    assert _names(model_store, "x.state") == [("x.state", "place", Status.IN_PROGRESS)]
    peer_store.commit(new, wait)
    assert _names(model_store, "x.state") == [("x.state", "place", Status.DONE),
                                              ("x.state-1~2", WAIT_STATE, Status.WAITING)]


def test_send_refuses_machines_that_do_not_exist_or_have_ended(model_store: Store) -> None:
    """Sending to an unknown machine, or to one whose last state is done or failed, is refused; any
    state of a running machine's lineage names it."""
    with pytest.raises(NoSuchMachine):
        model_store.send("nobody.state", "payment", None)
    _wait_entry(model_store, "m.state")
    model_store.send("m.state-1", "payment", None)  # a successor's name reaches its machine
    claim = _claim_one(model_store)
    model_store.commit(claim, None)
    with pytest.raises(MachineEnded):
        model_store.send("m.state", "payment", None)


def test_wait_timeout_runs_the_timeout_state_once(model_store: Store, travel: TimeTravel) -> None:
    """A wait whose deadline passes without its event goes to ``on_timeout`` with its payload; a
    deadline is a timer, so the store is not finished while it runs."""
    ran: list[dict[str, Any]] = []
    registry = Registry()
    registry.register("place", lambda p: Wait("payment", then="paid", timeout=travel.delay_seconds,
                                              on_timeout="cancel", payload=p))
    registry.register("paid", lambda p: ran.append({"paid": p}))
    registry.register("cancel", lambda p: ran.append({"cancel": p}))
    worker = _worker(model_store, travel, registry)
    _submit(model_store, State("c.state", "place", {"order": 1}))
    _run(worker)
    assert ran == [] and model_store.status().waiting == 1 and not model_store.is_finished()
    travel.past_delay()
    _run(worker)
    assert ran == [{"cancel": {"order": 1}}]
    assert _names(model_store, "c.state") == [("c.state", "place", Status.DONE),
                                              ("c.state-1", WAIT_STATE, Status.DONE),
                                              ("c.state-2", "cancel", Status.DONE)]
    with pytest.raises(MachineEnded):
        model_store.send("c.state", "payment", None)


def test_wait_timeout_without_a_timeout_state_fails_the_machine(model_store: Store, travel: TimeTravel) -> None:
    """A wait with a timeout and no ``on_timeout`` fails its machine with ``wait_timeout`` at the deadline."""
    registry = Registry()
    registry.register("place", lambda p: Wait("payment", then="paid", timeout=travel.delay_seconds, payload=p))
    worker = _worker(model_store, travel, registry)
    _submit(model_store, State("f.state", "place", {}))
    _run(worker)
    travel.past_delay()
    _run(worker)
    status = model_store.status()
    assert (status.failed, status.waiting) == (1, 0)
    assert status.recent_failures[0][:2] == ("f.state-1", "wait_timeout")


def test_an_event_before_the_deadline_wins_and_the_timeout_never_fires(model_store: Store,
                                                                       travel: TimeTravel) -> None:
    """The event arrives first: the machine goes to ``then`` with the event in its payload, and
    passing the deadline afterwards changes nothing."""
    ran: list[tuple[str, dict[str, Any]]] = []
    registry = Registry()
    registry.register("place", lambda p: Wait("payment", then="paid", timeout=travel.delay_seconds,
                                              on_timeout="cancel", payload=p))
    registry.register("paid", lambda p: ran.append(("paid", p)))
    registry.register("cancel", lambda p: ran.append(("cancel", p)))
    worker = _worker(model_store, travel, registry)
    _submit(model_store, State("w.state", "place", {"order": 9}))
    _run(worker)
    model_store.send("w.state", "payment", {"card": "ok"})
    _run(worker)
    travel.past_delay()
    _run(worker)
    assert ran == [("paid", {"order": 9, "event": {"name": "payment", "data": {"card": "ok"}}})]
    assert model_store.is_finished()


# -- children -----------------------------------------------------------------------------------


def _batch_registry(joined: list[dict[str, Any]], runs: Counter[str]) -> Registry:
    def resize(p: dict[str, Any]) -> Any:
        runs[f"resize {p['img']}"] += 1
        if p["img"] == "bad":
            return 42  # not a return value the contract knows: this child fails (bad_return)
        return None if p.get("done") else {**p, "done": True}

    registry = Registry()
    registry.register("batch", lambda p: Spawn([("resize", {"img": i}) for i in p["images"]], then="collect",
                                               payload=p))
    registry.register("resize", resize)
    registry.register("collect", lambda p: joined.append(p))
    return registry


def test_spawn_runs_children_then_joins_once_with_their_outcomes(model_store: Store, travel: TimeTravel) -> None:
    """Children are machines of their own, named from their parent; the join runs once, after every
    child ended, with one entry per child in order: final payload, or failure."""
    joined: list[dict[str, Any]] = []
    runs: Counter[str] = Counter()
    worker = _worker(model_store, travel, _batch_registry(joined, runs))
    _submit(model_store, State("b.state", "batch", {"images": ["a", "bad", "c"]}))
    _run(worker)
    assert len(joined) == 1
    children = joined[0]["children"]
    assert [c["name"] for c in children] == ["b.state+0.state", "b.state+1.state", "b.state+2.state"]
    assert [c["status"] for c in children] == ["done", "failed", "done"]
    assert children[0]["payload"] == {"img": "a", "done": True}
    assert children[1]["error"]["code"] == "bad_return"
    assert joined[0]["images"] == ["a", "bad", "c"]
    assert _names(model_store, "b.state") == [("b.state", "batch", Status.DONE), ("b.state-1", JOIN_STATE, Status.DONE),
                                              ("b.state-2", "collect", Status.DONE)]
    assert model_store.history("b.state")[0].children == ("b.state+0.state", "b.state+1.state", "b.state+2.state")
    child = model_store.history("b.state+2.state")
    assert [e.name for e in child] == ["b.state+2.state", "b.state+2.state-1"]
    assert child[0].origin is not None and (child[0].origin.parent, child[0].origin.index) == ("b.state", 2)
    status = model_store.status()
    assert (status.done, status.failed, status.waiting, status.pending) == (7, 1, 0, 0)


def test_a_join_waits_for_its_last_child(model_store: Store, peer_store: Store) -> None:
    """The join entry is waiting while a child runs, and claimable only once the last child ends."""
    _submit(model_store, State("j.state", "batch", {}))
    claim = _claim_one(model_store)
    children = (Child("resize", {"img": 1}), Child("resize", {"img": 2}))
    model_store.commit(claim, Successor(JOIN_STATE, {"n": 2}, wait=WaitFor("collect", children=2), children=children))
    first, second = (_claim_one(peer_store, "w2") for _ in range(2))
    assert {first.name, second.name} == {"j.state+0.state", "j.state+1.state"}
    assert model_store.status().waiting == 1
    peer_store.commit(first, None)
    assert model_store.claim("w1", 10) == []
    peer_store.commit(second, None)
    join = _claim_one(model_store)
    assert (join.name, join.state.state) == ("j.state-1", JOIN_STATE)
    outcomes = model_store.children(join)
    assert outcomes is not None and [o.name for o in outcomes] == ["j.state+0.state", "j.state+1.state"]
    assert [o.payload for o in outcomes] == [{"img": 1}, {"img": 2}]


def test_a_spawn_re_run_after_a_takeover_never_makes_a_second_set(model_store: Store, peer_store: Store,
                                                                  travel: TimeTravel) -> None:
    """Children are named from their parent: the worker that took a spawning state over creates the
    same children, and the worker that lost it cannot commit."""
    _submit(model_store, State("s.state", "batch", {}))
    lost = _claim_one(model_store)
    travel.expire_leases()
    taker = _claim_one(peer_store, "w2")
    successor = Successor(JOIN_STATE, {}, wait=WaitFor("collect", children=2),
                          children=(Child("resize", {"i": 0}), Child("resize", {"i": 1})))
    peer_store.commit(taker, successor)
    with pytest.raises(ClaimLost):
        model_store.commit(lost, successor)
    names = sorted(c.name for c in model_store.claim("w1", 10))
    assert names == ["s.state+0.state", "s.state+1.state"]


def test_a_child_whose_name_another_machine_holds_takes_the_next_branch(model_store: Store) -> None:
    """A machine submitted under a child's name is never touched: that child branches (``+0~2``), and
    the join waits for the children it made, not for that machine."""
    _submit(model_store, State("s.state", "batch", {}), State("s.state+0.state", "other", {}))
    (claim,) = model_store.claim("w1", 10, ["batch"])
    children = (Child("resize", {"i": 0}), Child("resize", {"i": 1}))
    model_store.commit(claim, Successor(JOIN_STATE, {}, wait=WaitFor("collect", children=2), children=children))
    assert model_store.history("s.state")[0].children == ("s.state+0~2.state", "s.state+1.state")
    made = model_store.claim("w1", 10, ["resize"])
    assert sorted(c.name for c in made) == ["s.state+0~2.state", "s.state+1.state"]
    for child in made:
        model_store.commit(child, None)
    (join,) = model_store.claim("w1", 10, [])  # the worker's own steps only
    outcomes = model_store.children(join)
    assert outcomes is not None and [o.name for o in outcomes] == ["s.state+0~2.state", "s.state+1.state"]
    assert _names(model_store, "s.state+0.state") == [("s.state+0.state", "other", Status.PENDING)]


def test_spawn_of_no_children_joins_at_once(model_store: Store, travel: TimeTravel) -> None:
    """An empty ``Spawn`` goes straight to its join, with an empty list."""
    joined: list[dict[str, Any]] = []
    worker = _worker(model_store, travel, _batch_registry(joined, Counter()))
    _submit(model_store, State("z.state", "batch", {"images": []}))
    _run(worker)
    assert joined == [{"images": [], "children": []}]


def test_nested_spawns_join_from_the_inside_out(model_store: Store, travel: TimeTravel) -> None:
    """A child that spawns children of its own ends only when its own join's lineage ends."""
    joined: list[str] = []
    registry = Registry()
    registry.register("tree", lambda p: Spawn([("tree", {"depth": p["depth"] - 1}) for _ in range(2)],
                                              then="leaf", payload=p) if p["depth"] else None)
    registry.register("leaf", lambda p: joined.append(f"{p['depth']}:{len(p['children'])}"))
    worker = _worker(model_store, travel, registry)
    _submit(model_store, State("t.state", "tree", {"depth": 2}))
    _run(worker)
    assert sorted(joined) == ["1:2", "1:2", "2:2"]
    assert joined[-1] == "2:2"


# -- a fleet of different workers ---------------------------------------------------------------


def test_a_worker_claims_only_states_it_has_machines_for(model_store: Store, peer_store: Store) -> None:
    """A worker never claims another machine's state; waiting entries and joins are the worker's own
    steps, claimable by any worker."""
    _submit(model_store, State("a.state", "alpha", {}), State("b.state", "beta", {}))
    assert [c.name for c in model_store.claim("w1", 10, ["alpha"])] == ["a.state"]
    assert [c.name for c in peer_store.claim("w2", 10, ["beta"])] == ["b.state"]
    assert model_store.is_finished(["gamma"]) and not model_store.is_finished(["alpha"])
