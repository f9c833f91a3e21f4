"""Exit codes: 0 done, 1 some states failed, 2 usage or configuration error (one line, no traceback)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from acceptance_helpers import Doves, copy_seed_examples, one_line, read_ticks, write_state


def test_unknown_option_is_a_usage_error(doves: Doves, store_dir: Path) -> None:
    result = doves("run", str(store_dir), "--no-such-option")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("doves: error:") and "--no-such-option" in line


def test_missing_store_is_a_usage_error(doves: Doves) -> None:
    result = doves("run")
    assert result.returncode == 2
    assert "DOVES_STORE" in one_line(result.stderr)


def test_status_of_a_folder_that_does_not_exist(doves: Doves, tmp_path: Path) -> None:
    result = doves("status", str(tmp_path / "no-such-store"))
    assert result.returncode == 2
    assert "does not exist" in one_line(result.stderr)
    assert not (tmp_path / "no-such-store").exists()


def test_missing_machines_file_is_a_configuration_error(doves: Doves, store_dir: Path, tmp_path: Path) -> None:
    result = doves("run", str(store_dir), "--machines", str(tmp_path / "missing.py"))
    assert result.returncode == 2
    assert "missing.py" in one_line(result.stderr)


@pytest.mark.parametrize(("body", "says"), [("raise RuntimeError('cannot import me')", "cannot import me"),
                                           ("import sys; sys.exit(4)", "SystemExit: 4")])
def test_machines_file_that_raises_is_a_configuration_error(doves: Doves, store_dir: Path, tmp_path: Path,
                                                            body: str, says: str) -> None:
    broken = tmp_path / "broken_machines.py"
    broken.write_text(body + "\n")
    result = doves("run", str(store_dir), "--machines", str(broken))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "broken_machines.py" in line and says in line


def test_a_state_defined_twice_names_both_definitions(doves: Doves, store_dir: Path, tmp_path: Path) -> None:
    twice = tmp_path / "twice.py"
    twice.write_text("from martian_doves import machine\n\n"
                     "@machine('countdown')\ndef mine(payload):\n    return None\n")
    result = doves("run", str(store_dir), "--machines", str(twice))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "'countdown' is defined twice: by martian_doves.builtin." in line and ".mine" in line


def test_unimportable_machines_module_is_a_configuration_error(doves: Doves, store_dir: Path) -> None:
    result = doves("run", str(store_dir), "--machines", "no_such_module_anywhere")
    assert result.returncode == 2
    assert "no_such_module_anywhere" in one_line(result.stderr)


def test_invalid_option_values_are_configuration_errors(doves: Doves, store_dir: Path) -> None:
    result = doves("run", str(store_dir), "--lease-seconds", "1", "--heartbeat-seconds", "1")
    assert result.returncode == 2
    assert "--heartbeat-seconds" in one_line(result.stderr)
    result = doves("run", str(store_dir), "--workers", "0")
    assert result.returncode == 2
    one_line(result.stderr)


@pytest.mark.parametrize("option", ["--lease-seconds", "--retry-base-seconds", "--poll-seconds", "--tick-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "1e300"])
def test_durations_that_are_not_finite_are_configuration_errors(doves: Doves, store_dir: Path, option: str,
                                                                 value: str) -> None:
    """NaN passes a "> 0" check, and inf or 1e300 overflows a timer or a PostgreSQL interval
    deep inside a worker: refused up front, in one line."""
    result = doves("run", str(store_dir), option, value)
    assert result.returncode == 2
    assert f"{option} must be a finite number of seconds" in one_line(result.stderr)


def test_all_done_exits_0(doves: Doves, store_dir: Path) -> None:
    copy_seed_examples(store_dir)
    result = doves("run", str(store_dir), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_a_failing_machine_exits_1(doves: Doves, store_dir: Path, machines_py: Path) -> None:
    copy_seed_examples(store_dir)
    write_state(store_dir, "doomed.state", "always-fails", {})
    result = doves("run", str(store_dir), "--machines", str(machines_py), "--max-attempts", "2",
                   "--retry-base-seconds", "0")
    assert result.returncode == 1, result.stderr
    status = doves.status(store_dir)
    assert status["failed"] == 1 and status["pending"] == 0 and status["in_progress"] == 0
    assert status["recent_failures"][0]["name"] == "doomed.state"
    assert "this machine always fails" in result.stderr  # the failure is logged


def test_failures_from_an_earlier_run_do_not_fail_this_one(doves: Doves, store_dir: Path, machines_py: Path) -> None:
    write_state(store_dir, "doomed.state", "always-fails", {})
    first = doves("run", str(store_dir), "--machines", str(machines_py), "--max-attempts", "1")
    assert first.returncode == 1, first.stderr
    copy_seed_examples(store_dir)
    second = doves("run", str(store_dir), "--machines", str(machines_py))
    assert second.returncode == 0, second.stderr


def test_help_shows_every_option_with_its_environment_variable(doves: Doves) -> None:
    result = doves("run", "--help")
    assert result.returncode == 0
    for variable in ("DOVES_WORKERS", "DOVES_MODE", "DOVES_MACHINES", "DOVES_WATCH", "DOVES_LEASE_SECONDS",
                     "DOVES_ASSIGNMENT_SECONDS", "DOVES_LOG_FORMAT", "DOVES_TICK_TIMEOUT"):
        assert variable in result.stdout
    assert "DOVES_STORE" in doves("--help").stdout


def test_a_heartbeat_slower_than_half_the_default_lease_is_refused(doves: Doves, store_dir: Path) -> None:
    """Without --lease-seconds the lease is the default (30 s): a 100 s heartbeat would let a
    healthy worker's claim expire and its tick run twice."""
    result = doves("run", str(store_dir), "--heartbeat-seconds", "100")
    assert result.returncode == 2
    assert "must be at most half of the store's lease (30 s" in one_line(result.stderr)


