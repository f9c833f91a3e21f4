"""Wake-ups a worker killed at the wrong instruction never made, made good by the other workers.

A child machine's end is committed before its parent's join is woken, and an event is posted
before its wait is woken: a worker killed in between leaves a machine parked with what it
waits for already there. The tests leave a store in exactly that state (the wake-up undone
by hand) and check that a worker starting on it wakes the machine (joins are also looked at
by every takeover round of a running worker).
"""
from __future__ import annotations

import os
from pathlib import Path

from martian_doves.config import DirectoryOptions
from martian_doves.model import JOIN_STATE, WAIT_STATE, Child, MachineEvent, State, Successor, WaitFor
from martian_doves.stores.directory import LeaseStore


def _store(path: Path) -> LeaseStore:
    return LeaseStore(path, DirectoryOptions(lease_seconds=30))


def _unwake(store: Path, name: str) -> None:
    """Put the woken waiting entry ``name`` back in waiting/forever/, as if its waker had died first."""
    os.rename(store / "pending" / name, store / "waiting" / "forever" / name)


def test_a_join_whose_last_child_ended_unnoticed_is_woken_when_a_worker_starts(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = _store(path)
    store.submit([State("b.state", "batch", {})])
    (spawn,) = store.claim("w1", 1)
    store.commit(spawn, Successor(JOIN_STATE, {}, wait=WaitFor("collect", children=1),
                                  children=(Child("resize", {}),)))
    (child,) = store.claim("w1", 1)
    store.commit(child, None)
    _unwake(path, "b.state-1")
    assert store.claim("w1", 10) == []
    store.close()

    restarted = _store(path)
    restarted.register_worker("w2")
    (join,) = restarted.claim("w2", 10)
    assert join.name == "b.state-1" and restarted.children(join) is not None
    restarted.close()


def test_a_wait_whose_event_was_posted_unnoticed_is_woken_when_a_worker_starts(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = _store(path)
    store.submit([State("o.state", "order", {})])
    (claim,) = store.claim("w1", 1)
    store.commit(claim, Successor(WAIT_STATE, {}, wait=WaitFor("paid", event="payment")))
    store.leases.machines._post("o.state", MachineEvent("payment", 1, 0.0))  # the sender died before waking it
    assert store.claim("w1", 10) == []
    store.close()

    restarted = _store(path)
    restarted.register_worker("w2")
    (woken,) = restarted.claim("w2", 10)
    event = restarted.take_event(woken)
    assert woken.name == "o.state-1" and event is not None and event.data == 1
    restarted.close()
