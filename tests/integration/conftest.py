"""Fixtures the integration tests share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["folder", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store to run ``doves`` against: an empty folder, or a fresh PostgreSQL schema's URL."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    store = tmp_path / "store"
    store.mkdir()
    return str(store)
