"""Every option reads a DOVES_* variable: a compose file needs no command line."""

from __future__ import annotations

import json
from pathlib import Path

from acceptance_helpers import Doves, copy_seed_examples, one_line, write_state


def test_run_is_configured_by_the_environment(doves: Doves, store_dir: Path, tmp_path: Path,
                                              machines_py: Path, tick_log: Path) -> None:
    other = tmp_path / "other_machines.py"
    other.write_text(
        "from martian_doves import machine\n\n"
        "@machine('other')\n"
        "def other(payload):\n"
        "    return None\n"
    )
    copy_seed_examples(store_dir)
    write_state(store_dir, "c.state", "counted", {"id": "c", "count": 2, "log": str(tick_log)})
    write_state(store_dir, "o.state", "other", {})
    env = {
        "DOVES_STORE": str(store_dir),
        "DOVES_WORKERS": "3",
        "DOVES_MACHINES": f"{machines_py},{other}",  # commas or spaces both separate
        "DOVES_LOG_FORMAT": "json",
        "DOVES_NAME": "from-env",
    }
    result = doves("run", env=env)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert len([r for r in records if r["action"] == "spawn"]) == 3
    assert all(r["worker"].startswith("from-env-") for r in records)
    status = doves("status", "--json", env={"DOVES_STORE": str(store_dir)})
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)
    # 13 seed states, c.state and its successor, o.state
    assert (counts["done"], counts["failed"], counts["pending"]) == (16, 0, 0)


def test_machines_separated_by_spaces(doves: Doves, store_dir: Path, machines_py: Path, tmp_path: Path,
                                      tick_log: Path) -> None:
    other = tmp_path / "other_machines.py"
    other.write_text("from martian_doves import machine\n\n@machine('other')\ndef other(payload):\n    return None\n")
    write_state(store_dir, "c.state", "counted", {"id": "c", "count": 1, "log": str(tick_log)})
    write_state(store_dir, "o.state", "other", {})
    result = doves("run", str(store_dir), env={"DOVES_MACHINES": f"{machines_py} {other}"})
    assert result.returncode == 0, result.stderr
    assert doves.status(store_dir)["done"] == 2


def test_commands_take_the_store_from_the_environment(doves: Doves, store_dir: Path, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    write_state(incoming, "hello.state", "simple", {"target": "env", "tick_seconds": 0})
    env = {"DOVES_STORE": str(store_dir)}

    submitted = doves("submit", str(incoming / "hello.state"), env=env)
    assert submitted.returncode == 0, submitted.stderr
    assert (store_dir / "hello.state").is_file()

    assert doves("run", env=env).returncode == 0
    history = doves("history", "hello.state", env=env)
    assert history.returncode == 0, history.stderr
    assert "done" in history.stdout

    # An explicit STORE (recognisable as one) still wins over DOVES_STORE.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copy_seed_examples(elsewhere)
    other_store = tmp_path / "other-store"
    explicit = doves("submit", str(store_dir), str(elsewhere / "goodbye.state"), env={"DOVES_STORE": str(other_store)})
    assert explicit.returncode == 0, explicit.stderr
    assert (store_dir / "goodbye.state").is_file() and not other_store.exists()
    assert doves("reset", "--yes", env=env).returncode == 0
    assert doves.status(store_dir)["pending"] == 2


def test_flags_from_the_environment(doves: Doves, store_dir: Path, machines_py: Path) -> None:
    write_state(store_dir, "doomed.state", "always-fails", {})
    env = {"DOVES_MAX_ATTEMPTS": "1", "DOVES_MACHINES": str(machines_py), "DOVES_PROGRESS": "false"}
    result = doves("run", str(store_dir), env=env)
    assert result.returncode == 1, result.stderr
    assert "retrying" not in result.stderr  # one attempt only
    assert "transitions/s" not in result.stderr  # DOVES_PROGRESS=false
    history = doves("history", str(store_dir), "doomed.state", "--json")
    assert json.loads(history.stdout)[0]["attempts"] == 1

    bad = doves("run", str(store_dir), env={"DOVES_WORKERS": "none"})
    assert bad.returncode == 2
    assert "none" in one_line(bad.stderr)
