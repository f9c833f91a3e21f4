"""Faults with real worker processes on a real PostgreSQL (fresh schema per test).

Each worker is this file run as a script (``python test_postgres_faults.py CONFIG``):
it opens the store, waits for a start gate, runs ``Worker(...).run()`` and writes its
totals to a JSON file. Faults are real: ``kill -9`` of a worker, and
``pg_terminate_backend`` of the store's sessions on the shared server, and a crash and
restart of a private server (pgserver.py) that only one test uses.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pgdb import assert_counters_match, db
from pgserver import PrivateServer

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent.parent


# -- the worker process -------------------------------------------------------------------


def _worker_main(config: dict[str, Any]) -> None:
    from martian_doves.config import WorkerOptions
    from martian_doves.loader import default_registry
    from martian_doves.model import JSONDict
    from martian_doves.stores import open_store
    from martian_doves.worker import Worker

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {config['name']} %(name)s %(message)s")
    crashes: list[logging.LogRecord] = []

    class CrashWatch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "action", None) == "crash":
                crashes.append(record)

    logging.getLogger("martian_doves").addHandler(CrashWatch())

    def gated(payload: JSONDict) -> JSONDict | None:
        """Counts down; this process's ticks first wait for its gate file, if it has one."""
        gate = config.get("tick_gate")
        while gate and not os.path.exists(gate):
            time.sleep(0.02)
        count = int(payload["count"]) - 1
        return {"count": count} if count > 0 else None

    registry = default_registry()
    registry.register("gated", gated)
    store = open_store(config["url"], **config.get("store", {}))
    while not os.path.exists(config["start_gate"]):
        time.sleep(0.01)
    worker = Worker(store, registry, WorkerOptions(name=config["name"], **config.get("worker", {})))
    if config.get("stalled_heartbeat_seconds"):
        # A worker whose heartbeats do not get through: no configuration allows it (they must
        # fit in half the lease), so it is set on the built worker.
        worker.options = dataclasses.replace(worker.options, heartbeat_seconds=config["stalled_heartbeat_seconds"])
    totals = worker.run()
    store.close()
    result = {"committed": totals.committed, "lost": totals.lost, "retried": totals.retried,
              "failed": totals.failed, "crashed": len(crashes)}
    Path(config["result"]).write_text(json.dumps(result))


# -- helpers ----------------------------------------------------------------------------------


