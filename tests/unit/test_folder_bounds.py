"""A folder store's worker keeps nothing that grows with history, and claims before it has listed a large backlog.

Memory is measured with ``tracemalloc`` (what the store's own code keeps allocated),
never with timings or the process's size: after a warm-up, thousands more
transitions on the same store object must leave its allocations where they were.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest

from martian_doves.config import DirectoryOptions
from martian_doves.model import State
from martian_doves.stores.directory import LeaseStore

#: Bytes the store's code may hold on to after thousands of transitions more (a few
#: batches and interned names; every state name ever seen would be far more).
ALLOWED_GROWTH_BYTES = 64 * 1024


def _run(store: LeaseStore, prefix: str, machines: int) -> None:
    """Submit ``machines`` two-tick machines and run them to the end, rescanning the root all along."""
    store.submit([State(f"{prefix}{i:05d}.state", "countdown", {"count": 1}) for i in range(machines)])
    while not store.is_finished():
        for claim in store.claim("w", 64):
            count = claim.state.payload["count"]
            store.commit(claim, ("countdown", {"count": count - 1}) if count else None)


def _held_by_store_code() -> int:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, "*martian_doves/stores/directory/*")])
    return sum(stat.size for stat in snapshot.statistics("filename"))


@pytest.mark.slow
def test_a_worker_keeps_nothing_per_state_it_has_seen(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path / "store", DirectoryOptions(scan_seconds=0.001, admission_grace_seconds=0))
    tracemalloc.start(5)
    try:
        _run(store, "warm", 200)
        before = _held_by_store_code()
        _run(store, "more", 1000)  # 2,000 transitions, the root listed over and over
        growth = _held_by_store_code() - before
    finally:
        tracemalloc.stop()
        store.close()
    assert len(os.listdir(tmp_path / "store" / "done")) == 2400
    assert growth < ALLOWED_GROWTH_BYTES, f"the store's code holds {growth} bytes more after 2,000 transitions"


@pytest.mark.slow
def test_the_first_claim_comes_before_a_large_backlog_is_listed(tmp_path: Path) -> None:
    """20,000 pending (written as ``submit`` writes them): the first claim reads a batch of the
    listing of ``pending/`` and of the root, not all of either."""
    store = LeaseStore(tmp_path / "store")
    data = json.dumps({"state": "countdown", "payload": {"count": 0}}).encode()
    for i in range(20_000):
        name = f"m{i:05d}.state"
        (tmp_path / "store" / name).write_bytes(data)
        (tmp_path / "store" / "pending" / name).touch()
    try:
        (claim,) = store.claim("w", 1)
        assert store._walk is not None, "the whole of pending/ was read before the first claim"
        assert store.admission._pass is not None, "the whole root was read before the first claim"
        store.commit(claim, None)
        assert len(store.claim("w", 1000)) == 1000  # the walk goes on where it stopped
    finally:
        store.close()
