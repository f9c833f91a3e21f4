"""The store a benchmark runs on: always a fresh one, removed afterwards unless kept.

Without STORE, a new folder in the system's temporary folder; with a folder, a new
folder inside it (to choose the filesystem: ``/dev/shm``, an NFS mount); with a
``postgresql://`` URL, a new schema in that database. A fresh store makes runs
comparable and never touches anyone's states.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit

from martian_doves.stores import is_postgres_url


def _with_schema(url: str, schema: str) -> str:
    """``url`` with its ``schema`` query parameter set to ``schema`` (any other one kept)."""
    base, _, query = url.partition("?")
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "schema"]
    return f"{base}?{urlencode([*pairs, ('schema', schema)])}"


def _drop_schema(url: str, schema: str) -> None:
    try:
        import psycopg  # only for a PostgreSQL store (the postgres extra)
    except ImportError:
        return  # then no store could be opened, nor a schema made

    from martian_doves.stores.postgres import parse_url

    conninfo, _, _ = parse_url(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def fresh_store(where: str | None, *, keep: bool = False) -> Iterator[str]:
    """A new, empty store's target (a folder or a URL) inside ``where``; removed on exit unless ``keep``."""
    if where is not None and is_postgres_url(where):
        urlsplit(where)  # a malformed URL fails here, before anything is created
        schema = f"doves_bench_{secrets.token_hex(4)}"
        url = _with_schema(where, schema)
        try:
            yield url
        finally:
            if not keep:
                _drop_schema(url, schema)
        return
    folder = tempfile.mkdtemp(prefix="doves-bench-", dir=where)
    try:
        yield folder
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
