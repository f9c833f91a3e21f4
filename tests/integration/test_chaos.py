"""Chaos with real processes, in both directory modes: kill -9, SIGSTOP/SIGCONT, SIGTERM.

Guarantee 1 (nothing lost), 2 (each transition commits once; fencing), 3 (no torn
or clobbered files) and 6 (clean stop) under attack. Kills make ticks run again
(at-least-once), so the execution log may show duplicates, which are reported;
what must never happen is a lost transition, a duplicated or branched successor,
or a state left behind.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
from procs import (
    Fleet,
    WorkerProc,
    check_complete,
    check_executions,
    claims,
    counting_document,
    done_by,
    drop_file,
    read_executions,
    semaphore_options,
    snapshot,
    submit_counting,
    wait_until,
)

MODES = ("lease", "semaphore")


#: A state whose every attempt ended with its worker lost is failed after ``max_attempts``
#: (a crash loop must end); random kills may hit one state's holders that often, so the
#: chaos tests allow more attempts than that.
CHAOS_RETRY = {"max_attempts": 50}


def options_for(mode: str, lease_seconds: float = 1.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """(store options, worker options): short leases, and short phases in semaphore mode."""
    if mode == "semaphore":
        return (semaphore_options(lease_seconds=lease_seconds),
                {"heartbeat_seconds": 0.1, "poll_seconds": 0.2, "retry": CHAOS_RETRY})
    return {"lease_seconds": lease_seconds}, {"heartbeat_seconds": 0.2, "poll_seconds": 0.2, "retry": CHAOS_RETRY}


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n    {text}", end="")


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_random_kill_9_loses_nothing(tmp_path: Path, mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    """300 machines on 4 workers while random claim holders are killed with ``kill -9`` and replaced.

    Afterwards every lineage is complete (each successor once, no ``~N`` branch),
    nothing is pending or in progress, every state is done, no temporary is
    visible, and every (machine, count) transition ran at least once.
    """
    store = tmp_path / "store"
    log = tmp_path / "executions.log"
    store_options, worker_options = options_for(mode)
    machines = submit_counting(store, mode, (f"m{i:03d}" for i in range(300)), 5, log, 0.01, store_options)
    rng = random.Random(7)
    kills = 0
    with Fleet(tmp_path, store, mode, store_options=store_options, worker_options=worker_options) as fleet:
        fleet.start_many(4)
        wait_until(lambda: read_executions(log), "the first transitions")
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            held = set(claims(store).values())
            victims = [proc for proc in fleet.running() if proc.name in held]
            if victims and len(read_executions(log)) < 1200:
                rng.choice(victims).kill()
                kills += 1
                fleet.start()
            time.sleep(rng.uniform(0.2, 0.5))
        survivors = fleet.running()
        for proc in survivors:
            proc.wait()
        fleet.assert_healthy(exited=[proc.name for proc in survivors])
    check_complete(store, machines)
    duplicates = check_executions(log, machines, exactly_once=False)
    report(capsys, f"{mode}: {kills} workers killed holding claims; {sum(duplicates.values())} duplicate tick(s)")
    assert kills >= 3, f"only {kills} kill(s) landed on a worker holding claims: the attack did not happen"


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_whole_fleet_killed_then_fresh_fleet_finishes(tmp_path: Path, mode: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Every worker killed with ``kill -9`` at once mid-run; a fresh fleet recovers all claims and finishes."""
    store = tmp_path / "store"
    log = tmp_path / "executions.log"
    store_options, worker_options = options_for(mode)
    machines = submit_counting(store, mode, (f"m{i:03d}" for i in range(300)), 5, log, 0.005, store_options)
    with Fleet(tmp_path, store, mode, store_options=store_options, worker_options=worker_options) as fleet:
        fleet.start_many(4, concurrency=2)
        wait_until(lambda: len(read_executions(log)) >= 300, "a fifth of the transitions")
        fleet.kill_all()
        stranded = snapshot(store)
        assert stranded.in_progress, "the fleet was killed while holding no claim: nothing was attacked"
        assert len(read_executions(log)) < 1500, "the fleet had finished before it was killed"
        fresh = fleet.start_many(4, concurrency=2)
        for proc in fresh:
            proc.wait()
        fleet.assert_healthy(exited=[proc.name for proc in fresh])
    check_complete(store, machines)
    duplicates = check_executions(log, machines, exactly_once=False)
    report(capsys, f"{mode}: {len(stranded.in_progress)} claim(s) stranded by the kill; "
                   f"{sum(duplicates.values())} duplicate tick(s)")


