"""The folder store's primitives with entries planted where the store expects its own files.

The store's folders are held open and every entry is reached through them (see the
README's threat model); these pin the cases a worker meets between looking at an entry
and using it, and what opening a folder as it is (read-only) finds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from martian_doves.model import Failure, State
from martian_doves.stores.directory import Layout, LeaseStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LeaseStore]:
    opened = LeaseStore(tmp_path / "store")
    yield opened
    opened.close()


def test_a_folder_planted_in_failed_leaves_the_failed_state_in_the_root(store: LeaseStore) -> None:
    store.submit([State("a.state", "count", {})])
    [claim] = store.claim("w", 1)
    (Path(store.files.failed.path) / "a.state" / "inside").mkdir(parents=True)
    store.fail(claim, Failure("tick_failed", "boom"))
    assert store.status().failed == 1 and store.status().in_progress == 0
    assert os.path.isfile(store.files.state_at("a.state").path)


def test_a_claim_swapped_for_a_fifo_is_never_written_nor_waited_on(store: LeaseStore) -> None:
    store.submit([State("a.state", "count", {})])
    [claim] = store.claim("w", 1)
    path = store.files.claim_at(claim.name, claim.token).path
    os.unlink(path)
    os.mkfifo(path)
    done = threading.Event()

    def rewrite() -> None:
        store.files.rewrite_claim(claim.name, claim.token, store.files.read_claim(claim.name, claim.token))
        done.set()

    threading.Thread(target=rewrite, daemon=True).start()
    assert done.wait(10), "writing the claim waited on a FIFO"
    assert os.path.exists(path)


def test_the_clock_probe_leaves_nothing_and_never_uses_a_known_name(store: LeaseStore, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    before = victim.stat()
    tmp = Path(store.files.tmp.path)
    (tmp / "clock-probe").symlink_to(victim)
    assert store.files.filesystem_time() > 0
    assert os.listdir(tmp) == ["clock-probe"]
    after = victim.stat()
    assert (after.st_mtime_ns, after.st_ctime_ns) == (before.st_mtime_ns, before.st_ctime_ns)


def test_a_folder_opened_as_it_is_creates_nothing_and_holds_nothing(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    files = Layout(tmp_path, create=False)
    try:
        assert not files.is_store() and not files.has_work()
        assert files.registrations() == [] and files.failed_names() == []
        assert os.listdir(tmp_path) == ["readme.txt"]
        (tmp_path / "copied.state").write_text("{}")
        assert files.is_store()
    finally:
        files.close()
