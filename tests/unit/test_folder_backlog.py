"""A large backlog on a folder store: ``pending/`` holds only what may run now, so ``status``
counts it by names, and a delayed retry waits in ``scheduled/`` (the semaphore's bounded
assignment is tested with its protocol, in ``test_semaphore.py``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from martian_doves.clock import SystemClock
from martian_doves.config import DirectoryOptions
from martian_doves.model import State
from martian_doves.stores.directory import LeaseStore, views


def _store(root: Path, offset_seconds: float = 0.0) -> LeaseStore:
    return LeaseStore(root, DirectoryOptions(), clock=SystemClock(offset_seconds))


def _states(count: int) -> list[State]:
    return [State(f"b{i}.state", "countdown", {"count": 1}) for i in range(count)]


def _parked(root: Path) -> list[str]:
    return sorted(name for bucket in (root / "scheduled").iterdir() for name in os.listdir(bucket))


def test_a_delayed_retry_waits_in_scheduled_with_its_attempts(store_dir: Path) -> None:
    store = _store(store_dir)
    store.submit(_states(1))
    (claim,) = store.claim("w1", 1)
    store.retry_later(claim, 60, "ValueError: first")
    assert os.listdir(store_dir / "pending") == [] and _parked(store_dir) == ["b0.state"]
    status = store.status()
    assert (status.pending, status.scheduled, status.in_progress) == (0, 1, 0)
    shown = store.show("b0.state")
    assert shown is not None and (shown.attempts, shown.errors) == (1, ("ValueError: first",))
    assert store.claim("w1", 1) == [] and not store.is_finished()
    # A fresh worker's first pass over the root finds the retry's timer: it does not admit the file.
    fresh = _store(store_dir)
    fresh.admission.scan_root()
    assert fresh.claim("w2", 1) == [] and os.listdir(store_dir / "pending") == []
    later = _store(store_dir, offset_seconds=120)
    (again,) = later.claim("w3", 1)
    assert (again.name, again.attempts, again.errors) == ("b0.state", 1, ("ValueError: first",))


def test_a_hint_due_later_left_by_an_earlier_version_is_counted_scheduled_then_moved_aside(store_dir: Path) -> None:
    store = _store(store_dir)
    store.submit(_states(3))
    os.unlink(store_dir / "pending" / "b1.state")
    store.files.write_hint("b1.state", not_before=time.time() + 60, attempts=2, errors=("e1", "e2"))
    status = store.status()
    assert (status.pending, status.scheduled) == (2, 1)
    claimed = store.claim("w1", 10)
    assert sorted(c.name for c in claimed) == ["b0.state", "b2.state"]
    assert os.listdir(store_dir / "pending") == [] and _parked(store_dir) == ["b1.state"]
    (again,) = _store(store_dir, offset_seconds=120).claim("w2", 10)
    assert (again.name, again.attempts, again.errors) == ("b1.state", 2, ("e1", "e2"))


def test_status_of_a_large_backlog_looks_at_a_bounded_number_of_hints(store_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "HINTS_LOOKED_AT", 4)
    store = _store(store_dir)
    store.submit(_states(10))
    status = store.status()
    assert (status.pending, status.scheduled) == (10, 0)
    assert status.oldest_pending_at is not None and status.oldest_pending_at <= time.time()
    assert status.details["oldest_pending_of"] == "4 hints looked at, of 10"
    # One hint due later (an earlier version's) among them: every hint is looked at, the split stays exact.
    os.unlink(store_dir / "pending" / "b7.state")
    store.files.write_hint("b7.state", not_before=time.time() + 60)
    status = store.status()
    assert (status.pending, status.scheduled) == (9, 1)


def test_status_counts_files_copied_in_by_hand_and_lists_the_root_only_while_no_worker_runs(
        store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The root holds every state ever written: ``status`` of a store that a worker runs (and admits
    files copied in, at once) does not list it; with no worker it does, and counts what arrived
    unannounced as pending, but not a file that is no state."""
    store = _store(store_dir)
    store.submit(_states(2))
    listed: list[str] = []
    listdir = views.fsops.listdir_quiet
    monkeypatch.setattr(views.fsops, "listdir_quiet", lambda folder: listed.append(folder.path) or listdir(folder))
    assert store.status().pending == 2
    (store_dir / "by-hand.state").write_text('{"state": "countdown", "payload": {"count": 1}}')
    (store_dir / "notes.txt").write_text("not a state")
    assert store.status().pending == 3
    assert str(store_dir) in listed
    store.register_worker("w1")
    written = time.time() - 60  # written a while ago: its writer is done
    os.utime(store_dir / "by-hand.state", (written, written))
    store.admission.scan_root()  # what a worker's claims do: the file copied in gets its hint
    listed.clear()
    status = store.status()
    assert (status.pending, status.in_progress) == (3, 0)
    assert str(store_dir) not in listed and listed  # pending/, done/ ... but never the root
    store.unregister_worker("w1")
    assert store.status().pending == 3
