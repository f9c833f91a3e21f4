"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from martian_doves.stores.postgres import PostgresStore


@pytest.fixture(params=["folder", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store to run ``doves`` against: an empty folder, or a fresh PostgreSQL schema's URL."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    store = tmp_path / "store"
    store.mkdir()
    return str(store)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[PostgresStore]:
    """A PostgreSQL store on a fresh schema that never waits long for a NOTIFY."""
    pytest.importorskip("psycopg")
    from martian_doves.config import PostgresOptions
    from martian_doves.stores.postgres import PostgresStore

    opened = PostgresStore(pg_url, PostgresOptions(poll_seconds=60.0))
    yield opened
    opened.close()
