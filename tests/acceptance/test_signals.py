"""Clean stop on SIGTERM, a second signal stops at once, and a killed worker is replaced.

The signals go to the supervisor only (its own session), as from a service manager.
Timeouts are hang guards; nothing here measures how fast anything is.
"""

from __future__ import annotations

import collections
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from acceptance_helpers import Doves, Running, pid_alive, read_ticks, write_state

pytestmark = pytest.mark.slow


def submit_counted(doves: Doves, store: Path, machines_py: Path, tick_log: Path, lineages: int, count: int,
                   sleep: float) -> None:
    """Submit ``lineages`` states of the test machine ``counted`` (submitted, so admitted exactly once)."""
    incoming = store.parent / "incoming"
    incoming.mkdir(exist_ok=True)
    for ident in range(lineages):
        write_state(incoming, f"c{ident}.state", "counted",
                    {"id": f"c{ident}", "count": count, "sleep": sleep, "log": str(tick_log)})
    result = doves("submit", str(store), str(incoming), "--machines", str(machines_py))
    assert result.returncode == 0, result.stderr


def test_sigterm_stops_a_watch_run_cleanly(doves: Doves, start_doves: Callable[..., Running], store_dir: Path,
                                           machines_py: Path, tick_log: Path) -> None:
    submit_counted(doves, store_dir, machines_py, tick_log, lineages=6, count=200, sleep=0.02)
    running = start_doves("run", str(store_dir), "--watch", "--workers", "2", "--concurrency", "2",
                          "--machines", str(machines_py))
    running.wait_for(lambda: len(read_ticks(tick_log)) >= 10, "some ticks")

    # While workers are alive, the store refuses to be reset under them.
    refused = doves("reset", str(store_dir), "--yes")
    assert refused.returncode == 2 and "stop them first" in refused.stderr

    running.send(signal.SIGTERM)
    assert running.wait() == 0, running.output
    assert "Traceback" not in running.output

    assert list((store_dir / "in_progress").iterdir()) == []  # finished or released, nothing held
    assert list((store_dir / "workers").iterdir()) == []  # every worker unregistered
    status = doves.status(store_dir)
    assert status["pending"] > 0  # it stopped claiming rather than running to the end
    assert status["failed"] == 0
    worker_pids = {pid for _, _, pid, _ in read_ticks(tick_log)}
    assert not any(pid_alive(pid) for pid in worker_pids)

    # What was left runs to completion later, each remaining tick once.
    before = collections.Counter((i, c) for i, c, _, _ in read_ticks(tick_log))
    assert set(before.values()) == {1}
    finish = doves("run", str(store_dir), "--workers", "4", "--concurrency", "2", "--machines", str(machines_py))
    assert finish.returncode == 0, finish.stderr
    after = collections.Counter((i, c) for i, c, _, _ in read_ticks(tick_log))
    assert len(after) == 6 * 200


def test_a_worker_killed_with_sigkill_is_replaced(start_doves: Callable[..., Running], doves: Doves,
                                                 store_dir: Path, machines_py: Path, tick_log: Path) -> None:
    submit_counted(doves, store_dir, machines_py, tick_log, lineages=2, count=30, sleep=0.05)
    # One worker: if it is not replaced, nobody finishes the work.
    running = start_doves("run", str(store_dir), "--workers", "1", "--lease-seconds", "2",
                          "--machines", str(machines_py))
    running.wait_for(lambda: len(read_ticks(tick_log)) >= 3, "some ticks")
    victim = read_ticks(tick_log)[-1][2]
    os.kill(victim, signal.SIGKILL)

    assert running.wait() == 0, running.output
    assert "killed by SIGKILL" in running.output
    ticks = read_ticks(tick_log)
    # Every tick ran; the one cut off by the kill may have run twice (at least once).
    assert {(i, c) for i, c, _, _ in ticks} == {(f"c{i}", c) for i in range(2) for c in range(1, 31)}
    assert {pid for _, _, pid, _ in ticks} - {victim}, "no other worker process ran a tick"
    status = doves.status(store_dir)
    assert (status["pending"], status["in_progress"], status["failed"]) == (0, 0, 0)


def test_a_second_signal_stops_at_once(start_doves: Callable[..., Running], store_dir: Path, machines_py: Path,
                                       tick_log: Path) -> None:
    # A tick that would outlast any hang guard, and a grace period just as long.
    write_state(store_dir, "long.state", "blocks", {"id": "long", "sleep": 3600, "log": str(tick_log)})
    running = start_doves("run", str(store_dir), "--workers", "1", "--shutdown-grace-seconds", "3600",
                          "--machines", str(machines_py))
    running.wait_for(lambda: len(read_ticks(tick_log)) == 1, "the tick to start")
    worker = read_ticks(tick_log)[0][2]

    running.send(signal.SIGINT)
    running.wait_for_output("stop signal received")
    assert running.process.poll() is None  # the first signal waits for the in-flight tick

    time.sleep(0.5)  # a person's second Ctrl-C (one stop delivered twice at once counts once)
    running.send(signal.SIGINT)
    running.wait()
    assert "second stop signal" in running.output
    assert not pid_alive(worker)
    # The worker was killed, not drained: its claim stays until the lease expires.
    assert [p.name.split("@")[0] for p in (store_dir / "in_progress").iterdir()] == ["long.state"]
    assert [e for _, _, _, e in read_ticks(tick_log)] == ["start"]


