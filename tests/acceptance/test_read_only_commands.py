"""Commands that read a store never create or change anything in it (issue 9, item 2).

``status``, ``history``, ``list``, ``show``, ``dashboard``, ``export`` and ``graph`` run
as real ``doves`` processes on a plain folder, on state files copied into a folder
never run, and on a store after a run; a full listing of the tree (names, kinds,
sizes, mtimes and ctimes of every entry, folders included) is the same before and
after. A folder that holds no store is exit 2 with one line. On PostgreSQL, a schema
that does not exist, or one at an older version, is neither created nor migrated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from acceptance_helpers import Doves, copy_seed_examples, one_line, write_state

#: Every command that only reads, with the arguments it takes after STORE.
READERS = {"status": [], "history": ["hello.state"], "list": [], "show": ["hello.state"],
           "dashboard": ["--port", "0"], "export": ["exported"], "graph": []}

Tree = dict[str, tuple[int, int, int, int]]


def _tree(folder: Path) -> Tree:
    """Every entry under ``folder`` (itself included): mode, size, mtime and ctime."""
    found = {}
    for path in [folder, *folder.rglob("*")]:
        info = path.lstat()
        found[str(path.relative_to(folder))] = (info.st_mode, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    return found


@pytest.mark.parametrize("command", sorted(READERS))
def test_a_folder_that_is_no_store_is_refused_and_left_as_it_was(doves: Doves, tmp_path: Path,
                                                                  command: str) -> None:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "readme.txt").write_text("not a store\n")
    before = _tree(folder)
    result = doves(command, str(folder), *READERS[command])
    assert result.returncode == 2, result.stdout + result.stderr
    assert one_line(result.stderr) == f"doves: error: not a store (no state files and no store folders): {folder}"
    assert _tree(folder) == before


def test_state_files_copied_into_a_folder_never_run_are_pending_and_nothing_is_created(
        doves: Doves, tmp_path: Path) -> None:
    folder = tmp_path / "copied"
    folder.mkdir()
    copy_seed_examples(folder)
    before = _tree(folder)
    status = doves.status(folder)
    assert status["pending"] == 5 and status["done"] == 0
    for command in ("history", "list", "show", "graph"):
        result = doves(command, str(folder), *READERS[command])
        assert result.returncode == 0, (command, result.stderr)
    assert "simple" in doves("show", str(folder), "hello.state").stdout
    assert _tree(folder) == before


@pytest.mark.parametrize("mode", ["lease", "semaphore"])
def test_reading_a_store_after_a_run_changes_nothing(doves: Doves, tmp_path: Path, mode: str) -> None:
    store = tmp_path / "store"
    result = doves("submit", str(store), str(write_state(tmp_path, "hello.state", "simple", {"target": "hi"})))
    assert result.returncode == 0, result.stderr
    assert doves("run", str(store)).returncode == 0
    # A leftover of a writer that died long ago: only a worker cleans it up, never a reader.
    leftover = store / ".doves-tmp" / "12345-leftover"
    leftover.write_text("partial")
    os.utime(leftover, (1, 1))
    before = _tree(store)
    for command in ("status", "history", "list", "show", "graph"):
        result = doves(command, str(store), "--mode", mode, *READERS[command])
        assert result.returncode == 0, (command, result.stderr)
    assert json.loads(doves("status", str(store), "--json").stdout)["done"] == 1
    assert _tree(store) == before


def _schema_version(server_url: str, schema: str) -> object:
    import psycopg

    with psycopg.connect(server_url) as conn:
        found = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        if found == (0,):
            return None
        return conn.execute(f'SELECT max(version) FROM "{schema}".schema_version').fetchone()


@pytest.mark.parametrize("command", ["status", "list", "graph", "export"])
def test_a_database_without_the_schema_is_no_store_and_gets_none(doves: Doves, pg_server_url: str,
                                                                  pg_schema: str, command: str,
                                                                  tmp_path: Path) -> None:
    url = f"{pg_server_url}?schema={pg_schema}"
    result = doves(command, url, *([str(tmp_path / "exported")] if command == "export" else []))
    assert result.returncode == 2
    assert f"not a store (schema {pg_schema} does not exist" in one_line(result.stderr)
    assert _schema_version(pg_server_url, pg_schema) is None


def test_a_schema_of_an_older_version_is_read_as_it_is_or_refused_never_migrated(
        doves: Doves, pg_server_url: str, pg_schema: str) -> None:
    import psycopg

    from martian_doves.stores.postgres.sql import Q, migrations

    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{pg_schema}"')
        conn.execute(f'SET search_path = "{pg_schema}"')
        conn.execute(Q["version_table"])
        conn.execute(dict(migrations())[1].encode())
        conn.execute(Q["set_version"], {"version": 1})
    url = f"{pg_server_url}?schema={pg_schema}"
    result = doves("status", url)
    assert result.returncode == 2
    assert "is at version 1, this release reads version" in one_line(result.stderr)
    assert "doves migrate upgrades it" in result.stderr
    assert _schema_version(pg_server_url, pg_schema) == (1,)
