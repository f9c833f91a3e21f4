"""User machines for the integration tests: they count their own executions.

Loaded by worker processes the way a user's file is (``default_registry([path])``).
Every tick of ``counted-countdown`` appends one line to the log file named in its
payload when it has done its work, just before returning::

    <machine id> <count> <pid> <wall time>

The file is opened with ``O_APPEND`` and each line is one ``os.write``, so lines
from many processes never interleave. From the log a test proves that no
transition was lost (every ``(id, count)`` is there) and counts duplicates (a
tick cut off by a kill after its line was written runs again: at-least-once).
"""

from __future__ import annotations

import os
import time
from typing import Any

from martian_doves import machine


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _wait_for(path: str) -> None:
    """Hold the tick until the test creates ``path`` (a run it adds work to stays running meanwhile)."""
    deadline = time.monotonic() + 120.0  # a hang guard: the test opens the gate long before
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {path} never opened")
        time.sleep(0.02)


@machine("counted-countdown")
def counted_countdown(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Like the seed's countdown: ``count`` ticks in all, one log line per tick.

    Payload: ``id`` (machine id), ``count`` (ticks left, this one included),
    ``log`` (execution log path), optional ``tick_seconds`` (sleep per tick) and optional
    ``gate`` (a path: each tick waits until it exists).
    """
    count = int(payload["count"])
    gate = payload.get("gate")
    if isinstance(gate, str):
        _wait_for(gate)
    seconds = payload.get("tick_seconds", 0)
    if isinstance(seconds, int | float) and seconds > 0:
        time.sleep(float(seconds))
    _append(payload["log"], f"{payload['id']} {count} {os.getpid()} {time.time():.6f}\n")
    if count <= 1:
        return None
    return {**payload, "count": count - 1}
