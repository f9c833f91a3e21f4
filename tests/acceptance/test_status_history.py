"""``doves status`` (text and --json) and ``doves history``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from acceptance_helpers import Doves, copy_seed_examples


@pytest.fixture
def finished_store(doves: Doves, store_dir: Path) -> Path:
    copy_seed_examples(store_dir)
    result = doves("run", str(store_dir), "--workers", "2", "--name", "histtest")
    assert result.returncode == 0, result.stderr
    return store_dir


def test_status_json_has_the_documented_keys(doves: Doves, finished_store: Path) -> None:
    result = doves("status", str(finished_store), "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    for key in ("pending", "in_progress", "done", "failed", "workers"):
        assert key in status
    # 5 roots + 4 successors of each countdown.
    assert (status["pending"], status["in_progress"], status["done"], status["failed"]) == (0, 0, 13, 0)
    assert isinstance(status["workers"], list)


def test_status_text(doves: Doves, finished_store: Path) -> None:
    result = doves("status", str(finished_store))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split() == ["done:", "13"] for line in lines), result.stdout
    assert any(line.split() == ["pending:", "0"] for line in lines), result.stdout


def test_history_shows_the_lineage(doves: Doves, finished_store: Path) -> None:
    result = doves("history", str(finished_store), "countdown.state")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    for column in ("STATE FILE", "STATE", "STATUS", "WORKER", "WHEN", "ATTEMPTS", "NOTE"):
        assert column in header
    names = [row.split()[0] for row in rows]
    assert names == ["countdown.state", *(f"countdown.state-{i}" for i in range(1, 5))]
    for row in rows:
        cells = row.split()
        assert cells[1] == "countdown" and cells[2] == "done"
        assert cells[3].startswith("histtest-")  # the worker that ran it


def test_history_from_a_successor_and_as_json(doves: Doves, finished_store: Path) -> None:
    result = doves("history", str(finished_store), "slowcountdown.state-2", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [e["name"] for e in entries] == ["slowcountdown.state", *(f"slowcountdown.state-{i}" for i in range(1, 5))]
    assert all(e["status"] == "done" for e in entries)


def test_history_of_an_unknown_state(doves: Doves, finished_store: Path) -> None:
    result = doves("history", str(finished_store), "nothing.state")
    assert result.returncode == 1
    assert "nothing.state" in result.stderr


def test_history_shows_why_a_state_failed(doves: Doves, store_dir: Path, machines_py: Path) -> None:
    (store_dir / "doomed.state").write_text('{"state": "always-fails", "payload": {}}')
    run = doves("run", str(store_dir), "--machines", str(machines_py), "--max-attempts", "1")
    assert run.returncode == 1
    result = doves("history", str(store_dir), "doomed.state")
    assert result.returncode == 0, result.stderr
    row = result.stdout.strip().splitlines()[1]
    assert "failed" in row and "this machine always fails" in row
