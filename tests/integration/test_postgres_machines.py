"""What timers and waits cost a PostgreSQL store: what is due, never what is scheduled or waiting.

Read from the server's own accounting (``EXPLAIN (ANALYZE, BUFFERS)``: pages touched), not
from a clock, so the checks hold on a loaded machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("psycopg")

from pgdb import db

from martian_doves.model import WAIT_STATE, State, Successor, WaitFor
from martian_doves.stores.postgres import PostgresStore, Q, parse_url

#: Timers and waits in the table while the claim and the next-due look-up run.
SCHEDULED = 100_000


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(pg_url)
    yield opened
    opened.close()


def pages(pg_url: str, query: str, params: dict[str, Any]) -> int:
    """Buffer pages a statement touched (hit or read), as the server counts them; its changes undone."""
    import psycopg

    conninfo, options, _ = parse_url(pg_url)
    with psycopg.connect(conninfo, options=f"-c search_path={options.schema}") as conn:  # a transaction
        row = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}", params).fetchone()
        conn.rollback()
    assert row is not None
    plan = row[0]
    root = (plan if isinstance(plan, list) else json.loads(plan))[0]
    return int(root["Plan"].get("Shared Hit Blocks", 0)) + int(root["Plan"].get("Shared Read Blocks", 0))


def test_many_timers_and_waits_cost_the_claim_and_the_idle_wait_nothing(pg_url: str, store: PostgresStore) -> None:
    """With 100,000 timers an hour ahead and 100,000 waits for events, finding the one due state
    and the next due time touches a handful of pages, as on an empty table."""
    db(pg_url, "INSERT INTO states (name, root, state, payload, not_before) "
               "SELECT 't' || i || '.state', 't' || i || '.state', 'count', '{}', now() + interval '1 hour' "
               "FROM generate_series(1, %(n)s) AS i", {"n": SCHEDULED})
    db(pg_url, "INSERT INTO states (name, root, parent, step, state, payload, wait, not_before) "
               "SELECT 'w' || i || '.state-1', 'w' || i || '.state', 'w' || i || '.state', 1, %(wait)s, '{}', "
               "'{\"then\": \"paid\", \"event\": \"payment\"}', 'infinity' FROM generate_series(1, %(n)s) AS i",
               {"n": SCHEDULED, "wait": WAIT_STATE})
    db(pg_url, "ANALYZE states")
    assert db(pg_url, Q["next_due"])[0][0] > 3000  # the timers, an hour ahead; the waits never count
    store.submit([State("due.state", "count", {})])
    claim = {"limit": 1, "worker": "w", "batch": "b", "lease": 30.0, "states": None}
    assert pages(pg_url, Q["next_due"], {}) < 20  # a full scan would touch thousands
    assert pages(pg_url, Q["claim"], claim) < 40
    [claimed] = db(pg_url, Q["claim"], claim)
    assert claimed[0] == "due.state"
    status = store.status()
    assert (status.pending, status.scheduled, status.waiting, status.in_progress) == (0, SCHEDULED, SCHEDULED, 1)
    assert not store.is_finished()  # the timers are still to fire


def test_waits_that_only_an_event_can_end_leave_no_next_due_time(pg_url: str, store: PostgresStore) -> None:
    """A store whose only open states wait for events has nothing due, ever: the idle wait is a plain
    wait for a wake-up (and the store counts as finished)."""
    store.submit([State("o.state", "place", {})])
    [claim] = store.claim("w", 1)
    store.commit(claim, Successor(WAIT_STATE, {}, wait=WaitFor("paid", event="payment")))
    assert db(pg_url, Q["next_due"]) == [(None,)]
    assert store.is_finished()
    store.wait_for_work(0.01)
