"""User machines for chaos tests of machines that wait, listen and branch.

Loaded by worker processes the way a user's file is. An order waits for its payment (an
event the test sends), then a timer, then spawns ``ITEMS`` items and joins them; an order
nobody pays times out and is cancelled. Every tick first sleeps ``sleep`` seconds (its work,
long enough for a kill to land on it), then appends one line to the log named in its payload
(as ``counting_machines`` does: lines from many processes never mix)::

    <machine id> <state> <pid> <detail>
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from counting_machines import _append  # the worker processes run from this folder

from martian_doves import machine
from martian_doves.contract import Next, Spawn, Wait

#: How many items an order spawns.
ITEMS = 3


def _log(payload: dict[str, Any], state: str, detail: Any = "-") -> None:
    time.sleep(payload.get("sleep", 0))
    _append(payload["log"], f"{payload['id']} {state} {os.getpid()} {json.dumps(detail, separators=(',', ':'))}\n")


@machine("order")
def order(payload: dict[str, Any]) -> Wait:
    _log(payload, "order")
    return Wait("payment", then="paid", timeout=payload["timeout"], on_timeout="cancelled", payload=payload)


@machine("paid")
def paid(payload: dict[str, Any]) -> Next:
    _log(payload, "paid", payload["event"]["data"])
    return Next("shipped", {key: value for key, value in payload.items() if key != "event"}, after=0.3)


@machine("shipped")
def shipped(payload: dict[str, Any]) -> Spawn:
    _log(payload, "shipped")
    items = [("item", {"id": f"{payload['id']}/{index}", "log": payload["log"], "sleep": payload["sleep"], "count": 2})
             for index in range(ITEMS)]
    return Spawn(items, then="collected", payload=payload)


@machine("item")
def item(payload: dict[str, Any]) -> dict[str, Any] | None:
    _log(payload, "item", payload["count"])
    return None if payload["count"] <= 1 else {**payload, "count": payload["count"] - 1}


@machine("collected")
def collected(payload: dict[str, Any]) -> None:
    _log(payload, "collected", [(child["status"], child["payload"].get("count")) for child in payload["children"]])


@machine("cancelled")
def cancelled(payload: dict[str, Any]) -> None:
    _log(payload, "cancelled")
