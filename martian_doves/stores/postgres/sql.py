"""The PostgreSQL store's SQL: the named queries of ``sql/queries.sql`` and the migrations.

The SQL lives in ``.sql`` files next to this module (package data), so it reads as SQL
and the reasoning behind each statement sits beside it. Nothing here connects.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable

#: A migration script's file name: its version, then anything (``0002_worker_lease.sql``).
_MIGRATION_NAME = re.compile(r"^(\d+)_.*\.sql$")


def _sql_file(*parts: str) -> Traversable:
    return resources.files("martian_doves.stores.postgres").joinpath("sql", *parts)


def load_queries() -> dict[str, str]:
    """The named queries of ``sql/queries.sql``, comment lines dropped.

    Returns:
        Query text by name; each query starts at a ``-- name: NAME`` line.
    """
    queries: dict[str, list[str]] = {}
    name = ""
    for line in _sql_file("queries.sql").read_text("utf-8").splitlines():
        if line.startswith("-- name:"):
            name = line.split(":", 1)[1].strip()
            queries[name] = []
        elif name and not line.lstrip().startswith("--"):
            queries[name].append(line)
    return {key: "\n".join(lines).strip() for key, lines in queries.items()}


#: The named queries, loaded once at import.
Q = load_queries()


def migrations() -> list[tuple[int, str]]:
    """The numbered migration scripts of ``sql/migrations/``.

    Returns:
        ``(version, script)`` pairs in version order (``0001_initial.sql`` is version 1).
    """
    found = [(_MIGRATION_NAME.match(entry.name), entry) for entry in _sql_file("migrations").iterdir()]
    return sorted((int(match[1]), entry.read_text("utf-8")) for match, entry in found if match)
