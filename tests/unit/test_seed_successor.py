"""A successor the seed wrote before its run was interrupted is adopted, not run as a second root.

The seed wrote ``x.state-1`` (compact JSON, no ``parent``) before it marked ``x.state`` done.
On a real folder store: that file waits for its parent instead of being admitted; the
parent's commit adopts it when it holds what the tick produced, and branches around it
(the file then running as a root of its own) when it does not. The whole run of the
seed's folder is in ``tests/acceptance/test_seed_folder.py``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from martian_doves.stores.directory import LeaseStore


def _copy_in(store: Path, name: str, text: str) -> None:
    (store / name).write_text(text)
    past = time.time() - 60  # copied in a while ago: past the admission grace
    os.utime(store / name, (past, past))


def _seed_folder(tmp_path: Path, successor_count: int) -> LeaseStore:
    store = LeaseStore(tmp_path / "store")
    _copy_in(tmp_path / "store", "x.state", '{"state": "count", "payload": {"count": 2}}')
    _copy_in(tmp_path / "store", "x.state-1", f'{{"state":"count","payload":{{"count":{successor_count}}}}}')
    return store


def test_the_seed_s_successor_waits_for_its_parent_and_is_adopted(tmp_path: Path) -> None:
    store = _seed_folder(tmp_path, 1)
    (parent,) = store.claim("w", 10)  # x.state-1 is not admitted while x.state has not run
    assert parent.name == "x.state"
    assert store.commit(parent, ("count", {"count": 1})) is None
    (successor,) = store.claim("w", 10)
    assert successor.name == "x.state-1"
    store.commit(successor, None)
    assert sorted(n for n in os.listdir(tmp_path / "store") if ".state" in n) == ["x.state", "x.state-1"]
    assert store.status().done == 2 and store.is_finished()
    # One lineage in history, from either end, though the seed's file names no parent.
    for name in ("x.state", "x.state-1"):
        assert [entry.name for entry in store.history(name)] == ["x.state", "x.state-1"]


def test_a_file_holding_another_document_is_a_root_of_its_own(tmp_path: Path) -> None:
    store = _seed_folder(tmp_path, 7)
    (parent,) = store.claim("w", 10)
    store.commit(parent, ("count", {"count": 1}))
    names = sorted(claim.name for claim in store.claim("w", 10))
    assert names == ["x.state-1", "x.state-1~2"]  # the branch, and the file admitted once its parent ran
    assert [entry.name for entry in store.history("x.state")] == ["x.state", "x.state-1~2"]
    assert [entry.name for entry in store.history("x.state-1")] == ["x.state-1"]
