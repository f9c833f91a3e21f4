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
