"""Machines for the benchmark's idle-latency probes (loaded with ``--machines``)."""

from __future__ import annotations

import os
import time
from typing import Any

from martian_doves import machine


@machine("probe")
def probe(payload: dict[str, Any]) -> None:
    """Record when the tick started, first thing, on a side channel (an append-only file)."""
    started = time.time()
    fd = os.open(payload["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{payload['id']} {started!r}\n".encode())
    finally:
        os.close(fd)
