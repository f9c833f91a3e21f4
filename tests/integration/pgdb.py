"""Direct SQL on a test's PostgreSQL schema, for tests that inspect or damage rows."""

from __future__ import annotations

from typing import Any


def db(pg_url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run ``query`` in the store's schema on a connection of its own; the rows, if any."""
    import psycopg  # here, so collecting the tests works without the postgres extra

    from martian_doves.stores.postgres import parse_url

    conninfo, options, _ = parse_url(pg_url)
    with psycopg.connect(conninfo, autocommit=True, options=f"-c search_path={options.schema}") as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def assert_counters_match(pg_url: str) -> None:
    """The schema's counters (migration 0006) equal a full GROUP BY of the states table."""
    counted = db(pg_url, """
        SELECT state, status, worker, sum(n)::bigint FROM (
            SELECT state, status, worker, n FROM state_counts
            UNION ALL SELECT state, status, worker, n FROM state_count_deltas) AS c
        GROUP BY 1, 2, 3 HAVING sum(n) <> 0""")
    actual = db(pg_url, """
        SELECT state, status, CASE WHEN status IN ('done', 'failed') THEN coalesce(worker, '') ELSE '' END,
               count(*)::bigint
        FROM states GROUP BY 1, 2, 3""")
    assert sorted(counted) == sorted(actual)
