"""The PostgreSQL store: ``PostgresStore`` over a connector, its SQL, URL and export.

- ``url.py``: the store URL (``parse_url``, the options it may carry);
- ``sql.py`` and ``sql/``: the named queries (``Q``) and the numbered migrations;
- ``connector.py``: sessions, the pool, retries after a lost connection, NOTIFY wake-ups;
- ``schema.py``: whether the schema exists, and its migrations;
- ``store.py``: ``PostgresStore``, what states mean (claims, fenced commits ...);
- ``commits.py``: the general commit (a branch name, a waiting entry's lock);
- ``machines.py``: timers' and waits' rows, mailboxes, children and their joins;
- ``views.py``: what ``status`` and ``history`` read;
- ``inspection.py``: ``list``, ``show``, counts by state, ``forget``, dead workers;
- ``export.py``: the states written back as a folder store (``PostgresStore.export``);
- ``idle.py``: what an idle worker costs (a wait that sends no query, a stamp now and then).

Needs the ``postgres`` extra (psycopg 3 and its pool).
"""

from __future__ import annotations

from martian_doves.config import DEFAULT_SCHEMA, PostgresOptions
from martian_doves.stores.postgres.connector import PostgresConnector
from martian_doves.stores.postgres.sql import Q, migrations
from martian_doves.stores.postgres.store import PostgresStore
from martian_doves.stores.postgres.url import URL_OPTIONS, parse_url

__all__ = [
    "DEFAULT_SCHEMA",
    "URL_OPTIONS",
    "PostgresConnector",
    "PostgresOptions",
    "PostgresStore",
    "Q",
    "migrations",
    "parse_url",
]
