"""The seed's temporal-semaphore defects, each reproduced with real processes and shown fixed.

Semaphore mode with short phases (0.3 s phases, 0.1 s buffers: a 1.2 s cycle).
Each test attacks one weakness of the seed's design: one transition per worker
per cycle, registrations of dead workers stranding their share, a worker killed
mid-tick, malformed files, ``x.state``/``x.state-1`` clobbering, a skewed clock,
a late joiner, and a tick that outlives several cycles.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from procs import (
    Fleet,
    check_complete,
    check_executions,
    claims,
    counting_document,
    cycle_seconds,
    done_by,
    drop_file,
    read_executions,
    semaphore_options,
    snapshot,
    submit_counting,
    wait_until,
)

from martian_doves.config import Phase, Phases
from martian_doves.model import State
from martian_doves.stores import open_store

MODE = "semaphore"
#: Short phases, a lease short enough that takeovers happen within a test.
OPTIONS: dict[str, Any] = semaphore_options(lease_seconds=1.5, admission_grace_seconds=0.2)
WORKER = {"heartbeat_seconds": 0.1, "poll_seconds": 0.2}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "executions.log"


@pytest.fixture
def fleet(tmp_path: Path, store: Path) -> Iterator[Fleet]:
    with Fleet(tmp_path, store, MODE, store_options=OPTIONS, worker_options=WORKER) as fleet:
        yield fleet


def submit(store: Path, log: Path, ids: Any, count: int, tick_seconds: float = 0.0) -> dict[str, int]:
    return submit_counting(store, MODE, ids, count, log, tick_seconds, OPTIONS)


def test_many_transitions_per_worker_per_cycle(store: Path, log: Path, fleet: Fleet) -> None:
    """Seed defect: one state per worker per cycle. Fixed: a worker takes its whole share.

    From the machines' own log, each transition is attributed to (process, cycle);
    far more transitions happen than there are (process, cycle) pairs, and a
    worker's log shows a single cycle in which it claimed many states.
    """
    machines = submit(store, log, (f"m{i:02d}" for i in range(40)), 3)
    fleet.start_many(2)
    fleet.wait_all()
    fleet.assert_healthy()
    check_complete(store, machines)
    check_executions(log, machines, exactly_once=True)
    executions = read_executions(log)
    slots = {(e.pid, int(e.at // cycle_seconds(OPTIONS))) for e in executions}
    assert len(executions) == 120
    assert len(executions) >= 5 * len(slots), f"{len(executions)} transitions in {len(slots)} (worker, cycle) slots"
    per_cycle = [int(n) for n in re.findall(r"claimed (\d+) state\(s\) in cycle", fleet.log_text())]
    assert per_cycle and max(per_cycle) > 1, per_cycle


def _stamp_during_update(path: Path, phases: Phases, alive: threading.Event) -> None:
    """Act as a registered worker that stamps itself each update phase while ``alive``."""
    while alive.is_set():
        if phases.at(time.time())[1] is Phase.UPDATE:
            os.utime(path)
        time.sleep(0.02)


def test_dead_registrations_do_not_strand_work(store: Path, log: Path, fleet: Fleet) -> None:
    """Seed defect: a registered worker that died keeps its share forever. Fixed: liveness.

    A ghost registration (``{"mode": "semaphore"}``, stamped every update phase
    while the run starts, then never again) owns a share of the first cycles'
    assignment; one real worker is killed with ``kill -9`` mid-run, leaving its
    registration behind. The survivors still finish every machine.
    """
    machines = submit(store, log, (f"m{i:02d}" for i in range(60)), 3, tick_seconds=0.02)
    ghost = store / "workers" / "ghost"
    ghost.write_text(json.dumps({"mode": "semaphore", "host": "gone", "pid": 1, "started_at": time.time()}))
    alive = threading.Event()
    alive.set()
    stamper = threading.Thread(target=_stamp_during_update, args=(ghost, Phases(0.3, 0.3, 0.3, 0.1), alive),
                               daemon=True)
    stamper.start()
    try:
        workers = fleet.start_many(3)
        wait_until(lambda: read_executions(log), "the first transitions")
        victim = workers[0]
        # On a loaded machine the victim may still be starting: it must have registered.
        wait_until(lambda: (store / "workers" / victim.name).exists(), "the victim's registration")
        victim.kill()
        # The ghost stays "alive" one more cycle, then dies too.
        time.sleep(cycle_seconds(OPTIONS))
    finally:
        alive.clear()
        stamper.join()
    for proc in workers[1:]:
        proc.wait()
    fleet.assert_healthy(exited=[w.name for w in workers[1:]])
    assert (store / "workers" / victim.name).exists(), "the dead worker's registration should still be there"
    assert ghost.exists()
    check_complete(store, machines)
    duplicates = check_executions(log, machines, exactly_once=False)
    assert sum(duplicates.values()) <= 1, duplicates  # at most the victim's one interrupted tick


@pytest.mark.slow
def test_worker_killed_mid_tick_is_taken_over(store: Path, log: Path, fleet: Fleet) -> None:
    """Seed defect: a crashed worker's in-progress flag blocks its state forever.

    A worker is killed with ``kill -9`` in the middle of a slow tick; after the
    lease (1.5 s) another worker takes the claim over and finishes the lineage,
    which is intact: each successor once, no branch, the interrupted tick run
    to completion exactly once.
    """
    machines = submit(store, log, ["slow"], 3, tick_seconds=1.0)
    machines |= submit(store, log, (f"q{i}" for i in range(10)), 2)
    workers = {proc.name: proc for proc in fleet.start_many(2)}

    def second_tick_running() -> str | None:
        # A chaining worker claims slow.state-1 before it moves slow.state to done/ (a fsync on a
        # busy disk can hold it there): a kill in between runs the first tick again, as it may.
        holder = claims(store).get("slow.state-1")
        return holder if holder is not None and done_by(store, "slow.state") == holder else None

    holder = wait_until(second_tick_running, "slow.state done and a claim on slow.state-1 (second tick running)")
    workers.pop(holder).kill()
    [(survivor, proc)] = workers.items()
    proc.wait()
    fleet.assert_healthy(exited=[survivor])
    check_complete(store, machines)
    check_executions(log, machines, exactly_once=True)
    assert done_by(store, "slow.state-1") == survivor
    assert done_by(store, "slow.state-2") == survivor
    assert "took over slow.state-1" in proc.log()


@pytest.mark.parametrize("mode", ["semaphore", "lease"])
def test_malformed_files_land_in_failed(tmp_path: Path, store: Path, log: Path, mode: str) -> None:
    """Seed defect: a malformed state file crashes the worker that reads it.

    Broken JSON, a document that is not an object, an unknown state name (all
    moved in before the run) and a binary file moved in mid-run each land in
    ``failed/`` with a machine-readable reason; every worker exits 0 and every
    good machine completes. (A file moved in raises no wake-up: the workers must
    still look for it before they decide that nothing is left.)
    """
    options = OPTIONS if mode == "semaphore" else {"lease_seconds": 1.5, "admission_grace_seconds": 0.2}
    machines = submit_counting(store, mode, (f"m{i:02d}" for i in range(30)), 3, log, 0.03, options)
    drop_file(store, "broken.state", '{"state": "counted-countdown", "payload": ')
    drop_file(store, "list.state", "[1, 2, 3]")
    drop_file(store, "unknown.state", json.dumps({"state": "no-such-machine", "payload": {}}))
    # Asked for: without it, unknown.state would wait for a worker that has its machine.
    with Fleet(tmp_path, store, mode, store_options=options,
               worker_options={**WORKER, "fail_unknown_states": True}) as fleet:
        fleet.start_many(2)
        wait_until(lambda: read_executions(log), "the first transitions")
        drop_file(store, "late.state", b"\xff\xfe\x00garbage")
        fleet.wait_all()
        fleet.assert_healthy()
    expected_codes = {"broken.state": "malformed_json", "list.state": "invalid_document",
                      "unknown.state": "unknown_state", "late.state": "malformed_json"}
    snap = check_complete(store, machines, failed=expected_codes)
    assert {name: reason["code"] for name, reason in snap.reasons.items()} == expected_codes
    assert all(reason["message"] for reason in snap.reasons.values())
    check_executions(log, machines, exactly_once=True)


@pytest.mark.parametrize("mode", ["semaphore", "lease"])
def test_state_and_its_successor_name_never_clobber(tmp_path: Path, store: Path, log: Path, mode: str) -> None:
    """Seed defect: ``x.state`` and ``x.state-1`` submitted as two machines clobber each other.

    Both run to the end: the submitted ``x.state-1`` is untouched and runs its own
    lineage (``x.state-2``, ``x.state-3``); ``x.state``'s successors take a branch
    (``x.state-1~2``, ``x.state-2~2``); every tick of both runs exactly once, and a
    later submit of an existing successor name is refused.
    """
    options = OPTIONS if mode == "semaphore" else {"lease_seconds": 1.5}
    opened = open_store(str(store), mode, **options)
    first = counting_document("x", 3, log)
    second = counting_document("x1", 3, log)
    results = opened.submit([State("x.state", first["state"], first["payload"]),
                             State("x.state-1", second["state"], second["payload"])])
    assert all(r.added for r in results), results
    with Fleet(tmp_path, store, mode, store_options=options, worker_options=WORKER) as fleet:
        fleet.start_many(2)
        fleet.wait_all()
        fleet.assert_healthy()
    snap = snapshot(store)
    lineages = {"x.state": None, "x.state-1~2": "x.state", "x.state-2~2": "x.state-1~2",
                "x.state-1": None, "x.state-2": "x.state-1", "x.state-3": "x.state-2"}
    assert snap.states == set(lineages)
    assert snap.done == set(lineages) and not snap.pending and not snap.in_progress and not snap.failed
    for name, parent in lineages.items():
        assert json.loads((store / name).read_text()).get("parent") == parent, name
    assert json.loads((store / "x.state-1").read_text())["payload"] == second["payload"]
    check_executions(log, {"x.state": 3, "x1.state": 3}, exactly_once=True)
    refused = opened.submit([State("x.state-2", "counted-countdown", {"id": "z", "count": 1, "log": str(log)})])
    assert not refused[0].added
    assert json.loads((store / "x.state-2").read_text())["parent"] == "x.state-1"
    opened.close()


@pytest.mark.slow
def test_skewed_worker_refuses_and_late_joiner_never_double_ticks(store: Path, log: Path, fleet: Fleet) -> None:
    """Beyond the bound the buffers absorb, a worker stands aside; joining mid-run is safe.

    One worker's clock runs ``2 * buffer`` fast: it measures the skew against the
    filesystem, refuses to take part (claims nothing, says why in its log) and
    still exits when the others are done; nothing is ever assigned to it, so no
    share waits a cycle for it. A worker started mid-run, followed by
    more machines (half submitted, half copied in by hand), shares the work: every
    tick of every machine runs exactly once and no worker ever found an assigned
    state claimed by someone else (``contended == 0``).
    """
    # a00 waits at a gate until the late joiner and the new machines are in: however slow the
    # machine is to start the late joiner, the run has not ended before they arrive.
    gate = store.parent / "gate"
    machines = submit_counting(store, MODE, ["a00"], 3, log, 0.01, OPTIONS, gate=gate)
    machines |= submit(store, log, (f"a{i:02d}" for i in range(1, 40)), 3, tick_seconds=0.01)
    skewed = fleet.start("skewed", clock_offset_seconds=2 * OPTIONS["buffer_seconds"])
    first = fleet.start_many(2)
    wait_until(lambda: read_executions(log), "the first transitions")
    late = fleet.start("late")
    wait_until(lambda: (store / "workers" / "late").exists(), "the late joiner's registration")
    machines |= submit(store, log, (f"b{i:02d}" for i in range(20)), 3, tick_seconds=0.01)
    for i in range(20):
        drop_file(store, f"c{i:02d}.state", json.dumps(counting_document(f"c{i:02d}", 3, log, 0.01)))
        machines[f"c{i:02d}.state"] = 3
    gate.touch()
    fleet.wait_all()
    fleet.assert_healthy()
    check_complete(store, machines)
    check_executions(log, machines, exactly_once=True)
    results = {name: proc.result() for name, proc in fleet.procs.items()}
    assert results["skewed"] == {**results["skewed"], "claimed": 0, "committed": 0, "refusing": True}
    assert "exceeds" in skewed.log() and "not taking part" in skewed.log()
    assert not [name for name in snapshot(store).done if done_by(store, name) == "skewed"]
    assert skewed.pid not in {e.pid for e in read_executions(log)}
    assert all(r is not None and r["contended"] == 0 for r in results.values()), results
    # Nothing was ever assigned to the refusing worker: the first cycle in which anyone
    # claimed shared all 40 first machines between the honest workers.
    claimed = [(int(cycle), int(count)) for count, cycle in
               re.findall(r"claimed (\d+) state\(s\) in cycle (\d+)", fleet.log_text())]
    first_cycle = min(cycle for cycle, _ in claimed)
    assert sum(count for cycle, count in claimed if cycle == first_cycle) == 40, claimed
    assert late.pid in {e.pid for e in read_executions(log)}, "the late joiner should have had a share"
    assert {w.name for w in first} | {"late"} >= {done_by(store, name) for name in snapshot(store).done}


@pytest.mark.slow
def test_slow_tick_outliving_cycles_keeps_its_claim(store: Path, log: Path, fleet: Fleet) -> None:
    """Seed defect: a tick longer than a cycle is assigned again. Fixed: heartbeats keep the claim.

    A 4 s tick spans more than three 1.2 s cycles and more than twice the 1.5 s
    lease; heartbeats keep its claim alive, so nobody takes it over and it runs
    exactly once, while the other worker finishes the quick machines.
    """
    machines = submit(store, log, ["slow"], 1, tick_seconds=4.0)
    machines |= submit(store, log, (f"q{i}" for i in range(10)), 2, tick_seconds=0.01)
    fleet.start_many(2)
    fleet.wait_all()
    fleet.assert_healthy()
    check_complete(store, machines)
    check_executions(log, machines, exactly_once=True)
    text = fleet.log_text()
    assert "took over" not in text and "lost" not in text
