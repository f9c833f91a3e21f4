"""How a folder store tells an outage (a full disk ...) from a bug, logs it, and reports it.

The full disk itself is in ``tests/integration/test_folder_outage.py`` (a real tmpfs);
here the outage errors are raised into ``FolderOutages.guard`` as the file system
raises them, on a real store folder.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import pytest

from martian_doves.errors import StoreUnavailable
from martian_doves.stores.directory import LeaseStore, SemaphoreStore, fsops
from martian_doves.stores.directory.outage import (
    GUARDED_METHODS,
    MARKER_FRESH_SECONDS,
    FolderOutages,
    describe,
    outage_cause,
)


def _full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_only_the_host_s_faults_are_outages() -> None:
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
        assert outage_cause(OSError(code, os.strerror(code)))
    for code in (errno.ENOENT, errno.EACCES, errno.EEXIST):
        assert outage_cause(OSError(code, os.strerror(code))) is None
    assert outage_cause(ValueError("x")) is None


def test_an_outage_is_logged_once_reported_and_over_when_a_write_succeeds(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = LeaseStore(tmp_path / "store")
    outages = FolderOutages(store.files)
    with caplog.at_level(logging.DEBUG, logger="martian_doves.stores.directory.outage"):
        with pytest.raises(StoreUnavailable, match="disk is full"), outages.guard("commit", writes=True):
            raise _full()
        for _ in range(3):  # heartbeats and reads go on meeting it: no new line
            with pytest.raises(StoreUnavailable, match="disk is full"), outages.guard("heartbeat", writes=False):
                raise _full()
        with pytest.raises(OSError, match="nope"), outages.guard("heartbeat", writes=False):
            raise OSError(errno.ENOENT, "nope")  # not an outage: raised as it is
        assert "the store's disk is full (workers met it" in str(store.status().details.get("outage"))
        with outages.guard("commit", writes=True):  # the probe write succeeds first: over
            pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2 and "is unavailable (the store's disk is full" in warnings[0], warnings
    assert "is available again after" in warnings[1]
    assert "outage" not in store.status().details
    assert fsops.listdir_quiet(store.files.tmp) == []


def test_a_stale_marker_is_no_outage(tmp_path: Path) -> None:
    """A marker left by a worker that died mid-outage says nothing once it is stale."""
    store = LeaseStore(tmp_path / "store")
    marker = store.files.tmp.at("outage-ENOSPC")
    fsops.create_empty(marker)
    now = time.time()
    assert describe(store.files, now) is not None
    fsops.utime(marker, (now - MARKER_FRESH_SECONDS - 5, now - MARKER_FRESH_SECONDS - 5))
    assert describe(store.files, now) is None


@pytest.mark.parametrize("mode", [LeaseStore, SemaphoreStore])
def test_both_modes_turn_outages_into_store_unavailable(mode: type) -> None:
    """Every call a worker makes goes through the guard, in either mode (the run itself is in
    ``tests/integration/test_folder_outage.py``)."""
    for name in ("register_worker", "claim", "heartbeat", "commit", "retry_later", "release", "fail",
                 "take_event", "children", "is_finished", "unregister_worker"):
        assert name in GUARDED_METHODS and hasattr(getattr(mode, name), "__wrapped__"), f"{mode.__name__}.{name}"
