"""``doves submit`` and ``doves validate``: bad files are refused one line each, good ones still go in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from acceptance_helpers import Doves, write_state

from martian_doves import codec
from martian_doves.model import JOIN_STATE, State, WaitFor


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """Two good state files, three bad ones, and a file that is not a state file at all."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    write_state(folder, "good.state", "countdown", {"count": 2, "tick_seconds": 0})
    write_state(folder, "also-good.state-3", "simple", {"target": "x", "tick_seconds": 0})
    (folder / "broken.state").write_text('{"state": "simple", "payload": ')
    write_state(folder, "stranger.state", "no-such-machine", {})
    (folder / "link.state").symlink_to(folder / "good.state")
    (folder / "notes.txt").write_text("not a state file")
    return folder


BAD = ("broken.state", "stranger.state", "link.state")


def test_validate_reports_each_problem_on_one_line(doves: Doves, mixed_folder: Path) -> None:
    result = doves("validate", str(mixed_folder))
    assert result.returncode == 1
    problems = result.stdout.strip().splitlines()
    assert len(problems) == len(BAD), result.stdout
    for name in BAD:
        assert sum(name in line for line in problems) == 1, result.stdout
    assert not any("good.state" in line and "link" not in line for line in problems)
    assert "Traceback" not in result.stderr
    assert "malformed_json" in result.stdout and "unknown_state" in result.stdout


def test_validate_accepts_good_files(doves: Doves, mixed_folder: Path) -> None:
    result = doves("validate", str(mixed_folder / "good.state"), str(mixed_folder / "also-good.state-3"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 valid, 0 invalid" in result.stdout


def test_validate_knows_user_machines(doves: Doves, mixed_folder: Path, machines_py: Path) -> None:
    path = write_state(mixed_folder, "mine.state", "counted", {"id": "a", "count": 1, "log": "x"})
    assert doves("validate", str(path)).returncode == 1
    assert doves("validate", str(path), "--machines", str(machines_py)).returncode == 0


def test_validate_with_nothing_to_check_fails(doves: Doves, tmp_path: Path) -> None:
    result = doves("validate", str(tmp_path))
    assert result.returncode == 1
    assert "no state files" in result.stderr


def test_submit_refuses_bad_files_and_adds_the_good_ones(doves: Doves, mixed_folder: Path, store_dir: Path) -> None:
    result = doves("submit", str(store_dir), str(mixed_folder))
    assert result.returncode == 1
    refused = result.stderr.strip().splitlines()
    assert len(refused) == len(BAD), result.stderr
    for name in BAD:
        assert sum(name in line for line in refused) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert (store_dir / "good.state").is_file() and (store_dir / "also-good.state-3").is_file()
    for name in BAD:
        assert not (store_dir / name).exists()
    assert doves.status(store_dir)["pending"] == 2
    # The good ones really run.
    run = doves("run", str(store_dir))
    assert run.returncode == 0, run.stderr
    assert (store_dir / "good.state-1").is_file()


def test_submit_never_replaces_a_state(doves: Doves, mixed_folder: Path, store_dir: Path) -> None:
    good = mixed_folder / "good.state"
    assert doves("submit", str(store_dir), str(good)).returncode == 0
    before = (store_dir / "good.state").read_bytes()
    write_state(mixed_folder, "good.state", "simple", {"target": "replacement"})
    again = doves("submit", str(store_dir), str(good))
    assert again.returncode == 1
    assert "good.state" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert (store_dir / "good.state").read_bytes() == before


def test_submit_can_skip_the_machine_check(doves: Doves, mixed_folder: Path, store_dir: Path) -> None:
    result = doves("submit", str(store_dir), str(mixed_folder / "stranger.state"), "--allow-unknown-states")
    assert result.returncode == 0, result.stderr
    assert (store_dir / "stranger.state").is_file()


def test_validate_and_submit_agree_on_a_file_named_without_state(doves: Doves, tmp_path: Path,
                                                               store_dir: Path) -> None:
    """Named directly, a file whose name no store accepts is invalid for validate as for submit."""
    path = write_state(tmp_path, "job.json", "countdown", {"count": 1})
    checked = doves("validate", str(path))
    assert checked.returncode == 1 and "end in .state" in checked.stdout
    submitted = doves("submit", str(store_dir), str(path))
    assert submitted.returncode == 1 and "end in .state" in submitted.stderr



def test_validate_takes_a_joins_successor_up_to_the_join_limit(doves: Doves, tmp_path: Path) -> None:
    """A join's successor (its parent beside it is a join entry) may be over --max-state-bytes, up to
    --max-join-bytes, as the stores read it; any other file that large is still invalid."""
    join = codec.encode(State("j.state-1", JOIN_STATE, {}, "j.state", wait=WaitFor("collect", children=2)))
    (tmp_path / "j.state-1").write_bytes(join)
    joined = tmp_path / "j.state-2"
    joined.write_text(json.dumps({"state": "countdown", "parent": "j.state-1", "payload": {"blob": "x" * 8000}}))
    plain = tmp_path / "plain.state-2"
    plain.write_text(json.dumps({"state": "countdown", "parent": "plain.state-1", "payload": {"blob": "x" * 8000}}))
    limits = ("--max-state-bytes", "4000", "--allow-unknown-states")
    checked = doves("validate", str(joined), str(plain), *limits)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert checked.stdout.splitlines() == [f"{plain}: file_too_large: plain.state-2: {plain.stat().st_size} bytes "
                                           "is over the 4000-byte limit"]
    assert "1 valid, 1 invalid" in checked.stderr
    over = doves("validate", str(joined), *limits, "--max-join-bytes", "6000")
    assert over.returncode == 1 and "j.state-2" in over.stdout and "6000-byte limit" in over.stdout, over.stdout
