"""Rows nobody should have written, and schema names that are not the store's: the fleet carries on.

A PostgreSQL store's table can be written by anyone with access to it. A payload no worker can
load (an integer beyond Python's 4,300 digits, nesting deeper than any state file may hold)
fails that one state with a reason, as an unreadable file is quarantined in a folder store; it
never crash-loops the workers that claim it, nor breaks ``export`` or ``history``. And a store is
never created in one of PostgreSQL's own schemas.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("psycopg")

from pgdb import db

from martian_doves.model import State
from martian_doves.stores import open_store

#: Hang guard for one command.
COMMAND_TIMEOUT = 180.0


def doves(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "martian_doves", *args], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)


def submit_countdowns(pg_url: str, *names: str) -> None:
    store = open_store(pg_url)
    try:
        assert all(r.added for r in store.submit([State(n, "countdown", {"count": 2, "tick_seconds": 0})
                                                  for n in names]))
    finally:
        store.close()


def test_a_payload_no_worker_can_load_fails_its_state_and_the_run_goes_on(pg_url: str, tmp_path: Path) -> None:
    """A 5,000-digit integer and a payload nested 70 deep: those two states fail (malformed_json,
    invalid_document), every other machine ends done, no worker crashes, and ``export`` and
    ``history`` still work."""
    submit_countdowns(pg_url, *(f"m{i}.state" for i in range(6)))
    db(pg_url, "UPDATE states SET payload = ('{\"count\": ' || repeat('9', 5000) || '}')::jsonb "
               "WHERE name = 'm1.state'")
    deep = {"count": 1}
    for _ in range(70):
        deep = {"d": deep}
    db(pg_url, "UPDATE states SET payload = %s::jsonb WHERE name = 'm2.state'", (json.dumps(deep),))

    run = doves("run", pg_url, "--workers", "2")
    assert run.returncode == 1, run.stderr  # some states failed
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    assert "died" not in run.stderr and "giving up" not in run.stderr, run.stderr
    reasons = dict(db(pg_url, "SELECT name, reason ->> 'code' FROM states WHERE status = 'failed'"))
    assert reasons == {"m1.state": "malformed_json", "m2.state": "invalid_document"}
    assert db(pg_url, "SELECT count(*) FROM states WHERE status = 'done'") == [(8,)]  # 4 machines x 2 ticks

    status = doves("status", pg_url, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["failed"] == 2, status.stderr
    history = doves("history", pg_url, "m1.state")
    assert history.returncode == 0 and "malformed_json" in history.stdout, history.stdout + history.stderr
    export = doves("export", pg_url, str(tmp_path / "out"))
    assert "Traceback" not in export.stdout + export.stderr, export.stderr
    assert "m1.state" in export.stderr
    assert (tmp_path / "out" / "m0.state").exists() and not (tmp_path / "out" / "failed" / "m1.state").exists()


@pytest.mark.parametrize("schema", ["information_schema", "pg_catalog", "pg_toast", "pg_temp_1"])
def test_postgresql_s_own_schemas_are_refused_in_one_line(pg_server_url: str, schema: str, tmp_path: Path) -> None:
    """``?schema=information_schema`` (or any ``pg_*``) is refused before anything is created there."""
    url = f"{pg_server_url}{'&' if '?' in pg_server_url else '?'}schema={schema}"
    state = tmp_path / "a.state"
    state.write_text('{"state": "countdown", "payload": {"count": 1}}')
    for command in (("submit", url, str(state)), ("run", url), ("migrate", url), ("status", url)):
        result = doves(*command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("doves: error: ") and schema in lines[0], result.stderr
    created = db(pg_server_url, "SELECT to_regclass('information_schema.states'), "
                                "to_regclass('information_schema.workers')")
    assert created == [(None, None)]