class Fleet:
    """Worker processes of one test, started together when ``go`` is called."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.start_gate = folder / "go"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, store: dict[str, Any] | None = None, worker: dict[str, Any] | None = None,
              tick_gate: Path | None = None, stalled_heartbeat_seconds: float | None = None,
              ) -> subprocess.Popen[bytes]:
        config = {"url": self.url, "name": name, "start_gate": str(self.start_gate),
                  "result": str(self.folder / f"{name}.json"), "tick_gate": str(tick_gate) if tick_gate else None,
                  "stalled_heartbeat_seconds": stalled_heartbeat_seconds,
                  "store": {"lease_seconds": 1.0, "poll_seconds": 0.5, **(store or {})},
                  "worker": {"heartbeat_seconds": 0.2, "poll_seconds": 0.2, "concurrency": 2, **(worker or {})}}
        log = (self.folder / f"{name}.log").open("wb")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen([sys.executable, str(HERE), json.dumps(config)], stdout=log,
                                   stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.processes[name] = process
        return process

    def go(self) -> None:
        self.start_gate.touch()

    def wait(self, name: str, timeout: float = 90.0) -> dict[str, Any]:
        """Wait for a worker to exit by itself; return its totals."""
        code = self.processes[name].wait(timeout)
        log = (self.folder / f"{name}.log").read_text(errors="replace")
        assert code == 0, f"worker {name} exited {code}:\n{log[-3000:]}"
        result: dict[str, Any] = json.loads((self.folder / f"{name}.json").read_text())
        return result

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def fleet(pg_url: str, tmp_path: Path) -> Iterator[Fleet]:
    group = Fleet(pg_url, tmp_path)
    yield group
    group.stop_all()


def wait_until(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def done_count(pg_url: str) -> int:
    return int(db(pg_url, "SELECT count(*) FROM states WHERE status = 'done'")[0][0])


def terminate_sessions(pg_url: str, pid: int | None = None) -> int:
    """End the server sessions of this test's stores (all, or one process's)."""
    from martian_doves.stores.postgres import parse_url

    schema = parse_url(pg_url)[1].schema
    pattern = f"doves:{schema}:{pid}" if pid else f"doves:{schema}:%"
    rows = db(pg_url, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                      "WHERE application_name LIKE %s AND pid <> pg_backend_pid()", (pattern,))
    return int(rows[0][0])


def submit_countdowns(pg_url: str, machines: int, ticks: int, tick_seconds: float, state: str = "countdown") -> None:
    from martian_doves.model import State
    from martian_doves.stores.postgres import PostgresStore

    store = PostgresStore(pg_url)
    try:
        payload: dict[str, Any] = {"count": ticks}
        if state == "countdown":
            payload["tick_seconds"] = tick_seconds
        results = store.submit([State(f"m{i:03d}.state", state, payload) for i in range(machines)])
        assert all(r.added for r in results)
    finally:
        store.close()


def assert_lineages_complete(pg_url: str, machines: int, ticks: int) -> None:
    """Every machine ran to its end, each successor written once: exactly the expected names, all done."""
    rows = db(pg_url, "SELECT name, parent, status, payload FROM states ORDER BY name")
    expected = {}
    for i in range(machines):
        root = f"m{i:03d}.state"
        for step in range(ticks):
            expected[root if step == 0 else f"{root}-{step}"] = (
                None if step == 0 else (root if step == 1 else f"{root}-{step - 1}"), ticks - step)
    found = {name: (parent, payload["count"]) for name, parent, _, payload in rows}
    assert found == expected, f"{len(found)} states, expected {len(expected)}"
    assert {status for _, _, status, _ in rows} == {"done"}
    assert_counters_match(pg_url)  # the counters too, after whatever the run went through


# -- the faults --------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_of_a_worker_mid_run_loses_nothing_and_doubles_nothing(pg_url: str, fleet: Fleet) -> None:
    submit_countdowns(pg_url, 30, 6, 0.03)
    victim = fleet.start("victim")
    fleet.start("survivor")
    fleet.go()
    wait_until(lambda: done_count(pg_url) >= 40, what="some progress")
    victim.kill()  # SIGKILL: no release, no unregister, claims left behind
    victim.wait()
    # Counted after the kill: before it, the victim could still commit what it held.
    held = db(pg_url, "SELECT count(*) FROM states WHERE status = 'in_progress' AND worker = 'victim'")[0][0]
    totals = fleet.wait("survivor")
    assert totals["crashed"] == 0
    assert_lineages_complete(pg_url, 30, 6)
    recovered = db(pg_url, "SELECT count(*) FROM states WHERE errors ? 'worker victim stopped renewing its lease'")
    assert recovered[0][0] >= held  # each claim it died holding was taken over, not lost


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_batch_loses_nothing_and_doubles_nothing(pg_url: str, fleet: Fleet) -> None:
    """Workers that claim 8 states at once and commit each round of them together."""
    submit_countdowns(pg_url, 40, 6, 0.02)
    batched = {"prefetch": 8, "concurrency": 1}
    victim = fleet.start("victim", worker=batched)
    fleet.start("survivor", worker=batched)
    fleet.go()
    held_by_victim = "SELECT count(*) FROM states WHERE status = 'in_progress' AND worker = 'victim'"
    wait_until(lambda: done_count(pg_url) >= 40 and db(pg_url, held_by_victim)[0][0] >= 2,
               what="progress, and a batch held by the victim")
    victim.kill()
    victim.wait()
    held = db(pg_url, held_by_victim)[0][0]
    totals = fleet.wait("survivor")
    assert totals["crashed"] == 0 and totals["lost"] == 0
    assert_lineages_complete(pg_url, 40, 6)
    recovered = db(pg_url, "SELECT count(*) FROM states WHERE errors ? 'worker victim stopped renewing its lease'")
    assert recovered[0][0] >= held > 0  # each claim of its batch was taken over, none lost


@pytest.mark.slow
def test_a_worker_cut_off_mid_tick_cannot_commit_after_its_claim_was_taken_over(
        pg_url: str, fleet: Fleet, tmp_path: Path) -> None:
    submit_countdowns(pg_url, 1, 2, 0, state="gated")
    gate = tmp_path / "release-stale"
    # Heartbeats far apart: the lease (1 s) runs out while the tick is stuck, as it would
    # for a worker cut off from the database.
    stale = fleet.start("stale", worker={"concurrency": 1}, tick_gate=gate, stalled_heartbeat_seconds=60.0)
    fleet.go()
    wait_until(lambda: db(pg_url, "SELECT worker FROM states WHERE status = 'in_progress'") == [("stale",)],
               what="the stale worker's claim")
    assert terminate_sessions(pg_url, stale.pid) >= 1  # its database connection is cut mid-tick
    wait_until(lambda: bool(db(pg_url, "SELECT 1 FROM states WHERE lease_expires < now()")), what="lease expiry")
    fleet.start("taker", worker={"concurrency": 1})
    taker = fleet.wait("taker")
    assert taker["committed"] == 2
    gate.touch()  # the stale tick finishes now and tries to commit
    stale_totals = fleet.wait("stale")
    assert (stale_totals["committed"], stale_totals["lost"]) == (0, 1)
    assert_lineages_complete(pg_url, 1, 2)
    [(worker, attempts, errors)] = db(pg_url, "SELECT worker, attempts, errors FROM states WHERE name = 'm000.state'")
    assert (worker, attempts, errors) == ("taker", 1, ["worker stale stopped renewing its lease"])


@pytest.mark.slow
def test_every_session_terminated_under_load_loses_and_doubles_nothing(pg_url: str, fleet: Fleet) -> None:
    submit_countdowns(pg_url, 40, 5, 0.01)
    for name in ("w1", "w2"):
        fleet.start(name, store={"lease_seconds": 3.0})
    fleet.go()
    terminated = 0
    for _ in range(6):  # a restart-like fault, over and over, while the fleet works
        wait_until(lambda: done_count(pg_url) > 0, what="progress")
        if done_count(pg_url) == 200:
            break
        terminated += terminate_sessions(pg_url)
        time.sleep(0.3)
    totals = [fleet.wait(name) for name in ("w1", "w2")]
    assert terminated > 0
    assert all(t["crashed"] == 0 and t["failed"] == 0 for t in totals)
    assert_lineages_complete(pg_url, 40, 5)


@pytest.fixture
def private_server() -> Iterator[PrivateServer]:
    try:
        server = PrivateServer()
    except RuntimeError as e:
        if os.environ.get("DOVES_REQUIRE_POSTGRES"):
            pytest.fail(f"cannot start a private PostgreSQL server: {e}")
        pytest.skip(f"cannot start a private PostgreSQL server: {e}")
    yield server
    server.close()


@pytest.mark.slow
def test_the_database_server_crashing_and_restarting_under_load_loses_and_doubles_nothing(
        private_server: PrivateServer, tmp_path: Path) -> None:
    url = f"{private_server.url}?schema=doves_restart"
    submit_countdowns(url, 60, 5, 0.05)
    fleet = Fleet(url, tmp_path)
    try:
        for name in ("w1", "w2"):
            fleet.start(name, store={"lease_seconds": 3.0})
        fleet.go()
        for progress in (40, 120):
            wait_until(lambda at=progress: done_count(url) >= at, what=f"{progress} transitions")
            private_server.crash()  # every session cut, commits in flight lost or not, nobody told
            time.sleep(1.0)  # the workers find the server gone for a while
            private_server.start()
        totals = [fleet.wait(name) for name in ("w1", "w2")]
    finally:
        fleet.stop_all()
    assert all(t["crashed"] == 0 and t["failed"] == 0 for t in totals)
    assert_lineages_complete(url, 60, 5)
    logs = "".join((tmp_path / f"{name}.log").read_text(errors="replace") for name in ("w1", "w2"))
    assert "database connection lost" in logs  # the workers did see the server go


@pytest.mark.slow
def test_two_worker_groups_sharing_only_the_database(pg_url: str, fleet: Fleet) -> None:
    submit_countdowns(pg_url, 60, 4, 0.01)
    groups: dict[str, dict[str, dict[str, Any]]] = {
        "chain-a": {"store": {}, "worker": {"chain": True}},
        "chain-b": {"store": {}, "worker": {"chain": True}},
        "batch-a": {"store": {"claim_batch": 4}, "worker": {"chain": False, "prefetch": 2}},
        "batch-b": {"store": {"claim_batch": 4}, "worker": {"chain": False, "prefetch": 2}},
    }
    for name, options in groups.items():
        fleet.start(name, store=options["store"], worker=options["worker"])
    fleet.go()
    totals = {name: fleet.wait(name) for name in groups}
    assert sum(t["committed"] for t in totals.values()) == 240
    assert sum(totals[n]["committed"] for n in ("chain-a", "chain-b")) > 0
    assert sum(totals[n]["committed"] for n in ("batch-a", "batch-b")) > 0
    assert_lineages_complete(pg_url, 60, 4)


if __name__ == "__main__":
    _worker_main(json.loads(sys.argv[1]))
