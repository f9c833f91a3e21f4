"""Liveness of a folder store's workers is judged by each worker's own lease, not the reader's."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from martian_doves.config import DirectoryOptions
from martian_doves.errors import ConfigError
from martian_doves.stores.directory import LeaseStore


def test_liveness_is_judged_by_each_workers_own_lease(store_dir: Path) -> None:
    """A worker running with a 120 s lease (sparse heartbeats) stays "alive" for status and reset
    opened with the default 30 s lease; a silent worker of a 30 s lease does not."""
    LeaseStore(store_dir, DirectoryOptions(lease_seconds=120)).register_worker("patient")
    reader = LeaseStore(store_dir)
    reader.register_worker("gone")
    minute_ago = time.time() - 60
    for name in ("patient", "gone"):
        os.utime(store_dir / "workers" / name, (minute_ago, minute_ago))
    assert {w.name: w.alive for w in reader.status().workers} == {"patient": True, "gone": False}
    with pytest.raises(ConfigError, match=r"workers are running on this store \(patient\)"):
        reader.reset(successors=False)
