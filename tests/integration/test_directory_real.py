"""Real worker processes on temporary directory stores, in both modes: the happy path at scale.

The seed's own examples, copied into a folder the way its README does, come out
with exactly the seed's successor files; hundreds of machines on four processes
all complete with every tick executed once.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from procs import (
    Fleet,
    WorkerProc,
    check_complete,
    check_executions,
    counting_document,
    drop_file,
    read_executions,
    semaphore_options,
    snapshot,
    submit_counting,
    wait_until,
)

import martian_doves

EXAMPLES = Path(martian_doves.__file__).resolve().parent / "examples"
#: The seed README's five example states.
SEED_EXAMPLES = ("countdown.state", "goodbye.state", "hello.state", "howdoyoudo.state", "slowcountdown.state")
MODES = ("lease", "semaphore")


def store_options(mode: str, **extra: Any) -> dict[str, Any]:
    """Short phases for the semaphore, quick admission of hand-copied files for both."""
    base: dict[str, Any] = {"admission_grace_seconds": 0.2, **extra}
    return {**semaphore_options(), **base} if mode == "semaphore" else base


def worker_options(mode: str) -> dict[str, Any]:
    # In semaphore mode a busy worker's heartbeat thread also keeps up with the phases.
    return {"heartbeat_seconds": 0.1 if mode == "semaphore" else 0.2}


def builtin_messages(log: str) -> Counter[str]:
    """The seed machines' messages (one per tick) found in worker logs."""
    return Counter(re.findall(r" \* From (\w+: .*)$", log, flags=re.MULTILINE))


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("mode", MODES)
def test_seed_examples_produce_exactly_the_seed_successors(tmp_path: Path, mode: str, workers: int) -> None:
    """The five seed examples, copied in by hand, end with exactly the seed's files.

    ``countdown.state-1..-4`` and ``slowcountdown.state-1..-4`` and no successor of
    the simple machines; ``done/`` holds all 13, ``pending/`` and ``in_progress/``
    nothing; each tick's message appears once across all worker logs.
    """
    store = tmp_path / "store"
    store.mkdir()
    for name in SEED_EXAMPLES:
        document = json.loads((EXAMPLES / name).read_text())
        document["payload"]["tick_seconds"] = 0.01
        drop_file(store, name, json.dumps(document))
    with Fleet(tmp_path, store, mode, store_options=store_options(mode),
               worker_options=worker_options(mode), machines=()) as fleet:
        fleet.start_many(workers)
        fleet.wait_all()
        fleet.assert_healthy()
        snap = check_complete(store, {"countdown.state": 5, "slowcountdown.state": 5, "goodbye.state": 1,
                                      "hello.state": 1, "howdoyoudo.state": 1})
        assert len(snap.done) == 13
        expected = Counter({
            "SimpleMachine: I am saying Goodbye!": 1,
            "SimpleMachine: I am saying Hello.": 1,
            "SimpleMachine: I am saying How do you do?": 1,
            **{f"CountdownMachine: Counting down! {n} remaining.": 1 for n in range(5)},
            **{f"SlowCountdownMachine: Counting down! {n} remaining.": 1 for n in range(5)},
        })
        assert builtin_messages(fleet.log_text()) == expected


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_two_hundred_countdowns_on_four_workers(tmp_path: Path, mode: str) -> None:
    """200 countdown machines (5 ticks each) on 4 processes: all 1000 transitions commit.

    Every lineage is complete and every tick ran exactly once (no kills here, so no
    duplicate is excusable); all four workers exit 0 by themselves.
    """
    store = tmp_path / "store"
    log = tmp_path / "executions.log"
    options = store_options(mode)
    machines = submit_counting(store, mode, (f"m{i:03d}" for i in range(200)), 5, log, store_options=options)
    with Fleet(tmp_path, store, mode, store_options=options, worker_options=worker_options(mode)) as fleet:
        fleet.start_many(4)
        fleet.wait_all()
        fleet.assert_healthy()
    check_complete(store, machines)
    check_executions(log, machines, exactly_once=True)
    if mode == "semaphore":
        results = [proc.result() for proc in fleet.procs.values()]
        assert all(r is not None and r["contended"] == 0 for r in results), results


@pytest.mark.parametrize("mode", MODES)
def test_watching_worker_with_idle_threads_picks_up_new_states(tmp_path: Path, mode: str) -> None:
    """``--watch`` with ``--concurrency 4``: idle threads wait together, then wake on new states.

    Four threads of one worker wait for wake-ups at the same time on an empty store
    (in lease mode they share one inotify descriptor, which refuses concurrent
    reads: that crashed the worker loop), then states are submitted and copied in
    (``cp``: written in place, which wakes the worker) and all complete, each tick
    once; SIGTERM stops the worker cleanly.
    """
    store = tmp_path / "store"
    store.mkdir()
    log = tmp_path / "executions.log"
    options = store_options(mode)
    with Fleet(tmp_path, store, mode, store_options=options, worker_options=worker_options(mode)) as fleet:
        watcher = fleet.start(concurrency=4, exit_when_finished=False, poll_seconds=0.5)
        wait_until(lambda: "worker started" in watcher.log(), "the worker to start")
        time.sleep(1.5)  # every thread is idle, waiting for a wake-up
        machines = submit_counting(store, mode, (f"m{i:02d}" for i in range(20)), 3, log, store_options=options)
        for i in range(10):
            drop_file(store, f"c{i}.state", json.dumps(counting_document(f"c{i}", 3, log)), in_place=True)
            machines[f"c{i}.state"] = 3
        _stop_after(fleet, watcher, 90, log, store)
    check_complete(store, machines)
    check_executions(log, machines, exactly_once=True)


@pytest.mark.parametrize("mode", MODES)
def test_a_file_moved_in_runs_at_once_not_at_the_next_root_scan(tmp_path: Path, mode: str) -> None:
    """A state file renamed into the root (``mv``) of a watching worker's store runs at once.

    The root scan and the grace for young files are an hour away here: only inotify's
    report of the rename (a moved-in file is complete) can admit it in time. The
    store's own renames into the root (submits, successors) come along and run once.
    """
    store = tmp_path / "store"
    store.mkdir()
    log = tmp_path / "executions.log"
    options = store_options(mode, scan_seconds=3600.0, admission_grace_seconds=3600.0)
    with Fleet(tmp_path, store, mode, store_options=options, worker_options=worker_options(mode)) as fleet:
        watcher = fleet.start(exit_when_finished=False, poll_seconds=0.5)
        machines = submit_counting(store, mode, ["first"], 2, log, store_options=options)
        wait_until(lambda: len(read_executions(log)) >= 2, "the submitted machine to run")
        drop_file(store, "moved.state", json.dumps(counting_document("moved", 3, log)))
        machines["moved.state"] = 3
        _stop_after(fleet, watcher, 5, log, store)
    check_complete(store, machines)
    check_executions(log, machines, exactly_once=True)


def _stop_after(fleet: Fleet, watcher: WorkerProc, transitions: int, log: Path, store: Path) -> None:
    """Wait until ``transitions`` ticks ran and nothing is claimed, then stop the watching worker."""
    def finished() -> bool:
        assert watcher.alive(), f"the worker exited early:\n{watcher.log()[-3000:]}"
        return len(read_executions(log)) >= transitions and not snapshot(store).in_progress

    wait_until(finished, f"{transitions} transitions")
    watcher.terminate()
    watcher.wait()
    fleet.assert_healthy()
