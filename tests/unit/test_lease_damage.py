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
