"""``doves run``'s supervisor under attack, with real processes: a worker killed from outside is
replaced for as long as it takes, and only a worker that can never start stops the run.

The supervisor runs as ``python -m martian_doves run`` (this checkout's code); its worker
processes are found by the "started worker PREFIX-PID" lines it logs, and killed with a
real ``kill -9``. Timeouts are hang guards only; nothing here measures speed.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pgdb import db
from procs import (
    HANG_GUARD_SECONDS,
    MACHINES_FILE,
    check_complete,
    check_executions,
    claims,
    counting_payload,
    read_executions,
    wait_until,
)

#: Worker names are ``PREFIX-<pid>``: how the test finds the worker processes in the log.
PREFIX = "chaos"
#: Longest a whole run may take here (the chaos alone lasts 10 s); a hang guard.
RUN_GUARD_SECONDS = 4 * HANG_GUARD_SECONDS


class DovesRun:
    """``doves run`` in the background, its output in a file."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.output_path = workdir / "doves-run.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOVES_")}
        with open(self.output_path, "wb") as output:
            self.process = subprocess.Popen([sys.executable, "-m", "martian_doves", "run", *args, "--name", PREFIX,
                                             "--no-progress"], stdin=subprocess.DEVNULL, stdout=output,
                                            stderr=subprocess.STDOUT, env=env, start_new_session=True)

    @property
    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """Worker processes started so far and not yet ended."""
        pids = {int(pid) for pid in re.findall(rf"started worker {PREFIX}-(\d+)", self.output)}
        return sorted(pid for pid in pids if _alive(pid))

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self) -> int:
        try:
            return self.process.wait(RUN_GUARD_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"doves run did not end within {RUN_GUARD_SECONDS:g} s:\n"
                                 f"{self.output[-5000:]}") from None

    def cleanup(self) -> None:
        if self.running():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def submit_machines(target: str, count: int, ticks: int, log: Path, tick_seconds: float) -> dict[str, int]:
    """Submit ``count`` ``counted-countdown`` machines of ``ticks`` ticks; root name → ticks."""
    from martian_doves.model import State
    from martian_doves.stores import open_store

    store = open_store(target)
    try:
        results = store.submit([State(f"m{i:03d}.state", "counted-countdown",
                                      counting_payload(f"m{i:03d}", ticks, log, tick_seconds))
                                for i in range(count)])
    finally:
        store.close()
    assert all(r.added for r in results)
    return {f"m{i:03d}.state": ticks for i in range(count)}


def check_complete_postgres(pg_url: str, machines: dict[str, int]) -> None:
    """Every machine's lineage once: exactly the expected names, with their parents, all done."""
    rows = db(pg_url, "SELECT name, parent, status FROM states")
    expected = {}
    for root, ticks in machines.items():
        for step in range(ticks):
            expected[root if step == 0 else f"{root}-{step}"] = (
                None if step == 0 else (root if step == 1 else f"{root}-{step - 1}"))
    found = {name: parent for name, parent, _ in rows}
    assert found == expected, (f"{len(found)} states, expected {len(expected)}: "
                               f"extra {sorted(set(found) - set(expected))[:10]}, "
                               f"missing {sorted(set(expected) - set(found))[:10]}")
    assert {status for _, _, status in rows} == {"done"}


def kill_workers_at_random(run: DovesRun, seconds: float, every_seconds: float, seed: int) -> int:
    """``kill -9`` a random worker process every ``every_seconds`` for ``seconds``; the kills made."""
    rng = random.Random(seed)
    kills = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and run.running():
        victims = run.worker_pids()
        if victims:
            try:
                os.kill(rng.choice(victims), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
        time.sleep(every_seconds)
    return kills


@pytest.mark.slow
def test_random_kill_9_of_workers_never_stops_the_run(tmp_path: Path, target: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 9's chaos: 4 workers, 200 machines x 5 ticks, a random worker killed with ``kill -9``
    every 0.4 s for 10 s. On main the supervisor gave up ("died 5 times in a row ... giving up",
    exit 1) and stopped the healthy workers; here every killed worker is replaced, the run goes
    on to the end and exits 0, and every machine ends exactly once."""
    log = tmp_path / "executions.log"
    machines = submit_machines(target, 200, 5, log, tick_seconds=0.04)
    run = DovesRun(tmp_path, target, "--workers", "4", "--machines", str(MACHINES_FILE), "--lease-seconds", "1",
                   "--heartbeat-seconds", "0.2", "--max-attempts", "100", "--retry-base-seconds", "0")
    try:
        wait_until(lambda: len(run.worker_pids()) == 4 or not run.running(), "the four workers to start")
        wait_until(lambda: read_executions(log) or not run.running(), "the first transitions")
        kills = kill_workers_at_random(run, seconds=10.0, every_seconds=0.4, seed=9)
        attacked_until_the_end = run.running()
        code = run.wait()
    finally:
        run.cleanup()
    output = run.output
    assert code == 0, output[-5000:]
    assert "giving up" not in output and "cannot continue" not in output, output[-5000:]
    assert kills >= 10, f"only {kills} worker(s) killed: the attack did not happen"
    assert attacked_until_the_end, "the run ended before the chaos did: too little work to attack"
    assert output.count("was killed by SIGKILL; starting a new one") == kills
    if target.startswith("postgresql://"):
        check_complete_postgres(target, machines)
    else:
        check_complete(Path(target), machines)
    duplicates = check_executions(log, machines, exactly_once=False)
    with capsys.disabled():
        print(f"\n    {kills} workers killed; {sum(duplicates.values())} tick(s) ran again", end="")


BROKEN_MACHINES = "import a_module_this_host_does_not_have  # a deploy that broke the machines\n"


@pytest.mark.slow
def test_a_worker_whose_machines_fail_to_import_stops_the_run_with_one_line(tmp_path: Path) -> None:
    """The machines file breaks while the run goes on (a bad deploy), then a worker is killed: its
    replacement cannot import its machines, which no restart fixes. The run stops (the other
    worker cleanly), exits 2, and says why in one line, the last one; no traceback."""
    store = tmp_path / "store"
    store.mkdir()
    machines_file = tmp_path / "machines.py"
    machines_file.write_text(MACHINES_FILE.read_text())
    log = tmp_path / "executions.log"
    submit_machines(str(store), 20, 1000, log, tick_seconds=0.02)
    run = DovesRun(tmp_path, str(store), "--watch", "--workers", "2", "--machines", str(machines_file))
    try:
        wait_until(lambda: len(run.worker_pids()) == 2 or not run.running(), "the two workers to start")
        wait_until(lambda: run.output.count("worker started on") == 2 or not run.running(),
                   "both workers to load their machines")
        machines_file.write_text(BROKEN_MACHINES)
        victim, survivor = run.worker_pids()
        os.kill(victim, signal.SIGKILL)
        code = run.wait()
    finally:
        run.cleanup()
    output = run.output
    assert code == 2, output[-5000:]
    last = output.strip().splitlines()[-1]
    assert re.fullmatch(rf"doves: error: worker {PREFIX}-\d+ cannot load its machines: {machines_file}: "
                        r"ModuleNotFoundError: No module named 'a_module_this_host_does_not_have'", last), last
    assert output.count("a_module_this_host_does_not_have") == 1, output[-5000:]  # said once, not per worker
    assert "Traceback" not in output, output[-5000:]
    assert f"worker {PREFIX}-{survivor} stopped" in output and "killing" not in output, output[-5000:]
    # The survivor released what it held as it stopped; the killed worker's claim waits for its lease.
    assert set(claims(store).values()) <= {f"{PREFIX}-{victim}"}, claims(store)
