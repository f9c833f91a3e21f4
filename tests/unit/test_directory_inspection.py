"""Reading a folder store for people (issue 10): what only a folder has to get right.

Quarantined files open like any failed state; a successor whose file names no machine
still finds its machine; files that never change are read once by a long-lived view; a
store whose folders are gone is an outage; a dead worker's claims come back at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from martian_doves.config import DirectoryOptions
from martian_doves.errors import StoreError, StoreUnavailable
from martian_doves.model import Failure, State, StateQuery, Status
from martian_doves.stores.directory import LeaseStore, views


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LeaseStore]:
    opened = LeaseStore(tmp_path / "store", DirectoryOptions(lease_seconds=600, admission_grace_seconds=0))
    yield opened
    opened.close()


def _quarantine(store: LeaseStore, name: str = "bad.state") -> None:
    Path(store.files.state_at(name).path).write_text("{not json")
    store.admission.scan_root()
    pending = store.show(name)
    assert pending is not None and (pending.status, pending.state) == (Status.PENDING, views.UNREADABLE)
    assert store.claim("w", 5) == []  # unreadable: quarantined, never handed out


def test_a_quarantined_file_opens_lists_and_counts_as_a_failed_state(store: LeaseStore) -> None:
    _quarantine(store)
    record = store.show("bad.state")
    assert record is not None
    assert (record.status, record.state, record.payload) == (Status.FAILED, views.UNREADABLE, None)
    assert record.failure is not None and record.failure.code == "malformed_json"
    assert [r.name for r in store.find(StateQuery(code="malformed_json"))] == ["bad.state"]
    assert [e.name for e in store.history("bad.state")] == ["bad.state"]
    assert store.counts_by_state() == {views.UNREADABLE: {Status.FAILED: 1}}
    assert store.forget(["bad.state"]) == 1
    assert not os.path.lexists(store.files.reason_at("bad.state").path) and store.show("bad.state") is None


def test_a_successor_without_a_machine_field_finds_its_machine_up_its_parents(store: LeaseStore) -> None:
    store.submit([State("m.state", "count", {})])
    parent = store.claim("w", 1)[0]
    store.commit(parent, ("count", {"n": 1}))
    child = store.claim("w", 1)[0]
    store.commit(child, ("count", {"n": 2}))
    last = store.show("m.state-2")
    assert last is not None and last.parent == "m.state-1" and last.machine_name == "m.state"
    found = {r.name: r.machine_name for r in store.find(StateQuery())}
    assert found == {"m.state": "m.state", "m.state-1": "m.state", "m.state-2": "m.state"}


def test_a_long_lived_view_reads_each_state_file_once(store: LeaseStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.submit([State(f"s{i}.state", "count", {}) for i in range(20)])
    reads: list[str] = []
    original = store.files.read_state

    def counting(name: str, *, failed: bool = False) -> State:
        reads.append(name)
        return original(name, failed=failed)

    monkeypatch.setattr(store.files, "read_state", counting)
    assert store.counts_by_state() == {"count": {Status.PENDING: 20}}
    assert len(reads) == 20
    assert store.counts_by_state() == {"count": {Status.PENDING: 20}}
    assert len(reads) == 20  # nothing read again
    # A file replaced under its name (another inode) is read again.
    os.unlink(store.files.state_at("s0.state").path)
    Path(store.files.state_at("s0.state").path).write_text(json.dumps({"state": "other", "payload": {}}))
    assert store.counts_by_state() == {"count": {Status.PENDING: 19}, "other": {Status.PENDING: 1}}


def test_workers_outcomes_are_counted_once_every_marker_was_read(store: LeaseStore,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "OUTCOMES_PER_STATUS", 3)
    store.register_worker("w")
    store.submit([State(f"s{i}.state", "count", {}) for i in range(5)])
    claims = store.claim("w", 5)
    for claim in claims[:4]:
        store.commit(claim, None)
    store.fail(claims[4], Failure("tick_failed", "boom"))
    first = next(w for w in store.status().workers if w.name == "w")
    assert first.processed is None  # 5 markers, 3 read: not counted yet
    second = next(w for w in store.status().workers if w.name == "w")
    assert (second.processed, second.failed) == (5, 1)


def test_a_store_whose_folders_are_gone_is_an_outage(store: LeaseStore, tmp_path: Path) -> None:
    assert store.status().pending == 0
    os.rename(store.files.done.path, tmp_path / "done-aside")
    with pytest.raises(StoreUnavailable, match=r"done/ moved, removed or replaced"):
        store.status()


def test_a_store_moved_away_is_an_outage_until_it_is_back(store: LeaseStore, tmp_path: Path) -> None:
    """Its folders are held open, so they still read: the store must notice its own path is gone."""
    assert store.status().pending == 0
    aside = tmp_path / "aside"
    os.rename(store.files.root, aside)
    with pytest.raises(StoreUnavailable, match=r"the store moved, removed or replaced"):
        store.status()
    os.rename(aside, store.files.root)
    assert store.status().pending == 0


def test_a_worker_stops_on_a_folder_replaced_under_it(store: LeaseStore) -> None:
    """A replaced pending/ would hide every new hint from this worker: its root scan says so."""
    os.rename(store.files.pending.path, store.files.pending.path + "-old")
    os.mkdir(store.files.pending.path)
    with pytest.raises(StoreError, match=r"pending/ in .* moved, removed or replaced"):
        store.is_finished()


def test_a_dead_workers_claims_are_given_back_with_one_attempt_and_its_registration_says_why(
        store: LeaseStore) -> None:
    store.register_worker("dead")
    store.register_worker("alive")
    store.submit([State("a.state", "count", {}), State("b.state", "count", {})])
    mine = store.claim("dead", 1)
    theirs = store.claim("alive", 1)
    assert store.worker_exited("dead", "was killed by SIGKILL") == 1
    again = store.claim("alive", 5)
    assert [c.name for c in again] == [mine[0].name] and again[0].attempts == 1
    assert again[0].errors == ("worker dead was killed by SIGKILL",)
    workers = {w.name: w for w in store.status().workers}
    assert workers["dead"].ended == "was killed by SIGKILL" and not workers["dead"].alive
    assert workers["alive"].alive and {c.name for c in workers["alive"].claims} == {"a.state", "b.state"}
    store.commit(theirs[0], None)  # the live worker's own claim was never touched
    with pytest.raises(Exception, match="taken over"):
        store.commit(mine[0], None)  # the dead worker's token is fenced out


def test_the_failed_count_a_run_starts_with_is_what_status_counts(store: LeaseStore) -> None:
    """``doves run`` reads it instead of a whole status, which a large backlog makes slow."""
    store.register_worker("w")
    store.submit([State(f"s{i}.state", "count", {}) for i in range(4)])
    assert store.failed_count() == 0
    for claim in store.claim("w", 3):
        store.fail(claim, Failure("tick_failed", "boom"))
    assert store.failed_count() == store.status().failed == 3
