"""Shared fixtures: a clean environment, temporary stores, and a fresh PostgreSQL schema.

PostgreSQL is found through ``DOVES_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Tests that need it skip with a visible
reason when no server answers, unless ``DOVES_REQUIRE_POSTGRES=1`` (set by ``.ci/run``),
in which case they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
EXAMPLES = Path(__file__).resolve().parent.parent / "martian_doves" / "examples"


@pytest.fixture(autouse=True)
def _clean_doves_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DOVES_* variable from the caller's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("DOVES_") and key not in ("DOVES_TEST_POSTGRES_URL", "DOVES_REQUIRE_POSTGRES",
                                                     "DOVES_REQUIRE_BROWSER"):
            monkeypatch.delenv(key)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """An empty folder to use as a directory store."""
    path = tmp_path / "store"
    path.mkdir()
    return path


def _postgres_server_url() -> str | None:
    url = os.environ.get("DOVES_TEST_POSTGRES_URL", DEFAULT_PG_URL)
    try:
        import psycopg
    except ImportError:
        reason = "psycopg is not installed (pip install '.[postgres]')"
    else:
        try:
            with psycopg.connect(url, connect_timeout=3):
                return url
        except psycopg.Error as e:
            reason = f"no PostgreSQL answers at {url}: {str(e).strip().splitlines()[0]}"
    if os.environ.get("DOVES_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"DOVES_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)
    return None


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """URL of the test PostgreSQL server (skips or fails as described above)."""
    url = _postgres_server_url()
    assert url is not None
    return url


@pytest.fixture
def pg_schema(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty schema name for one test; dropped afterwards."""
    import psycopg

    schema = f"doves_test_{secrets.token_hex(6)}"
    yield schema
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_url(pg_server_url: str, pg_schema: str) -> str:
    """A store URL that points at a fresh schema (``?schema=`` is read by the PostgreSQL store)."""
    separator = "&" if "?" in pg_server_url else "?"
    return f"{pg_server_url}{separator}schema={pg_schema}"
