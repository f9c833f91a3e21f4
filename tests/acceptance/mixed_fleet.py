"""A fleet is only as narrow as its widest worker: the run every store's mixed-fleet test makes.

Two ``doves run`` share one store, one started without the machine the states need (a host a
new machine module has not reached yet, in a rolling deploy). It never claims those states,
so none fails with ``unknown_state``; while it is the only one running, ``status`` says which
states no live worker can run (how many, since when); the worker with the machine runs them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from acceptance_helpers import Doves, Running, write_state

MACHINES = 40
TICKS = 3


def run_mixed_fleet(doves: Doves, start_doves: Callable[..., Running], store: str, machines_py: Path,
                    tick_log: Path, tmp_path: Path, options: Sequence[str] = ()) -> None:
    """Submit ``MACHINES`` countdowns to ``store``, run them on a mixed fleet, check every one ran."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for index in range(MACHINES):
        write_state(incoming, f"probe-{index:02d}.state", "counted",
                    {"id": f"probe-{index:02d}", "count": TICKS, "log": str(tick_log)})
    submitted = doves("submit", store, str(incoming), "--machines", str(machines_py))
    assert submitted.returncode == 0, submitted.stderr
    common = ("--workers", "2", "--poll-seconds", "0.2", "--no-progress", *options)

    without = start_doves("run", store, "--watch", *common)
    without.wait_for(lambda: _unrunnable(doves, store) == MACHINES, "status to say no live worker can run 'counted'")
    text = doves("status", store)
    assert f"no live worker can run state counted: {MACHINES} pending, oldest since" in text.stdout, text.stdout
    assert doves.status(store)["done"] == 0  # it claimed none of them

    with_machine = start_doves("run", store, *common, "--machines", str(machines_py))
    assert with_machine.wait() == 0, with_machine.output
    without.send(15)
    without.wait()
    status = doves.status(store)
    assert (status["done"], status["failed"], status["pending"], status["in_progress"]) == (MACHINES * TICKS, 0, 0, 0)
    assert "no_worker_for" not in status
    for output in (without.output, with_machine.output):
        assert "unknown_state" not in output and "Traceback" not in output


def _unrunnable(doves: Doves, store: str) -> int:
    status = doves.status(store)
    return sum(item["count"] for item in status.get("no_worker_for", []) if item["state"] == "counted")
