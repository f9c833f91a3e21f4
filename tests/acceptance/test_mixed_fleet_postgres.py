"""A fleet is only as narrow as its widest worker, on a PostgreSQL store.

Two ``doves run`` share one store, one started without the machine the states need (a host a
new machine module has not reached yet, in a rolling deploy). It never claims those states,
so none fails with ``unknown_state``; while it is the only one running, ``status`` says which
states no live worker can run (how many, since when); the worker with the machine runs them all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from acceptance_helpers import Doves, Running, write_state

pytest.importorskip("psycopg")

MACHINES = 40
TICKS = 3


def test_a_worker_without_the_machine_leaves_its_states_to_the_one_that_has_it(
        doves: Doves, start_doves: Callable[..., Running], machines_py: Path, tick_log: Path, tmp_path: Path,
        pg_url: str) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for index in range(MACHINES):
        write_state(incoming, f"probe-{index:02d}.state", "counted",
                    {"id": f"probe-{index:02d}", "count": TICKS, "log": str(tick_log)})
    submitted = doves("submit", pg_url, str(incoming), "--machines", str(machines_py))
    assert submitted.returncode == 0, submitted.stderr
    common = ("--workers", "2", "--poll-seconds", "0.2", "--no-progress")

    without = start_doves("run", pg_url, "--watch", *common)
    without.wait_for(lambda: _unrunnable(doves, pg_url) == MACHINES,
                     "status to say no live worker can run 'counted'")
    text = doves("status", pg_url)
    assert f"no live worker can run state counted: {MACHINES} pending, oldest since" in text.stdout, text.stdout
    assert _status(doves, pg_url)["done"] == 0  # it claimed none of them

    with_machine = start_doves("run", pg_url, *common, "--machines", str(machines_py))
    assert with_machine.wait() == 0, with_machine.output
    without.send(15)
    without.wait()
    status = _status(doves, pg_url)
    assert (status["done"], status["failed"], status["pending"], status["in_progress"]) == (MACHINES * TICKS, 0, 0, 0)
    assert "no_worker_for" not in status
    for output in (without.output, with_machine.output):
        assert "unknown_state" not in output and "Traceback" not in output


def _status(doves: Doves, url: str) -> dict[str, Any]:
    result = doves("status", url, "--json")
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def _unrunnable(doves: Doves, url: str) -> int:
    status = _status(doves, url)
    return sum(item["count"] for item in status.get("no_worker_for", []) if item["state"] == "counted")
