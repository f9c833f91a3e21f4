"""``doves run`` with several worker processes: exact successors, every tick once, visible output."""

from __future__ import annotations

import collections
import json
import socket
from pathlib import Path

from acceptance_helpers import Doves, copy_seed_examples, read_ticks, write_state

#: States of the test machine ``counted`` and how many ticks each makes.
COUNTED = {f"c{i}": 5 for i in range(8)}


def test_four_workers_on_the_seed_examples(doves: Doves, store_dir: Path, machines_py: Path, tick_log: Path) -> None:
    copy_seed_examples(store_dir)
    for ident, count in COUNTED.items():
        write_state(store_dir, f"{ident}.state", "counted", {"id": ident, "count": count, "log": str(tick_log)})

    result = doves("run", str(store_dir), "--workers", "4", "--machines", str(machines_py))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr

    state_files = {p.name for p in store_dir.iterdir() if p.is_file()}
    expected = {
        "countdown.state", "goodbye.state", "hello.state", "howdoyoudo.state", "slowcountdown.state",
        *(f"countdown.state-{i}" for i in range(1, 5)),
        *(f"slowcountdown.state-{i}" for i in range(1, 5)),
        *(f"{ident}.state" for ident in COUNTED),
        *(f"{ident}.state-{i}" for ident, count in COUNTED.items() for i in range(1, count)),
    }
    assert state_files == expected

    # Every tick ran exactly once (no crash here, so not even at-least-once repeats).
    ticks = collections.Counter((ident, count) for ident, count, _, _ in read_ticks(tick_log))
    assert ticks == collections.Counter(
        {(ident, step): 1 for ident, count in COUNTED.items() for step in range(1, count + 1)}
    )
    status = doves.status(store_dir)
    assert (status["pending"], status["in_progress"], status["failed"]) == (0, 0, 0)
    assert status["done"] == len(expected)

    # Not a terminal: progress comes as log lines.
    assert "transitions/s" in result.stderr and "pending" in result.stderr

    # The machines' own output is visible at the default log level.
    for line in (" * From CountdownMachine: Counting down! 4 remaining.",
                 " * From SlowCountdownMachine: Counting down! 0 remaining.",
                 " * From SimpleMachine: I am saying Hello."):
        assert line in result.stderr


def test_submitted_states_run_once_with_many_workers(doves: Doves, store_dir: Path, tmp_path: Path,
                                                       machines_py: Path, tick_log: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for ident, count in COUNTED.items():
        write_state(incoming, f"{ident}.state", "counted", {"id": ident, "count": count, "log": str(tick_log)})
    submitted = doves("submit", str(store_dir), str(incoming), "--machines", str(machines_py))
    assert submitted.returncode == 0, submitted.stderr
    # A folder does not record a mode: submit names the folder and claims no mode for it.
    assert submitted.stdout.strip() == f"submitted {len(COUNTED)} state file(s) to {store_dir}"

    result = doves("run", str(store_dir), "--workers", "4", "--concurrency", "2", "--no-chain",
                   "--machines", str(machines_py))
    assert result.returncode == 0, result.stderr
    assert f"running 4 worker(s) on {store_dir} (lease mode)" in result.stderr
    ticks = collections.Counter((ident, count) for ident, count, _, _ in read_ticks(tick_log))
    assert set(ticks.values()) == {1} and len(ticks) == sum(COUNTED.values())


def test_worker_names_and_json_logs(doves: Doves, store_dir: Path) -> None:
    copy_seed_examples(store_dir)
    result = doves("run", str(store_dir), "--workers", "2", "--name", "fleet-a", "--log-format", "json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records
    for record in records:
        assert {"time", "level", "logger", "message", "worker", "action"} <= set(record)
        assert record["worker"].startswith("fleet-a-")
    machine_records = [r for r in records if r["logger"] == "martian_doves.machines"]
    assert any("Counting down! 4 remaining." in r["message"] for r in machine_records)
    # Each worker process has its own name: <prefix>-<pid>.
    spawned = {r["pid"] for r in records if r["action"] == "spawn"}
    assert len(spawned) == 2
    assert {r["worker"] for r in machine_records} <= {f"fleet-a-{pid}" for pid in spawned}


def test_json_logs_stay_json_when_machines_print(doves: Doves, store_dir: Path, machines_py: Path) -> None:
    """With --log-format json every line of the stream is a JSON object, a machine's print() too
    (wrapped as a record of the martian_doves.output logger, with the worker's name)."""
    write_state(store_dir, "talk.state", "chatty", {"id": "talk"})
    result = doves("run", str(store_dir), "--workers", "2", "--log-format", "json", "--machines", str(machines_py))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    printed = {r["message"]: r for r in records if r["logger"] == "martian_doves.output"}
    assert set(printed) == {"chatty says hello from talk", "chatty complains on stderr from talk"}
    assert all(r["worker"].startswith(f"{socket.gethostname()}-") for r in printed.values())
