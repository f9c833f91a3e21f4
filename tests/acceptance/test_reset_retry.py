"""``doves reset`` (the seed's "Re-Runs" recipe) and ``doves retry``."""

from __future__ import annotations

from pathlib import Path

from acceptance_helpers import Doves, copy_seed_examples, write_state


def successor_files(store: Path) -> set[str]:
    return {p.name for p in store.iterdir() if p.is_file() and ".state-" in p.name}


def test_reset_makes_everything_run_again(doves: Doves, store_dir: Path) -> None:
    copy_seed_examples(store_dir)
    assert doves("run", str(store_dir)).returncode == 0
    successors = successor_files(store_dir)
    assert len(successors) == 8

    result = doves("reset", str(store_dir), "--yes")
    assert result.returncode == 0, result.stderr
    status = doves.status(store_dir)
    assert status["done"] == 0 and status["pending"] == 13  # successors kept, and pending again
    assert successor_files(store_dir) == successors


def test_reset_successors_keeps_only_the_roots(doves: Doves, store_dir: Path) -> None:
    copy_seed_examples(store_dir)
    assert doves("run", str(store_dir)).returncode == 0

    # Not a terminal: no question is asked.
    result = doves("reset", str(store_dir), "--successors")
    assert result.returncode == 0, result.stderr
    assert successor_files(store_dir) == set()
    status = doves.status(store_dir)
    assert (status["pending"], status["done"], status["in_progress"]) == (5, 0, 0)

    again = doves("run", str(store_dir))
    assert again.returncode == 0, again.stderr
    assert len(successor_files(store_dir)) == 8


def test_retry_failed_states(doves: Doves, store_dir: Path, machines_py: Path, tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    write_state(store_dir, "flaky.state", "fails-until-fixed", {"fixed_flag": str(flag)})
    first = doves("run", str(store_dir), "--machines", str(machines_py), "--max-attempts", "1")
    assert first.returncode == 1
    assert doves.status(store_dir)["failed"] == 1

    flag.touch()
    result = doves("retry", str(store_dir))
    assert result.returncode == 0, result.stderr
    status = doves.status(store_dir)
    assert (status["failed"], status["pending"]) == (0, 1)

    second = doves("run", str(store_dir), "--machines", str(machines_py))
    assert second.returncode == 0, second.stderr
    status = doves.status(store_dir)
    assert (status["failed"], status["done"]) == (0, 1)


def test_retry_by_name(doves: Doves, store_dir: Path, machines_py: Path, tmp_path: Path) -> None:
    for name in ("a.state", "b.state"):
        write_state(store_dir, name, "always-fails", {})
    assert doves("run", str(store_dir), "--machines", str(machines_py), "--max-attempts", "1").returncode == 1

    result = doves("retry", str(store_dir), "a.state")
    assert result.returncode == 0, result.stderr
    status = doves.status(store_dir)
    assert (status["failed"], status["pending"]) == (1, 1)

    missing = doves("retry", str(store_dir), "not-failed.state")
    assert missing.returncode == 1
    assert "are not failed states of this store" in missing.stderr
