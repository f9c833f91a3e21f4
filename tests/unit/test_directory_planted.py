"""The folder store's primitives with entries planted where the store expects its own files.

The store's folders are held open and every entry is reached through them (see the
README's threat model); these pin the cases a worker meets between looking at an entry
and using it, and what opening a folder as it is (read-only) finds.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from martian_doves import codec
from martian_doves.config import DirectoryOptions
from martian_doves.errors import FileTooLarge
from martian_doves.model import JOIN_STATE, Failure, State, WaitFor
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


def _plant(store: LeaseStore, name: str, payload_bytes: int, parent: str | None = None) -> None:
    document = {"state": "count", "payload": {"blob": "x" * payload_bytes}}
    if parent is not None:
        document["parent"] = parent
    (Path(store.files.root) / name).write_text(json.dumps(document))


def test_a_file_over_the_state_limit_is_read_only_as_a_joins_successor(tmp_path: Path) -> None:
    """A join's successor may be larger than a state (``--max-join-bytes``); a file that large put
    in by hand, even one naming a parent, is refused as ever, and one over the join limit is never read."""
    options = DirectoryOptions(max_state_bytes=4096, max_join_bytes=65536)
    store = LeaseStore(tmp_path / "store", options)
    try:
        store.submit([State("plain.state", "count", {})])
        _plant(store, "plain.state-1", 8000, parent="plain.state")
        _plant(store, "orphan.state", 8000)
        _plant(store, "huge.state", 70000)
        with pytest.raises(FileTooLarge):
            store.files.read_state("plain.state-1")
        with pytest.raises(FileTooLarge):
            store.files.read_state("orphan.state")
        with pytest.raises(FileTooLarge, match="65536-byte limit"):
            store.files.read_state("huge.state")
        join = codec.encode(State("j.state-1", JOIN_STATE, {}, "j.state", wait=WaitFor("collect", children=2)))
        (Path(store.files.root) / "j.state-1").write_bytes(join)
        _plant(store, "j.state-2", 8000, parent="j.state-1")
        assert len(store.files.read_state("j.state-2").payload["blob"]) == 8000
    finally:
        store.close()
