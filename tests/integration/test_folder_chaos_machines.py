"""Chaos with real processes on a folder store (both modes): machines wait, take events, fire timers, spawn, join.

The folder version of ``test_postgres_chaos_machines.py``, with its machines (``order_machines.py``):
workers holding claims are killed with ``kill -9`` at random and replaced while ``doves send``,
run as a process of its own, sends each order its payment (half before any worker runs, half
meanwhile). Afterwards every machine ended exactly once, down the one lineage it should have (no
``~N`` branch, no second set of children, one join), every event was delivered once, to the wait
it was sent for, and nothing is left pending, scheduled, waiting or claimed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from order_chaos import PAID_STATES, STORE_OPTIONS, UNPAID_STATES, attack, orders, report
from order_machines import ITEMS
from procs import HANG_GUARD_SECONDS, semaphore_options

from martian_doves.config import DirectoryOptions
from martian_doves.model import Status
from martian_doves.stores.directory import LeaseStore
from martian_doves.stores.directory.layout import Layout

ORDERS = 16
#: Orders nobody pays: their wait times out and they are cancelled.
UNPAID = 4


def _send_payments(store: Path, paid: list[str], rng: random.Random, errors: list[Any]) -> None:
    """``doves send`` for each order, one process each, as a shop's backend would."""
    for root in paid:
        sent = subprocess.run([sys.executable, "-m", "martian_doves", "send", str(store), root, "payment",
                               "--data", f'{{"to": "{root}"}}'], capture_output=True, text=True,
                              timeout=HANG_GUARD_SECONDS, stdin=subprocess.DEVNULL)
        if sent.returncode != 0:
            errors.append(f"send to {root}: {sent.stderr.strip()}")
        time.sleep(rng.uniform(0.0, 0.2))


def _holders(store: Path) -> set[str]:
    """The workers holding a claim now."""
    layout = Layout(store, create=False)
    try:
        return {layout.read_claim_entry(entry).worker or "?" for entry in os.listdir(store / "in_progress")}
    finally:
        layout.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["lease", "semaphore"])
def test_kill_9_while_machines_wait_listen_spawn_and_join_on_a_folder(tmp_path: Path, mode: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    log = tmp_path / "executions.log"
    paid = [f"o{i:02d}.state" for i in range(ORDERS)]
    unpaid = [f"u{i:02d}.state" for i in range(UNPAID)]
    opened = LeaseStore(store, DirectoryOptions(lease_seconds=1.0))
    try:
        assert all(result.added for result in opened.submit(orders(log, paid, unpaid)))
    finally:
        opened.close()

    def send(roots: list[str], rng: random.Random, errors: list[Any]) -> None:
        _send_payments(store, roots, rng, errors)

    options = STORE_OPTIONS if mode == "lease" else semaphore_options(**STORE_OPTIONS)
    kills = attack(tmp_path, store, mode, paid, send, lambda: _holders(store), options)
    _check_store(store, paid, unpaid)
    report(log, capsys, f"folder, {mode}", kills)


def _lineage(store: LeaseStore, root: str) -> list[tuple[str, str, dict[str, Any]]]:
    steps = store.history(root)
    assert steps and steps[0].name == root
    assert all(step.status is Status.DONE for step in steps), [(s.name, s.status) for s in steps]
    return [(step.name, step.state, step.payload or {}) for step in steps]


def _check_store(path: Path, paid: list[str], unpaid: list[str]) -> None:
    store = LeaseStore(path, DirectoryOptions(lease_seconds=1.0))
    try:
        status = store.status()
        assert (status.pending, status.scheduled, status.waiting, status.in_progress, status.failed) == (0,) * 5, \
            status
        names = [p.name for p in path.iterdir() if p.is_file()]
        assert not [name for name in names if "~" in name], "a successor or child written twice"
        for root in paid:
            mailbox = sorted(p.name for p in (path / "mailboxes" / root).iterdir())
            assert mailbox == [f"0000000001@{root}-1"], (root, mailbox)  # sent once, taken once, by its wait
        expected = 0
        for root in paid:
            chain = _lineage(store, root)
            assert [state for _, state, _ in chain] == PAID_STATES, (root, [name for name, _, _ in chain])
            assert chain[2][2]["event"] == {"name": "payment", "data": {"to": root}}
            spawner = chain[3][0]
            children = chain[-1][2]["children"]
            assert [(c["name"], c["status"]) for c in children] == [(f"{spawner}+{i}.state", "done")
                                                                    for i in range(ITEMS)]
            for index in range(ITEMS):
                child = _lineage(store, f"{spawner}+{index}.state")
                assert [payload["count"] for _, _, payload in child] == [2, 1]
                expected += len(child)
            expected += len(chain)
        for root in unpaid:
            chain = _lineage(store, root)
            assert [state for _, state, _ in chain] == UNPAID_STATES, (root, [name for name, _, _ in chain])
            expected += len(chain)
        assert status.done == expected == len(names), (status.done, expected, len(names))
    finally:
        store.close()

