"""The machine of the idle-latency probes, which ``doves bench`` loads into its fleet.

Its first statement takes the time; the tick appends it to a side channel (a file
named in the payload), so the driver learns when the tick started, as the peers'
harness does with a Redis list or a NOTIFY.
"""

from __future__ import annotations

import os
import time

from martian_doves.model import JSONDict
from martian_doves.registry import machine

#: The probe's state name.
PROBE_STATE = "doves-bench-probe"


@machine(PROBE_STATE)
def probe(payload: JSONDict) -> None:
    """Append ``<id> <time the tick started> <process id>`` to the file ``payload["log"]``, then end."""
    started = time.time()
    fd = os.open(str(payload["log"]), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{payload['id']} {started!r} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
