"""The chaos run the machine-model chaos tests of every store share (``order_machines.py``'s orders).

Orders are submitted, half of them paid before any worker runs; then a fleet runs while the
other half is paid and workers holding claims are killed with ``kill -9`` and replaced. What
a store keeps, and how to read it back, is each test's own.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from procs import HANG_GUARD_SECONDS, Fleet
from test_chaos import CHAOS_RETRY

from martian_doves.model import JOIN_STATE, WAIT_STATE, State

MACHINES_FILE = Path(__file__).resolve().parent / "order_machines.py"
#: The lineage of a paid order: order, its wait, paid, shipped (after a timer), the join, collected.
PAID_STATES = ["order", WAIT_STATE, "paid", "shipped", JOIN_STATE, "collected"]
UNPAID_STATES = ["order", WAIT_STATE, "cancelled"]
STORE_OPTIONS = {"lease_seconds": 1.0}
WORKER_OPTIONS = {"heartbeat_seconds": 0.2, "poll_seconds": 0.2, "retry": CHAOS_RETRY}
#: How long workers are killed for, seconds.
ATTACK_SECONDS = 8.0


def orders(log: Path, paid: list[str], unpaid: list[str]) -> list[State]:
    """The order machines: the paid ones wait long for their payment, the unpaid ones time out."""
    def order(root: str, timeout: float) -> State:
        return State(root, "order", {"id": root.removesuffix(".state"), "log": str(log), "timeout": timeout,
                                     "sleep": 0.05})
    return [order(root, 600) for root in paid] + [order(root, 2) for root in unpaid]


#: Sends each order of a list its payment (``rng`` spaces them; failures go to the list given).
Sender = Callable[[list[str], random.Random, list[Any]], None]


def attack(tmp_path: Path, store: Path | str, mode: str, paid: list[str], send: Sender,
           holders: Callable[[], set[str]], store_options: Mapping[str, Any] = STORE_OPTIONS) -> int:
    """Pay half the orders, run a fleet while paying the rest and killing workers that hold claims;
    wait for the fleet to finish healthy. Returns how many workers were killed."""
    rng = random.Random(9)
    errors: list[Any] = []
    send(paid[: len(paid) // 2], rng, errors)  # these events wait for their waits
    kills = 0
    with Fleet(tmp_path, store, mode, store_options=store_options, worker_options=WORKER_OPTIONS,
               machines=[MACHINES_FILE]) as fleet:
        fleet.start_many(3)
        sender = threading.Thread(target=send, args=(paid[len(paid) // 2:], rng, errors))
        sender.start()
        deadline = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < deadline:
            held = holders()
            victims = [proc for proc in fleet.running() if proc.name in held]
            if victims:
                rng.choice(victims).kill()
                kills += 1
                fleet.start()
            time.sleep(rng.uniform(0.2, 0.5))
        sender.join(HANG_GUARD_SECONDS)
        assert not errors, errors
        survivors = fleet.running()
        for proc in survivors:
            proc.wait()
        fleet.assert_healthy(exited=[proc.name for proc in survivors])
    return kills


def report(log: Path, capsys: pytest.CaptureFixture[str], what: str, kills: int) -> None:
    """Say how many kills landed and how many ticks ran again; fail if the attack did not happen."""
    executions = Counter(tuple(line.split()[:2]) + tuple(line.split()[3:]) for line in log.read_text().splitlines())
    duplicates = sum(count - 1 for count in executions.values())
    with capsys.disabled():
        print(f"\n    {what}: {kills} workers killed holding claims; {duplicates} tick(s) ran again", end="")
    assert kills >= 3, f"only {kills} kill(s) landed on a worker holding claims: the attack did not happen"
