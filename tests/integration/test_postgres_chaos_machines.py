"""Chaos with real processes on PostgreSQL while machines wait, receive events, fire timers, spawn and join.

Workers holding claims are killed with ``kill -9`` at random and replaced while the test sends
each order its payment (half before any worker runs, half meanwhile). Afterwards every machine
ended exactly once, down the one lineage it should have (no ``~N`` branch, no second set of
children, one join), every event was delivered once, to the wait it was sent for, and nothing
is left pending, scheduled, waiting or claimed. Ticks run at least once: a kill may make one
run again, which the execution log shows and the test reports.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("psycopg")

from order_chaos import PAID_STATES, STORE_OPTIONS, UNPAID_STATES, attack, orders, report
from order_machines import ITEMS
from pgdb import assert_counters_match, db

from martian_doves.stores import open_store

ORDERS = 24
#: Orders nobody pays: their wait times out and they are cancelled.
UNPAID = 6


def _send_payments(url: str, paid: list[str], rng: random.Random, errors: list[Any]) -> None:
    opened = open_store(url)
    try:
        for root in paid:
            opened.send(root, "payment", {"to": root})
            time.sleep(rng.uniform(0.0, 0.25))
    except BaseException as e:  # reported by the test
        errors.append(e)
    finally:
        opened.close()


def _holders(url: str) -> set[str]:
    return {row[0] for row in db(url, "SELECT DISTINCT worker FROM states WHERE status = 'in_progress'")}


@pytest.mark.slow
def test_kill_9_while_machines_wait_listen_spawn_and_join(pg_url: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "executions.log"
    paid = [f"o{i:02d}.state" for i in range(ORDERS)]
    unpaid = [f"u{i:02d}.state" for i in range(UNPAID)]
    opened = open_store(pg_url, **STORE_OPTIONS)
    try:
        assert all(result.added for result in opened.submit(orders(log, paid, unpaid)))
    finally:
        opened.close()

    def send(roots: list[str], rng: random.Random, errors: list[Any]) -> None:
        _send_payments(pg_url, roots, rng, errors)

    kills = attack(tmp_path, pg_url, "postgres", paid, send, lambda: _holders(pg_url))
    _check_store(pg_url, paid, unpaid)
    report(log, capsys, "postgres", kills)


def _lineage(url: str, root: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, state, payload) of each state of a machine, in order, following its parents from the root."""
    rows = db(url, "SELECT name, state, payload, parent FROM states WHERE root = %s", (root,))
    chain: list[tuple[str, str, dict[str, Any]]] = []
    current: str | None = root
    while current is not None:
        (name, state, payload, _), = [row for row in rows if row[0] == current]
        chain.append((name, state, payload))
        following = [row[0] for row in rows if row[3] == current]
        assert len(following) <= 1, f"{current} has {len(following)} successors: {following}"
        current = following[0] if following else None
    assert len(chain) == len(rows), f"{root}: states outside its lineage: {sorted(r[0] for r in rows)}"
    return chain


def _check_store(url: str, paid: list[str], unpaid: list[str]) -> None:
    assert_counters_match(url)  # kept in the transactions that kill -9 cut short too
    counts = dict(db(url, "SELECT status, count(*) FROM states GROUP BY status"))
    assert set(counts) == {"done"}, counts  # nothing pending, scheduled, waiting, claimed or failed
    assert db(url, "SELECT name FROM states WHERE name LIKE '%%~%%'") == [], "a successor or child written twice"
    events = db(url, "SELECT machine, name, data, taken_by FROM events ORDER BY seq")
    assert sorted(events) == sorted((root, "payment", {"to": root}, f"{root}-1") for root in paid), events
    expected = 0
    for root in paid:
        chain = _lineage(url, root)
        assert [state for _, state, _ in chain] == PAID_STATES, (root, [name for name, _, _ in chain])
        assert chain[2][2]["event"] == {"name": "payment", "data": {"to": root}}
        spawner = chain[3][0]
        children = chain[-1][2]["children"]
        assert [(c["name"], c["status"]) for c in children] == [(f"{spawner}+{i}.state", "done") for i in range(ITEMS)]
        for index in range(ITEMS):
            child = _lineage(url, f"{spawner}+{index}.state")
            assert [payload["count"] for _, _, payload in child] == [2, 1]
            expected += len(child)
        expected += len(chain)
    for root in unpaid:
        chain = _lineage(url, root)
        assert [state for _, state, _ in chain] == UNPAID_STATES, (root, [name for name, _, _ in chain])
        expected += len(chain)
    assert counts["done"] == expected, (counts, expected)
