"""The store's own small files clobbered by hand: a bad one costs what it described, never a worker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from martian_doves.config import DirectoryOptions, WorkerOptions
from martian_doves.loader import default_registry
from martian_doves.model import State
from martian_doves.retry import RetryPolicy
from martian_doves.stores.directory import LeaseStore
from martian_doves.worker import Worker

GARBAGE = ["[1, 2]", '{"attempts": "abc", "errors": 7, "worker": ["x"]}', '"just a string"', "not json", ""]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_clobbered_hints_registrations_and_reasons_break_nothing(store_dir: Path, garbage: str) -> None:
    store = LeaseStore(store_dir, DirectoryOptions(lease_seconds=30))
    store.submit([State(f"s{i}.state", "countdown", {"count": 2, "tick_seconds": 0}) for i in range(3)])
    store.submit([State("boom.state", "no-such-machine", {})])
    for name in ("s0.state", "s1.state"):
        (store_dir / "pending" / name).write_text(garbage)  # a hint, overwritten by hand
    (store_dir / "workers" / "ghost").write_text(garbage)  # a registration
    worker = Worker(store, default_registry(), WorkerOptions(name="w", poll_seconds=0.05, fail_unknown_states=True,
                                                             retry=RetryPolicy(max_attempts=1)))
    totals = worker.run()
    assert not worker.crashed
    assert totals.committed == 6 and totals.failed == 1
    (store_dir / "failed" / "boom.state.reason.json").write_text(garbage)  # a failure's reason
    (store_dir / "done" / "s2.state").write_text(garbage)  # a done marker
    status = store.status()
    assert (status.pending, status.in_progress, status.done, status.failed) == (0, 0, 6, 1)
    assert [e.name for e in store.history("s2.state")] == ["s2.state", "s2.state-1"]
    assert store.history("boom.state")[0].status.value == "failed"
    assert sorted(os.listdir(store_dir / "in_progress")) == []


def test_a_hint_whose_file_is_a_moment_late_is_given_back_and_one_long_without_it_removed(store_dir: Path) -> None:
    """A successor's hint appears just before its file (so no scan admits the file twice): a worker
    woken by the hint in between leaves it for when the file is there. A hint whose file stays
    missing (removed by hand) is dropped."""
    writer = LeaseStore(store_dir, DirectoryOptions(lease_seconds=30))
    early = LeaseStore(store_dir, DirectoryOptions(lease_seconds=30))
    (store_dir / "pending" / "x.state-1").write_text("")  # the hint, its file not written yet
    assert early.leases.claim_hint("x.state-1", "w") is None
    assert os.listdir(store_dir / "pending") == ["x.state-1"]
    (store_dir / "x.state-1").write_text('{"state": "countdown", "payload": {"count": 1}}')
    claim = early.leases.claim_hint("x.state-1", "w")
    assert claim is not None and claim.state.payload == {"count": 1}

    (store_dir / "pending" / "gone.state").write_text("")
    old = os.stat(store_dir / "pending" / "gone.state").st_mtime - 60
    os.utime(store_dir / "pending" / "gone.state", (old, old))
    assert writer.leases.claim_hint("gone.state", "w") is None
    assert "gone.state" not in os.listdir(store_dir / "pending")
    assert os.listdir(store_dir / "in_progress") == [f"x.state-1@{claim.token}"]
