"""The whole fleet killed at once, supervisor and workers (kill -9 of the process group),
then `doves run` started again: nothing is lost, no successor is written twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

MACHINES = '''
import os
import time
from martian_doves import machine

@machine("logged-countdown")
def logged_countdown(payload):
    fd = os.open(payload["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{payload['id']} {payload['count']}\\n".encode())
    os.close(fd)
    time.sleep(0.005)
    return {**payload, "count": payload["count"] - 1} if payload["count"] > 1 else None
'''

MACHINE_COUNT = 150
TICKS = 5


def _doves(target: str, machines: Path) -> list[str]:
    return [sys.executable, "-m", "martian_doves", "run", target, "--workers", "3", "--machines", str(machines),
            "--lease-seconds", "1", "--heartbeat-seconds", "0.2", "--max-attempts", "20", "--no-progress",
            "--log-level", "warning"]


@pytest.mark.slow
def test_killing_the_whole_fleet_then_restarting_loses_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    machines = tmp_path / "machines.py"
    machines.write_text(MACHINES)
    log = tmp_path / "ticks.log"
    for i in range(MACHINE_COUNT):
        doc = {"state": "logged-countdown", "payload": {"id": i, "count": TICKS, "log": str(log)}}
        (store / f"m{i:03}.state").write_text(json.dumps(doc))

    fleet = subprocess.Popen(_doves(str(store), machines), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (store / "done").is_dir() or len(os.listdir(store / "done")) < MACHINE_COUNT * TICKS // 3:
        assert fleet.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    os.killpg(fleet.pid, signal.SIGKILL)  # supervisor and every worker, mid-run
    fleet.wait(30)
    assert len(os.listdir(store / "done")) < MACHINE_COUNT * TICKS

    again = subprocess.run(_doves(str(store), machines), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]

    done = set(os.listdir(store / "done"))
    expected = {f"m{i:03}.state" + ("" if step == 0 else f"-{step}")
                for i in range(MACHINE_COUNT) for step in range(TICKS)}
    assert done == expected
    state_files = {p.name for p in store.iterdir() if p.is_file()}
    assert state_files == expected, "a successor is missing, doubled onto a branch, or a temporary leaked"
    assert not os.listdir(store / "in_progress") and not os.listdir(store / "pending")
    executed = {tuple(map(int, line.split())) for line in log.read_text().splitlines()}
    assert executed == {(i, count) for i in range(MACHINE_COUNT) for count in range(1, TICKS + 1)}


@pytest.mark.slow
def test_killing_the_whole_fleet_on_postgres_then_restarting_loses_nothing(tmp_path: Path, pg_url: str) -> None:
    """The same against PostgreSQL: the database is the only thing the fleets share."""
    from martian_doves.model import Status
    from martian_doves.stores import open_store

    machines = tmp_path / "machines.py"
    machines.write_text(MACHINES)
    log = tmp_path / "ticks.log"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(MACHINE_COUNT):
        doc = {"state": "logged-countdown", "payload": {"id": i, "count": TICKS, "log": str(log)}}
        (inbox / f"m{i:03}.state").write_text(json.dumps(doc))
    submitted = subprocess.run([sys.executable, "-m", "martian_doves", "submit", pg_url, str(inbox),
                                "--machines", str(machines)], capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr

    command = _doves(pg_url, machines)
    store = open_store(pg_url)
    try:
        fleet = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while store.status().done < MACHINE_COUNT * TICKS // 3:
            assert fleet.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        os.killpg(fleet.pid, signal.SIGKILL)
        fleet.wait(30)
        assert store.status().done < MACHINE_COUNT * TICKS

        again = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        status = store.status()
        assert (status.done, status.pending, status.in_progress, status.failed) == (MACHINE_COUNT * TICKS, 0, 0, 0)
        for i in range(0, MACHINE_COUNT, 7):
            lineage = store.history(f"m{i:03}.state")
            assert [e.name for e in lineage] == [f"m{i:03}.state"] + [f"m{i:03}.state-{s}" for s in range(1, TICKS)]
            assert all(e.status is Status.DONE for e in lineage)
    finally:
        store.close()
    executed = {tuple(map(int, line.split())) for line in log.read_text().splitlines()}
    assert executed == {(i, count) for i in range(MACHINE_COUNT) for count in range(1, TICKS + 1)}
