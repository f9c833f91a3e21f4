"""Temporary files: never visible as states, and a crashed writer's leftovers are cleaned up."""

from __future__ import annotations

import os
import time
from pathlib import Path

from martian_doves.clock import SystemClock
from martian_doves.config import DirectoryOptions, WorkerOptions
from martian_doves.loader import default_registry
from martian_doves.model import State
from martian_doves.stores.directory import LeaseStore
from martian_doves.worker import Worker


def test_leftover_temporaries_of_a_crashed_writer_are_removed(store_dir: Path) -> None:
    """A temporary file a killed writer left in .doves-tmp is deleted once it is clearly stale,
    a fresh one (a writer still at work) is left alone, and neither ever becomes a state."""
    LeaseStore(store_dir)
    tmp = store_dir / ".doves-tmp"
    stale = tmp / "12345-deadbeef"
    stale.write_text('{"state": "countdown", "payload": {"count": 1}}')
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp / "12346-cafebabe"
    fresh.write_text("{}")
    store = LeaseStore(store_dir, DirectoryOptions(lease_seconds=30))  # opening cleans up
    assert not stale.exists()
    assert fresh.exists()
    store.submit([State("a.state", "countdown", {"count": 2, "tick_seconds": 0})])
    Worker(store, default_registry(), WorkerOptions(name="w", poll_seconds=0.05)).run()
    assert sorted(os.listdir(store_dir / "done")) == ["a.state", "a.state-1"]
    assert {p.name for p in store_dir.iterdir() if p.is_file()} == {"a.state", "a.state-1"}
    left = [name for name in os.listdir(tmp) if not name.startswith("clock-probe-")]
    assert left == ["12346-cafebabe"]  # nothing of ours left behind (but this host's clock probe)


def test_takeover_scans_also_clean_up(store_dir: Path) -> None:
    """A long-running worker removes leftovers too (not only at start)."""
    store = LeaseStore(store_dir, DirectoryOptions(lease_seconds=0.1), clock=SystemClock())
    leftover = store_dir / ".doves-tmp" / "999-feedface"
    leftover.write_text("partial")
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    store.claim("w", 1)  # runs the periodic takeover scan
    assert not leftover.exists()


def test_a_successor_over_the_size_limit_fails_its_parent(store_dir: Path) -> None:
    """A tick whose successor would exceed --max-state-bytes fails with bad_return; nothing is written."""
    from martian_doves.registry import Registry

    registry = Registry()
    registry.register("grow", lambda payload: {"blob": "x" * 5000})
    store = LeaseStore(store_dir, DirectoryOptions(max_state_bytes=1024))
    store.submit([State("g.state", "grow", {})])
    Worker(store, registry, WorkerOptions(name="w", poll_seconds=0.05)).run()
    (entry,) = store.history("g.state")
    assert entry.status.value == "failed" and "bad_return" in (entry.reason or "")
    assert not (store_dir / "g.state-1").exists()