@pytest.mark.parametrize("mode", MODES)
def test_paused_worker_cannot_commit_after_takeover(tmp_path: Path, mode: str) -> None:
    """Fencing: a worker frozen (SIGSTOP) past its lease loses its claim and cannot commit.

    Worker A is stopped mid-tick; B takes the claim over after the lease and
    commits the whole lineage; A is resumed (SIGCONT), finishes its tick and is
    refused at commit: it logs the lost claim, the successor exists exactly once
    and was committed by B, and the successor's own tick ran only once.
    """
    store = tmp_path / "store"
    log = tmp_path / "executions.log"
    store_options, worker_options = options_for(mode)
    machines = submit_counting(store, mode, ["fence"], 2, log, 1.0, store_options)
    with Fleet(tmp_path, store, mode, store_options=store_options, worker_options=worker_options) as fleet:
        a = fleet.start("a")
        wait_until(lambda: claims(store).get("fence.state") == "a", "worker a to claim fence.state")
        a.pause()
        try:
            b = fleet.start("b")
            wait_until(lambda: done_by(store, "fence.state-1"), "b to commit the lineage")
        finally:
            a.resume()
        for proc in (a, b):
            proc.wait()
        fleet.assert_healthy()
        assert "lost the claim on fence.state" in a.log()
        assert a.result() == {**(a.result() or {}), "committed": 0, "lost": 1}
    check_complete(store, machines)
    assert done_by(store, "fence.state") == "b" and done_by(store, "fence.state-1") == "b"
    executions = [(e.machine, e.count) for e in read_executions(log)]
    assert executions.count(("fence", 1)) == 1
    assert executions.count(("fence", 2)) == 2  # a's tick ran to its end, but its result was dropped


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_sigterm_releases_in_flight_claims_at_once(tmp_path: Path, mode: str) -> None:
    """Clean stop: SIGTERM with slow ticks in flight; the worker exits and hands its claims back.

    The ticks outlast the shutdown grace, so the worker releases both claims as it
    exits: right after the exit they are pending again and nothing is in progress
    (with a 30 s lease, only a release explains that). Another worker then finishes
    both machines, each tick executed once.
    """
    store = tmp_path / "store"
    log = tmp_path / "executions.log"
    store_options, worker_options = options_for(mode, lease_seconds=30.0)
    machines = submit_counting(store, mode, ["t0", "t1"], 2, log, 2.0, store_options)
    with Fleet(tmp_path, store, mode, store_options=store_options, worker_options=worker_options) as fleet:
        a = fleet.start("a", concurrency=2, shutdown_grace_seconds=0.5)
        wait_until(lambda: claims(store) == {"t0.state": "a", "t1.state": "a"}, "worker a to claim both")
        time.sleep(0.2)  # both ticks running
        a.terminate()
        assert a.wait(30.0) == 0  # hang guard only
        after = snapshot(store)
        assert not after.in_progress and after.pending == {"t0.state", "t1.state"}, after
        assert not (store / "workers" / "a").exists(), "a stopped worker unregisters"
        assert "releasing t0.state" in a.log() and "releasing t1.state" in a.log()
        b: WorkerProc = fleet.start("b", concurrency=2)
        b.wait()
        fleet.assert_healthy()
    check_complete(store, machines)
    check_executions(log, machines, exactly_once=True)


@pytest.mark.parametrize("mode", MODES)
def test_takeover_after_a_crash_between_successor_and_commit_finishes(tmp_path: Path, mode: str) -> None:
    """A worker killed after writing a successor but before committing: the next worker finishes.

    The dead worker's state on disk is laid out by hand (its expired claim, and the
    successor it had just written) and a fresh worker is started while that
    successor is still too young to be admitted from a root scan. It takes the
    claim over, re-runs the tick, finds its successor already written, runs the
    successor, and exits: the successor it saw waiting for admission is no longer
    waited for (that wait kept ``is_finished`` false forever and the worker never
    exited; the whole-fleet kill above hit it now and then).
    """
    store = tmp_path / "store"
    log = tmp_path / "executions.log"
    store_options, worker_options = options_for(mode, lease_seconds=1.0)
    store_options["admission_grace_seconds"] = 3.0
    machines = submit_counting(store, mode, ["crash"], 2, log, 0.0, store_options)
    claim = store / "in_progress" / "crash.state@00dead00beef0000"
    os.rename(store / "pending" / "crash.state", claim)
    claim.write_text(json.dumps({"worker": "dead", "token": "00dead00beef0000", "attempts": 0, "errors": [],
                                 "claimed_at": time.time()}))
    successor = counting_document("crash", 1, log)
    drop_file(store, "crash.state-1", json.dumps({**successor, "parent": "crash.state"}))
    time.sleep(1.2)  # the dead worker's lease expires; its successor is still young
    with Fleet(tmp_path, store, mode, store_options=store_options, worker_options=worker_options) as fleet:
        worker = fleet.start()
        worker.wait(30.0)
        fleet.assert_healthy()
        assert "took over crash.state" in worker.log()
    check_complete(store, machines)
    check_executions(log, machines, exactly_once=True)
    assert done_by(store, "crash.state") == worker.name