def test_a_tick_timeout_replaces_the_worker(doves: Doves, store_dir: Path, machines_py: Path, tick_log: Path) -> None:
    write_state(store_dir, "stuck.state", "blocks", {"id": "stuck", "sleep": 3600, "log": str(tick_log)})
    write_state(store_dir, "fine.state", "simple", {"target": "fine", "tick_seconds": 0})
    result = doves("run", str(store_dir), "--machines", str(machines_py), "--tick-timeout", "1",
                   "--max-attempts", "2", "--retry-base-seconds", "0", "--heartbeat-seconds", "0.2")
    assert result.returncode == 1, result.stderr  # the stuck state failed
    assert "overran --tick-timeout; starting a new one" in result.stderr
    ticks = read_ticks(tick_log)
    assert [e for _, _, _, e in ticks] == ["start", "start"]
    assert ticks[0][2] != ticks[1][2]  # the second attempt ran in a new worker process
    status = doves.status(store_dir)
    assert (status["done"], status["failed"], status["pending"], status["in_progress"]) == (1, 1, 0, 0)
    assert "tick_timeout" in status["recent_failures"][0]["message"]


def test_a_worker_exits_non_zero_on_a_fatal_store_error(doves: Doves, store_dir: Path, machines_py: Path) -> None:
    write_state(store_dir, "vandal.state", "breaks-the-store", {"pending": str(store_dir / "pending")})
    result = doves("run", str(store_dir), "--machines", str(machines_py), "--workers", "1")
    # The worker's loop crashed on the broken store; its exit status told the supervisor,
    # which replaced it; the replacement then found the store unusable, which no restart
    # fixes: the run ends with that reason in one line.
    assert result.returncode == 2, result.stderr
    assert "crashed; starting a new one" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("doves: error: worker ") and "cannot open the store" in last, last


def test_a_worker_that_exits_0_with_work_left_is_replaced(doves: Doves, store_dir: Path, machines_py: Path,
                                                          tick_log: Path) -> None:
    """Exit status 0 is not "finished" while the store has work: the worker is replaced, its claim
    taken over when the lease expires, and the state fails once its attempts are used up, while
    the other states are done. The run ends with 1, never 0 with work left behind."""
    write_state(store_dir, "quits.state", "exits-quietly", {"id": "quits", "log": str(tick_log)})
    for ident in range(3):
        write_state(store_dir, f"c{ident}.state", "counted", {"id": f"c{ident}", "count": 3, "log": str(tick_log)})
    result = doves("run", str(store_dir), "--workers", "1", "--lease-seconds", "1", "--max-attempts", "2",
                   "--machines", str(machines_py))
    assert result.returncode == 1, result.stderr
    assert "exited before the store was finished" in result.stderr
    assert [e for i, _, _, e in read_ticks(tick_log) if i == "quits"] == ["exit", "exit"]
    status = doves.status(store_dir)
    assert (status["pending"], status["in_progress"], status["failed"]) == (0, 0, 1)
    assert status["recent_failures"][0]["name"] == "quits.state"


def test_a_run_stopped_before_the_work_is_done_exits_1(doves: Doves, start_doves: Callable[..., Running],
                                                      store_dir: Path, machines_py: Path, tick_log: Path) -> None:
    """Without --watch, `doves run` promises to finish the work: stopped first, it says so and exits
    1, so `doves run STORE && next-step` does not go on with half the results."""
    submit_counted(doves, store_dir, machines_py, tick_log, lineages=2, count=200, sleep=0.02)
    running = start_doves("run", str(store_dir), "--workers", "1", "--machines", str(machines_py))
    running.wait_for(lambda: len(read_ticks(tick_log)) >= 5, "some ticks")
    running.send(signal.SIGTERM)
    assert running.wait() == 1, running.output
    assert "stopped before the store was finished" in running.output
    assert doves.status(store_dir)["pending"] > 0


def test_one_stop_delivered_twice_at_once_is_still_a_clean_stop(start_doves: Callable[..., Running],
                                                                store_dir: Path, machines_py: Path,
                                                                tick_log: Path) -> None:
    """`timeout` and service managers signal the process and then its whole group: two SIGTERMs
    at once. That is one stop: the in-flight tick finishes rather than being killed."""
    write_state(store_dir, "short.state", "blocks", {"id": "short", "sleep": 2, "log": str(tick_log)})
    running = start_doves("run", str(store_dir), "--workers", "1", "--machines", str(machines_py))
    running.wait_for(lambda: len(read_ticks(tick_log)) == 1, "the tick to start")
    running.send(signal.SIGTERM)
    running.send(signal.SIGTERM)
    assert running.wait() == 0, running.output
    assert "second stop signal" not in running.output
    assert [e for _, _, _, e in read_ticks(tick_log)] == ["start", "end"]