def test_the_heartbeat_fits_a_lease_set_in_the_store_url(doves: Doves, pg_url: str, machines_py: Path,
                                                         tick_log: Path) -> None:
    """?lease_seconds=1 in a PostgreSQL URL: an explicit slow heartbeat is refused, and the default
    one shrinks to fit, so ticks longer than the lease keep their claims (nothing taken over)."""
    url = f"{pg_url}&lease_seconds=1"
    refused = doves("run", url, "--heartbeat-seconds", "5")
    assert refused.returncode == 2
    assert "must be at most half of the store's lease (1 s" in refused.stderr.strip().splitlines()[-1]
    assert "Traceback" not in refused.stderr

    incoming = tick_log.parent / "incoming"
    incoming.mkdir()
    for ident in range(2):
        write_state(incoming, f"s{ident}.state", "counted",
                    {"id": f"s{ident}", "count": 2, "sleep": 2.5, "log": str(tick_log)})
    assert doves("submit", url, str(incoming), "--machines", str(machines_py)).returncode == 0
    result = doves("run", url, "--workers", "2", "--machines", str(machines_py))
    assert result.returncode == 0, result.stderr
    assert "took over" not in result.stderr and "lost the claim" not in result.stderr
    assert sorted((i, c) for i, c, _, _ in read_ticks(tick_log)) == [("s0", 1), ("s0", 2), ("s1", 1), ("s1", 2)]


def test_a_mistyped_folder_never_becomes_a_new_store(doves: Doves, tmp_path: Path) -> None:
    typo = tmp_path / "stroe"
    result = doves("run", str(typo))
    assert result.returncode == 2
    assert "the folder does not exist" in one_line(result.stderr)
    assert not typo.exists()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a store")
    result = doves("status", str(a_file))
    assert result.returncode == 2
    assert "it is not a folder" in one_line(result.stderr)


@pytest.mark.parametrize("command", [("status",), ("history", "x.state"), ("retry",), ("reset", "--yes")])
def test_a_mistyped_schema_never_becomes_a_new_store(doves: Doves, pg_server_url: str, pg_schema: str,
                                                      command: tuple[str, ...]) -> None:
    """Commands that read or change existing states refuse a schema that does not exist instead of
    creating an empty one (and reporting it as an empty store)."""
    url = f"{pg_server_url}?schema={pg_schema}"
    result = doves(command[0], url, *command[1:])
    assert result.returncode == 2
    assert f"schema {pg_schema} does not exist" in one_line(result.stderr)
    import psycopg

    with psycopg.connect(pg_server_url) as conn:
        found = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (pg_schema,)).fetchone()
    assert found == (0,)


@pytest.mark.parametrize("option", [("--buffer-seconds", "0"), ("--max-skew-seconds", "0")])
def test_a_skew_bound_finer_than_file_timestamps_is_refused(doves: Doves, store_dir: Path,
                                                            option: tuple[str, str]) -> None:
    """With no room for skew, the coarse file timestamps alone would make every worker refuse to
    take part, and a run without --watch would wait forever."""
    result = doves("run", str(store_dir), "--mode", "semaphore", *option)
    assert result.returncode == 2
    assert f"{option[0]} must be at least" in one_line(result.stderr)


def test_a_read_only_store_is_a_configuration_error(doves: Doves, store_dir: Path, tmp_path: Path) -> None:
    """A store on a read-only mount stops the run at once with exit 2 and one error line, instead
    of workers crashing and being respawned until the supervisor gives up."""
    import shutil
    import subprocess

    from acceptance_helpers import command, environment

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    copy_seed_examples(incoming)
    assert doves("submit", str(store_dir), str(incoming)).returncode == 0  # a store with its folders
    mount_point = tmp_path / "read-only"
    mount_point.mkdir()
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare to make a read-only mount")
    script = (f'mount --bind "{store_dir}" "{mount_point}" && mount -o remount,ro,bind "{mount_point}" '
              f'&& exec "$@"')
    try:
        result = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *command("run", str(mount_point))],
                                env=environment(None), capture_output=True, text=True, timeout=120)
    except OSError as e:
        pytest.skip(f"cannot make a read-only mount here: {e}")
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        pytest.skip(f"cannot make a read-only mount here: {result.stderr.strip()}")
    assert result.returncode == 2, result.stderr
    assert "cannot write to the store" in result.stderr and "Read-only file system" in result.stderr
    assert "Traceback" not in result.stderr and "respawn" not in result.stderr


def test_migrate_makes_a_folder_store_and_says_so(doves: Doves, tmp_path: Path) -> None:
    store = tmp_path / "new-store"
    result = doves("migrate", str(store))
    assert result.returncode == 0, result.stderr
    assert "is ready: a folder store has no schema to migrate" in result.stdout
    # It is a store now: the read-only commands accept it.
    assert doves("status", str(store)).returncode == 0
