"""The machines ``doves bench`` loads into its fleet: the idle-latency probe, a timer, a fan-out.

Each measuring tick takes the time in its first statement and appends it to a side
channel (a file named in the payload), so the driver learns when the tick started, as
the peers' harness does with a Redis list or a NOTIFY.
"""

from __future__ import annotations

import os
import time

from martian_doves.contract import Next, Spawn
from martian_doves.model import JSONDict
from martian_doves.registry import machine

#: The probe's state name.
PROBE_STATE = "doves-bench-probe"
#: ``--scenario timers``: arms a timer, which runs ``TIMER_FIRED_STATE`` when due.
TIMER_STATE = "doves-bench-timer"
TIMER_FIRED_STATE = "doves-bench-timer-fired"
#: ``--scenario fanout``: spawns children, joined by ``JOINED_STATE``.
FANOUT_STATE = "doves-bench-fanout"
CHILD_STATE = "doves-bench-child"
JOINED_STATE = "doves-bench-joined"


def _append(path: str, line: str) -> None:
    """Append one line to the side channel ``path`` (one write: lines of several workers never mix)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@machine(PROBE_STATE)
def probe(payload: JSONDict) -> None:
    """Append ``<id> <time the tick started> <process id>`` to the file ``payload["log"]``, then end."""
    started = time.time()
    _append(str(payload["log"]), f"{payload['id']} {started!r} {os.getpid()}")


@machine(TIMER_STATE)
def timer(payload: JSONDict) -> Next:
    """Run ``TIMER_FIRED_STATE`` ``payload["after"]`` seconds from now, its due time in its payload.

    The due time is given as ``at=`` so that the one the store keeps is exactly the one
    the fired tick compares its start with (``after=`` counts from the tick's end).
    """
    due = time.time() + float(payload["after"])
    return Next(TIMER_FIRED_STATE, {**payload, "due": due}, at=due)


@machine(TIMER_FIRED_STATE)
def timer_fired(payload: JSONDict) -> None:
    """Append ``<id> <seconds after its due time the tick started>`` to ``payload["log"]``, if given."""
    started = time.time()
    if "log" in payload:
        _append(str(payload["log"]), f"{payload['id']} {started - float(payload['due'])!r}")


@machine(FANOUT_STATE)
def fanout(payload: JSONDict) -> Spawn:
    """Start ``payload["children"]`` children that end at once; ``JOINED_STATE`` after the last."""
    children: list[tuple[str, JSONDict]] = [(CHILD_STATE, {}) for _ in range(int(payload["children"]))]
    return Spawn(children, then=JOINED_STATE, payload={"log": payload["log"]})


@machine(CHILD_STATE)
def child(payload: JSONDict) -> None:
    """A child of the fan-out: ends at once, so the figure is the store's cost of a child."""


@machine(JOINED_STATE)
def joined(payload: JSONDict) -> None:
    """Append ``<time the tick started> <children> <children done>`` to ``payload["log"]``."""
    started = time.time()
    children = payload["children"]
    done = sum(1 for entry in children if entry["status"] == "done")
    _append(str(payload["log"]), f"{started!r} {len(children)} {done}")
