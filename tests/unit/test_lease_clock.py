"""Lease expiry is judged by the shared filesystem's clock, not the host's.

Claims are stamped (ctime) by the filesystem; a host whose own clock runs ahead must not
see a live claim as expired and take it over (which would run its tick twice).
"""

from __future__ import annotations

import time
from pathlib import Path

from martian_doves.clock import SystemClock
from martian_doves.config import DirectoryOptions
from martian_doves.model import State
from martian_doves.stores.directory import LeaseStore


def _store(root: Path, lease_seconds: float, offset_seconds: float = 0.0) -> LeaseStore:
    return LeaseStore(root, DirectoryOptions(lease_seconds=lease_seconds), clock=SystemClock(offset_seconds))


def test_a_host_clock_an_hour_fast_does_not_take_over_a_live_claim(store_dir: Path) -> None:
    owner = _store(store_dir, 30)
    owner.submit([State("x.state", "countdown", {"count": 1})])
    (claim,) = owner.claim("owner", 1)
    fast = _store(store_dir, 30, offset_seconds=3600)
    assert fast.claim("fast", 10) == []
    assert owner.heartbeat("owner", [claim]) == []
    owner.commit(claim, None)
    assert owner.is_finished()


def test_an_expired_claim_is_taken_over_whatever_the_host_clock(store_dir: Path) -> None:
    owner = _store(store_dir, 0.2)
    owner.submit([State("x.state", "countdown", {"count": 1})])
    (claim,) = owner.claim("owner", 1)
    time.sleep(0.5)  # the owner stops renewing: its lease runs out on the filesystem's clock
    slow = _store(store_dir, 0.2, offset_seconds=-3600)
    (taken,) = slow.claim("slow", 10)
    assert taken.name == "x.state" and taken.attempts == 1
    assert owner.heartbeat("owner", [claim]) == [claim]
