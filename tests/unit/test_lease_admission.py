"""Admission of hand-copied files in the lease store must never give a claimed state a second hint.

A worker admitting files copied into the folder looks for each file's markers
(pending hint, claim, done, failed). If it looks at the claims *before* the hints, a
state another worker claims in between is seen nowhere, gets a fresh hint, and runs
twice. These tests put that other worker's claim exactly in the gap, deterministically,
by running it from inside the admitting store's listing of ``in_progress/``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from martian_doves.config import DirectoryOptions, WorkerOptions
from martian_doves.loader import default_registry
from martian_doves.stores.directory import LeaseStore
from martian_doves.worker import Worker


class InterleavingStore(LeaseStore):
    """A lease store that runs ``interleave`` (once) right after it lists ``in_progress/``.

    If the store never needs that listing (it saw the hints first), the test runs the
    interleaved step after the pass instead: either way B's claims land where they would
    have done the most harm.
    """

    interleave: Callable[[], object] | None = None

    def __init__(self, root: Path, options: DirectoryOptions) -> None:
        super().__init__(root, options)
        listed = self.files.claimed_names

        def claimed_names() -> set[str]:
            names = listed()
            if self.interleave is not None:
                step, self.interleave = self.interleave, None
                step()
            return names

        self.files.claimed_names = claimed_names  # type: ignore[method-assign]


def _age(path: Path) -> None:
    past = time.time() - 60  # copied in a while ago: past the admission grace
    os.utime(path, (past, past))


def _copy_in(folder: Path, *names: str) -> None:
    past = time.time() - 60  # copied in a while ago: past the admission grace
    for name in names:
        path = folder / name
        path.write_text(json.dumps({"state": "countdown", "payload": {"count": 1}}))
        os.utime(path, (past, past))


def test_a_state_claimed_while_another_worker_admits_gets_no_second_hint(store_dir: Path) -> None:
    """Worker B claims the states in the middle of worker A's admission pass: A adds no hint for them,
    so nobody can claim them a second time while B runs them."""
    options = DirectoryOptions(admission_grace_seconds=1.0)
    worker_b = LeaseStore(store_dir, options)
    _copy_in(store_dir, "a.state", "b.state", "c.state")
    worker_a = InterleavingStore(store_dir, options)
    try:
        worker_b.admission.scan_root()  # B admits the files; it claims them only inside A's pass
        assert sorted(os.listdir(store_dir / "pending")) == ["a.state", "b.state", "c.state"]
        held: list[str] = []
        worker_a.interleave = lambda: held.extend(c.name for c in worker_b.claim("B", 10))
        worker_a.admission.scan_root()
        if worker_a.interleave is not None:  # A never listed in_progress/: B claims after the pass
            worker_a.interleave()
        assert sorted(held) == ["a.state", "b.state", "c.state"]
        assert os.listdir(store_dir / "pending") == [], "a claimed state was given a second hint"
        assert worker_a.claim("A", 10) == []
    finally:
        worker_a.close()
        worker_b.close()


def test_an_orphaned_file_is_still_admitted(store_dir: Path) -> None:
    """A file with no marker at all (copied in by hand) gets its hint, and one only."""
    _copy_in(store_dir, "new.state")
    first = LeaseStore(store_dir)
    second = LeaseStore(store_dir)
    try:
        first.admission.scan_root()
        second.admission.scan_root()
        assert os.listdir(store_dir / "pending") == ["new.state"]
        assert [c.name for c in second.claim("B", 10)] == ["new.state"]
        assert first.claim("A", 10) == []
    finally:
        first.close()
        second.close()


def test_a_settled_state_is_not_admitted_again(store_dir: Path) -> None:
    """A file whose state is done is left alone by a fresh worker's scan."""
    _copy_in(store_dir, "old.state")
    first = LeaseStore(store_dir)
    try:
        (claim,) = first.claim("A", 10)
        first.commit(claim, None)
    finally:
        first.close()
    fresh = LeaseStore(store_dir)
    try:
        fresh.admission.scan_root()
        assert os.listdir(store_dir / "pending") == []
        assert fresh.is_finished()
    finally:
        fresh.close()


def test_a_file_copied_in_after_the_last_claim_is_not_finished(store_dir: Path) -> None:
    """``is_finished`` looks at the wake-ups it has been sent: a file copied in after a worker's last
    claim, before its next root scan, is work, so the worker must not exit and leave it behind."""
    store = LeaseStore(store_dir, DirectoryOptions(scan_seconds=3600))
    try:
        assert store.is_finished()  # the first call scans the folder; the next scan is an hour away
        _copy_in(store_dir, "late.state")
        assert not store.is_finished(), "a state copied in was ignored"
        (claim,) = store.claim("A", 10)
        assert claim.name == "late.state"
        store.commit(claim, None)
        assert store.is_finished()
    finally:
        store.close()


def test_a_young_file_copied_in_late_is_not_finished_either(store_dir: Path) -> None:
    """A file still inside its admission grace also keeps the store unfinished (it is deferred)."""
    store = LeaseStore(store_dir, DirectoryOptions(scan_seconds=3600, admission_grace_seconds=3600))
    try:
        assert store.is_finished()
        (store_dir / "young.state").write_text(json.dumps({"state": "countdown", "payload": {"count": 1}}))
        assert not store.is_finished()
    finally:
        store.close()


def test_a_failed_states_file_copied_in_again_is_reported_and_runs_after_retry(
        store_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A user fixes a quarantined file and copies it in again: it does not run by itself (the
    name has failed), the log says how to run it, and `retry` runs the new file."""
    broken = store_dir / "job.state"
    broken.write_text('{"state": "countdown", "payload": {"count": 1}')  # malformed
    _age(broken)
    store = LeaseStore(store_dir, DirectoryOptions(lease_seconds=30))
    Worker(store, default_registry(), WorkerOptions(name="w", poll_seconds=0.05)).run()
    assert store.status().failed == 1  # quarantined as malformed
    broken.write_text('{"state": "countdown", "payload": {"count": 1, "tick_seconds": 0}}')  # fixed
    _age(broken)
    again = LeaseStore(store_dir, DirectoryOptions(lease_seconds=30))
    with caplog.at_level(logging.WARNING):
        assert Worker(again, default_registry(), WorkerOptions(name="w", poll_seconds=0.05)).run().claimed == 0
    assert "job.state is in the folder again, but a state of that name failed" in caplog.text
    assert again.retry_failed(["job.state"]) == 1
    assert Worker(again, default_registry(), WorkerOptions(name="w", poll_seconds=0.05)).run().committed == 1
    assert again.status().failed == 0
