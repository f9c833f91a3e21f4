"""Lineage fields are names in the store, never paths (issue 12, item 8).

A state file's ``parent`` names the file it came from. Whoever can write into a folder
store could put a path there (``/abs/victim.state``, ``../victim.state``); ``history``
then read the outside file and printed its payload, and ``reset --successors`` deleted
any root whose ``parent`` named an existing file anywhere. Each test plants such files
and checks that a victim outside the store is neither shown nor touched (byte for byte
and by timestamp), and that the planted files are refused or quarantined with a reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from acceptance_helpers import Doves, write_state

pytestmark = pytest.mark.slow

#: What the victim's payload holds: seeing it in any output means the victim was read.
SECRET = "outside-the-store-secret-7f3a"


@dataclass(frozen=True)
class Victim:
    """A state-looking file outside the store, and how it looked before the attack."""

    path: Path
    content: bytes
    mtime_ns: int
    ctime_ns: int

    def assert_untouched(self) -> None:
        assert self.path.read_bytes() == self.content
        stat = self.path.stat()
        assert (stat.st_mtime_ns, stat.st_ctime_ns) == (self.mtime_ns, self.ctime_ns)


@pytest.fixture
def victim(tmp_path: Path) -> Victim:
    folder = tmp_path / "outside"
    folder.mkdir()
    path = folder / "victim.state"
    path.write_text(json.dumps({"state": "simple", "payload": {"target": SECRET}}))
    stat = path.stat()
    return Victim(path, path.read_bytes(), stat.st_mtime_ns, stat.st_ctime_ns)


def _hostile_parents(store: Path, victim: Victim) -> list[str]:
    """Every way a planted ``parent`` could name the victim: absolute, relative, through the folders."""
    return [str(victim.path), os.path.relpath(victim.path, store),
            os.path.relpath(victim.path, store / "failed")]


def _plant(store: Path, name: str, parent: str) -> None:
    (store / name).write_text(json.dumps({"state": "simple", "payload": {"target": "planted"}, "parent": parent}))


def _submit_one(doves: Doves, store: Path) -> None:
    """Make ``store`` a store holding one ordinary root (``real.state``)."""
    incoming = store.parent / "incoming"
    incoming.mkdir(exist_ok=True)
    write_state(incoming, "real.state", "simple", {"target": "real", "tick_seconds": 0})
    result = doves("submit", str(store), str(incoming / "real.state"))
    assert result.returncode == 0, result.stderr


def test_history_never_reads_a_parent_outside_the_store(doves: Doves, store_dir: Path, victim: Victim) -> None:
    _submit_one(doves, store_dir)
    for index, parent in enumerate(_hostile_parents(store_dir, victim)):
        name = f"evil{index}.state"
        _plant(store_dir, name, parent)
        for extra in ((), ("--json",)):
            result = doves("history", str(store_dir), name, *extra)
            assert SECRET not in result.stdout + result.stderr, parent
    result = doves("history", str(store_dir), "real.state", "--json")
    assert result.returncode == 0, result.stderr
    assert [entry["name"] for entry in json.loads(result.stdout)] == ["real.state"]
    victim.assert_untouched()


def test_history_never_follows_a_name_given_as_a_path(doves: Doves, store_dir: Path, victim: Victim) -> None:
    """The NAME argument too: ``..`` and the like are no state of the store."""
    _submit_one(doves, store_dir)
    for name in ("..", "../outside/victim.state", str(victim.path)):
        result = doves("history", str(store_dir), name, "--json")
        assert SECRET not in result.stdout + result.stderr, name
    victim.assert_untouched()


def test_reset_successors_keeps_roots_whatever_parent_they_claim(doves: Doves, store_dir: Path,
                                                                  victim: Victim) -> None:
    """Only a tick's successors go: a file whose name derives from its parent's, next to that parent."""
    _submit_one(doves, store_dir)
    planted = []
    for index, parent in enumerate(_hostile_parents(store_dir, victim)):
        planted.append(f"root{index}.state")
        _plant(store_dir, planted[-1], parent)
    # A parent field naming a real state of the store does not make a successor either,
    # unless the name derives from it (as every name a commit writes does).
    planted.append("copied.state")
    _plant(store_dir, "copied.state", "real.state")
    _plant(store_dir, "real.state-1", "real.state")  # what a tick of real.state would have written
    result = doves("reset", str(store_dir), "--successors", "--yes")
    assert result.returncode == 0, result.stderr
    for name in planted:
        assert (store_dir / name).exists(), name
    assert not (store_dir / "real.state-1").exists()
    victim.assert_untouched()


def test_a_worker_quarantines_a_path_in_parent(doves: Doves, store_dir: Path, victim: Victim) -> None:
    _submit_one(doves, store_dir)
    parents = _hostile_parents(store_dir, victim)
    for index, parent in enumerate(parents):
        _plant(store_dir, f"evil{index}.state", parent)
    result = doves("run", str(store_dir), "--workers", "1", "--no-progress")
    assert result.returncode == 1, result.stderr  # the planted files failed, the rest ran
    assert (store_dir / "done" / "real.state").exists()
    for index in range(len(parents)):
        reason = json.loads((store_dir / "failed" / f"evil{index}.state.reason.json").read_text())
        assert reason["code"] == "invalid_document"
        assert "parent" in reason["message"]
    assert SECRET not in result.stdout + result.stderr
    victim.assert_untouched()


def test_validate_and_submit_refuse_a_path_in_parent(doves: Doves, store_dir: Path, tmp_path: Path,
                                                      victim: Victim) -> None:
    incoming = tmp_path / "planted"
    incoming.mkdir()
    _plant(incoming, "evil.state", str(victim.path))
    for command in (("validate", str(incoming)), ("submit", str(store_dir), str(incoming))):
        result = doves(*command)
        assert result.returncode == 1, result.stderr
        output = result.stdout + result.stderr
        line = next(line for line in output.splitlines() if "evil.state" in line)
        assert "parent" in line and "Traceback" not in output
    assert not (store_dir / "evil.state").exists()
    victim.assert_untouched()
