"""A PostgreSQL server that refuses writes mid-run is an outage the fleet rides out.

``doves run`` works on a database of its own; mid-run the database is made read-only
(``default_transaction_read_only``, as after a failover to a standby) and its sessions are
ended so that every new one is read-only; later it is made writable again. The run must
finish by itself with every machine's lineage whole and each transition run once, with one
log line when the outage begins and one when it ends per worker, no traceback, and a
supervisor that never gives up; ``status`` says so while it lasts.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

psycopg = pytest.importorskip("psycopg")

from procs import (  # noqa: E402
    HANG_GUARD_SECONDS,
    MACHINES_FILE,
    check_executions,
    check_ridden_out,
    counting_payload,
    doves_json,
    doves_run,
    read_executions,
    wait_while_running,
)

from martian_doves.model import State  # noqa: E402
from martian_doves.stores import open_store  # noqa: E402

#: Machines and ticks each: enough work that the outage lands mid-run.
MACHINES, TICKS = 40, 5


@pytest.fixture
def database(pg_server_url: str) -> Iterator[tuple[str, str]]:
    """A database of this test's own (its name, and a store URL on it), dropped afterwards."""
    name = f"doves_outage_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(pg_server_url)
    yield name, urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def admin(pg_server_url: str, *statements: str) -> None:
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.mark.slow
def test_a_database_made_read_only_mid_run_is_ridden_out(pg_server_url: str, database: tuple[str, str],
                                                         tmp_path: Path) -> None:
    name, url = database
    log = tmp_path / "executions.log"
    store = open_store(url)
    try:
        roots = [State(f"m{i:02d}.state", "counted-countdown", counting_payload(f"m{i:02d}", TICKS, log, 0.05))
                 for i in range(MACHINES)]
        assert all(r.added for r in store.submit(roots))
    finally:
        store.close()
    output = tmp_path / "run.log"
    # Operations give up after half a second: each worker meets the outage as StoreUnavailable
    # many times over, and still logs it once.
    with doves_run(output, f"{url}?reconnect_seconds=0.5", "--workers", "2", "--machines", str(MACHINES_FILE)) as run:
        wait_while_running(run, output, lambda: len(read_executions(log)) >= 20, "the first transitions")
        admin(pg_server_url, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on',
              "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
              f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        wait_while_running(run, output, lambda: "the database refuses writes" in output.read_text(errors="replace"),
                           "the workers to meet the read-only database")
        during = doves_json("status", url)
        assert "refuses writes" in str(during.get("outage")), during
        stalled = len(read_executions(log))
        time.sleep(2.0)  # the outage lasts a while: workers back off and retry meanwhile
        assert run.poll() is None, output.read_text(errors="replace")
        assert stalled < MACHINES * TICKS, "the run had finished before the outage"
        admin(pg_server_url, f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        code = run.wait(HANG_GUARD_SECONDS)
    # Each process (two workers, the supervisor's progress reads) logs an outage once, and its end once.
    text = check_ridden_out(output, code, processes=3)
    assert "discarding closed connection" not in text

    after = doves_json("status", url)
    assert "outage" not in after and after["done"] == MACHINES * TICKS and after["pending"] == 0, after
    with psycopg.connect(url, autocommit=True, options="-c search_path=doves") as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM states")}
    assert names == {f"m{i:02d}.state" + (f"-{step}" if step else "") for i in range(MACHINES)
                     for step in range(TICKS)}
    check_executions(log, {f"m{i:02d}.state": TICKS for i in range(MACHINES)}, exactly_once=True)
