"""The PostgreSQL store's counters (migration 0006): what ``status`` reads instead of the table.

Each test drives the store through every kind of change a row can go through and checks
after each one that the counters equal a full ``GROUP BY`` of the table, and that
``status`` and the counts by state say what the rows say. The chaos tests check the same
after ``kill -9`` (``test_postgres_chaos_machines.py``).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

pytest.importorskip("psycopg")

from pgdb import assert_counters_match, db

from martian_doves.model import Failure, State, Status, Successor
from martian_doves.stores.postgres import PostgresStore
from martian_doves.stores.postgres.sql import Q


def reported(pg_url: str) -> Counter[str]:
    """Counts by status as ``status`` reports them, read from the rows themselves."""
    rows = db(pg_url, """
        SELECT CASE WHEN status = 'pending' AND not_before > now()
                    THEN CASE WHEN wait IS NULL THEN 'scheduled' ELSE 'waiting' END ELSE status END, count(*)
        FROM states GROUP BY 1""")
    return Counter({status: int(n) for status, n in rows})


def check(pg_url: str, pg_store: PostgresStore) -> None:
    assert_counters_match(pg_url)
    expected = reported(pg_url)
    report = pg_store.status()
    assert (report.pending, report.scheduled, report.waiting, report.in_progress, report.done, report.failed) == (
        expected["pending"], expected["scheduled"], expected["waiting"], expected["in_progress"],
        expected["done"], expected["failed"])
    by_state = {(state, status.value): n for state, counts in pg_store.counts_by_state().items()
                for status, n in counts.items()}
    rows = db(pg_url, """
        SELECT state, CASE WHEN status = 'pending' AND not_before > now()
                           THEN CASE WHEN wait IS NULL THEN 'scheduled' ELSE 'waiting' END ELSE status END, count(*)
        FROM states GROUP BY 1, 2""")
    assert by_state == {(state, status): int(n) for state, status, n in rows}


def test_counters_follow_every_kind_of_change(pg_url: str, pg_store: PostgresStore) -> None:
    pg_store.submit([State(f"c{i}.state", "countdown", {"count": 3}) for i in range(6)]
                 + [State("g.state", "green", {"cycles": 1})])
    check(pg_url, pg_store)
    pg_store.register_worker("w")
    first, second, third, fourth, fifth, sixth = pg_store.claim("w", 6, {"countdown"})
    check(pg_url, pg_store)
    kept = pg_store.commit(first, Successor("countdown", {"count": 2}), keep=True)  # chained: claimed at once
    assert kept is not None
    pg_store.commit(kept, None)
    pg_store.commit(second, Successor("countdown", {"count": 2}))  # left pending for anyone
    pg_store.commit(third, Successor("countdown", {"count": 2}, not_before=time.time() + 3600))  # a timer
    check(pg_url, pg_store)
    pg_store.retry_later(fourth, 3600, "boom")  # scheduled, a failed attempt
    pg_store.fail(fifth, Failure("tick_failed", "gave up", None, 3, ()))
    pg_store.release(sixth)
    check(pg_url, pg_store)
    assert pg_store.worker_exited("w", "was killed") == 0
    pg_store.register_worker("w2")
    claims = pg_store.claim("w2", 10)
    pg_store.worker_exited("w2", "was killed")  # what it held is pending again, an attempt used
    check(pg_url, pg_store)
    assert pg_store.retry_failed() == 1
    check(pg_url, pg_store)
    for claim in pg_store.claim("w3", 20):
        pg_store.fail(claim, Failure("tick_failed", "gave up", None, 1, ()))
    check(pg_url, pg_store)
    assert pg_store.forget([claims[0].name]) > 0  # a whole settled machine's rows deleted
    check(pg_url, pg_store)
    for worker in ("w", "w2", "w3"):
        pg_store.unregister_worker(worker)
    assert pg_store.reset(successors=True) > 0
    check(pg_url, pg_store)


def test_counters_ignore_what_changes_no_count(pg_url: str, pg_store: PostgresStore) -> None:
    """Heartbeats, payload edits and a no-op update add no delta (the trigger is selective)."""
    pg_store.submit([State("h.state", "countdown", {"count": 3})])
    [claim] = pg_store.claim("w", 1)
    before = db(pg_url, "SELECT count(*) FROM state_count_deltas")
    pg_store.heartbeat("w", [claim])  # folds the deltas, renews the lease
    db(pg_url, "UPDATE states SET payload = '{\"count\": 4}', status = status")
    assert db(pg_url, "SELECT count(*) FROM state_count_deltas") == [(0,)] and before != [(0,)]
    check(pg_url, pg_store)


def test_folding_moves_the_deltas_into_the_totals(pg_url: str, pg_store: PostgresStore) -> None:
    pg_store.submit([State(f"f{i}.state", "countdown", {"count": 1}) for i in range(5)])
    for claim in pg_store.claim("w", 5):
        pg_store.commit(claim, None)
    assert db(pg_url, "SELECT count(*) > 0 FROM state_count_deltas") == [(True,)]
    pg_store.unregister_worker("w")
    assert db(pg_url, "SELECT count(*) FROM state_count_deltas") == [(0,)]
    assert db(pg_url, "SELECT state, status, worker, n FROM state_counts WHERE n <> 0") == [
        ("countdown", "done", "w", 5)]
    assert pg_store.status().done == 5


def test_a_store_migrated_with_states_counts_them(pg_url: str, pg_store: PostgresStore) -> None:
    """Migration 0006 counts the rows already there (a store made by an earlier release)."""
    pg_store.submit([State(f"m{i}.state", "countdown", {"count": 1}) for i in range(3)])
    for claim in pg_store.claim("w", 2):
        pg_store.commit(claim, None)
    db(pg_url, "DROP TABLE state_counts, state_count_deltas CASCADE; DROP FUNCTION count_states() CASCADE; "
               "DELETE FROM schema_version WHERE version >= 6")
    pg_store.migrate()
    check(pg_url, pg_store)
    assert pg_store.status().done == 2 and pg_store.status().pending == 1
    assert Status.DONE in pg_store.counts_by_state()["countdown"]


def _rows_read_from_states(pg_url: str, query: str) -> int:
    """Rows the plan of ``query`` read from the states table (``EXPLAIN ANALYZE``'s actual rows)."""
    [(plan,)] = db(pg_url, f"EXPLAIN (ANALYZE, FORMAT JSON) {query}")

    def walk(node: dict[str, object]) -> int:
        own = int(node["Actual Rows"]) * int(node["Actual Loops"]) if node.get("Relation Name") == "states" else 0
        children = node.get("Plans", [])
        assert isinstance(children, list)
        return own + sum(walk(child) for child in children)

    return walk(plan[0]["Plan"])


def _add_scheduled(pg_url: str, state: str, count: int, seconds: int) -> None:
    """``count`` root states of ``state`` not due for ``seconds``, inserted as a timer's commit
    leaves them (the counters' trigger counts them)."""
    db(pg_url, """
        INSERT INTO states (name, root, state, payload, not_before)
        SELECT n, n, %(state)s, '{}'::jsonb, now() + %(seconds)s * interval '1 second'
        FROM (SELECT %(state)s || i || '.state' AS n FROM generate_series(1, %(count)s) AS i) AS g""",
       {"state": state, "seconds": seconds, "count": count})


def test_status_reads_what_is_due_not_what_is_scheduled(pg_url: str, pg_store: PostgresStore) -> None:
    """A progress display or a metrics scrape samples ``status`` every second: with many timers
    scheduled it costs the rows due now, never a scan of the scheduled ones."""
    _add_scheduled(pg_url, "far", 3000, 86_400)
    pg_store.submit([State(f"now{i}.state", "countdown", {"count": 1}) for i in range(5)])
    pg_store.register_worker("w")
    [claim] = pg_store.claim("w", 1)
    pg_store.commit(claim, Successor("countdown", {"count": 0}, not_before=time.time() + 3600))
    check(pg_url, pg_store)
    assert pg_store.status().scheduled == 3001
    assert _rows_read_from_states(pg_url, Q["counts"]) < 100
    assert _rows_read_from_states(pg_url, Q["counts_by_state"]) < 100


def test_status_counts_a_backlog_of_due_states_and_timers(pg_url: str, pg_store: PostgresStore) -> None:
    """Past 10,000 due rows the rows not due yet are counted instead: the counts stay exact."""
    _add_scheduled(pg_url, "now", 10_050, 0)  # due now: a backlog
    _add_scheduled(pg_url, "far", 20, 86_400)  # and a few timers
    check(pg_url, pg_store)
    report = pg_store.status()
    assert (report.pending, report.scheduled) == (10_050, 20)
