"""The PostgreSQL store against a real server, one fresh schema per test (``pg_url``).

Faults are real too: sessions are ended with ``pg_terminate_backend``, and a lost
reply is simulated by closing the connection right after a statement has run.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import pytest

psycopg = pytest.importorskip("psycopg")

from pgdb import db  # noqa: E402

from martian_doves import codec  # noqa: E402
from martian_doves.config import PostgresOptions, WorkerOptions  # noqa: E402
from martian_doves.errors import ClaimLost, ConfigError, InvalidDocument, StoreUnavailable  # noqa: E402
from martian_doves.loader import default_registry  # noqa: E402
from martian_doves.model import Claim, Failure, State, Status  # noqa: E402
from martian_doves.stores import open_store  # noqa: E402
from martian_doves.stores.base import AdminStore, ExportableStore, MigratableStore, Store  # noqa: E402
from martian_doves.stores.directory import LeaseStore  # noqa: E402
from martian_doves.stores.postgres import PostgresStore, Q, migrations, parse_url  # noqa: E402
from martian_doves.worker import Worker  # noqa: E402

#: The schema version this release migrates to.
LATEST = migrations()[-1][0]


def countdown(name: str, count: int = 3) -> State:
    return State(name, "countdown", {"count": count, "tick_seconds": 0})


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(pg_url, PostgresOptions(poll_seconds=60.0))
    yield opened
    opened.close()


def row(pg_url: str, name: str) -> dict[str, Any]:
    conninfo, options, _ = parse_url(pg_url)
    schema = options.schema
    with psycopg.connect(conninfo, autocommit=True, options=f"-c search_path={schema}") as conn:
        cursor = conn.execute("SELECT * FROM states WHERE name = %s", (name,))
        values = cursor.fetchone()
        assert values is not None, name
        assert cursor.description is not None
        return {column.name: value for column, value in zip(cursor.description, values, strict=True)}


def expire_leases(pg_url: str) -> None:
    """Make every lease look expired, as if its worker had died."""
    db(pg_url, "UPDATE states SET lease_expires = now() - interval '1 second' WHERE status = 'in_progress'")


def terminate_sessions(pg_url: str) -> int:
    """End every server session of this test's stores (the server itself keeps running)."""
    schema = parse_url(pg_url)[1].schema
    rows = db(pg_url, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                      "WHERE application_name LIKE %s AND pid <> pg_backend_pid()", (f"doves:{schema}:%",))
    return int(rows[0][0])


@contextmanager
def reply_lost(monkeypatch: pytest.MonkeyPatch, query_name: str) -> Iterator[list[bool]]:
    """The first time ``query_name`` runs, it takes effect but its reply never arrives."""
    original = psycopg.Connection.execute
    fired: list[bool] = []

    def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        cursor = original(self, query, params, **kwargs)
        if query == Q[query_name] and not fired:
            fired.append(True)
            cursor.fetchall()
            self.close()
            raise psycopg.OperationalError("injected: the connection dropped before the reply")
        return cursor

    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    yield fired
    monkeypatch.setattr(psycopg.Connection, "execute", original)


def names_with_parent(pg_url: str, parent: str) -> list[str]:
    return [r[0] for r in db(pg_url, "SELECT name FROM states WHERE parent = %s ORDER BY name", (parent,))]


# -- opening -------------------------------------------------------------------------


def test_url_schema_parameter_is_stripped_and_the_option_wins() -> None:
    conninfo, options, description = parse_url("postgresql://u:secret@db.example:5433/app?schema=abc&sslmode=disable")
    assert options.schema == "abc"
    assert "schema" not in conninfo and "sslmode=disable" in conninfo
    assert "secret" not in description and "abc" in description
    assert parse_url("postgresql://h/app?schema=abc", PostgresOptions(schema="xyz"))[1].schema == "xyz"
    assert parse_url("postgresql://h/app")[1].schema == "doves"


def test_store_options_in_the_url_fill_in_what_was_not_given() -> None:
    url = "postgresql://h/app?synchronous_commit=off&claim_batch=4&lease_seconds=7.5&sslmode=disable"
    conninfo, options, _ = parse_url(url, PostgresOptions(claim_batch=2))
    assert (options.synchronous_commit, options.claim_batch, options.lease_seconds) == (False, 2, 7.5)
    assert "claim_batch" not in conninfo and "synchronous_commit" not in conninfo and "sslmode" in conninfo
    for bad in ("claim_batch=many", "synchronous_commit=maybe", "lease_seconds=-1"):
        with pytest.raises(ConfigError):
            parse_url(f"postgresql://h/app?{bad}")


@pytest.mark.parametrize("url", [
    "postgresql://h/app?schema=Bad-Name",
    "postgresql://h/app?schema=x%22%3Bdrop",
    "postgresql://h:99999999/app",
    "postgresql://h/app?no_such_libpq_option=1",
])
def test_bad_urls_are_one_line_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PostgresStore(url)
    assert "\n" not in str(caught.value)


def test_bad_options_are_config_errors() -> None:
    for options in (PostgresOptions(lease_seconds=0), PostgresOptions(claim_batch=0), PostgresOptions(schema="A b")):
        with pytest.raises(ConfigError):
            options.validate()


def test_an_option_given_wins_over_the_url_even_at_its_default_value(pg_url: str) -> None:
    """`--lease-seconds 30` (the default value, given on purpose) beats `?lease_seconds=5`; an
    option not given leaves the URL's."""
    given = open_store(f"{pg_url}&lease_seconds=5&pool_size=3", lease_seconds=30.0)
    try:
        assert (given.lease_seconds, given.options.pool_size) == (30.0, 3)
    finally:
        given.close()


def test_unreachable_server_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable) as caught:
        PostgresStore("postgresql://postgres@127.0.0.1:1/test", PostgresOptions(connect_timeout_seconds=2))
    assert "\n" not in str(caught.value)


def test_open_store_routes_postgres_urls_and_implements_the_protocol(pg_url: str) -> None:
    opened = open_store(pg_url, lease_seconds=5.0)
    try:
        assert isinstance(opened, PostgresStore) and isinstance(opened, Store)
        assert isinstance(opened, AdminStore) and isinstance(opened, MigratableStore)
        assert isinstance(opened, ExportableStore)
        assert opened.options.lease_seconds == 5.0
    finally:
        opened.close()


def test_an_option_of_another_store_family_is_refused_not_dropped(pg_url: str) -> None:
    """`durable` belongs to folder stores: given for a database it is a one-line error naming it,
    where it used to vanish silently (and a typo such as `lease_second` with it)."""
    for wrong in ({"durable": True}, {"lease_second": 5.0}):
        with pytest.raises(ConfigError, match=f"{next(iter(wrong))}: not an option of a PostgreSQL store"):
            open_store(pg_url, **wrong)


def test_migrate_is_idempotent_and_versioned(pg_url: str, store: PostgresStore) -> None:
    assert store.migrate() == LATEST
    assert store.migrate() == LATEST
    assert db(pg_url, "SELECT max(version) FROM schema_version") == [(LATEST,)]
    again = PostgresStore(pg_url)
    again.close()
    db(pg_url, "INSERT INTO schema_version (version) VALUES (999)")
    with pytest.raises(ConfigError, match="newer"):
        PostgresStore(pg_url)


def test_an_up_to_date_schema_opens_without_the_create_privilege(pg_url: str, store: PostgresStore) -> None:
    schema = parse_url(pg_url)[1].schema
    role = f"doves_worker_{secrets.token_hex(4)}"
    db(pg_url, f"CREATE ROLE {role} LOGIN")
    try:
        db(pg_url, f"GRANT USAGE ON SCHEMA {schema} TO {role}; "
                   f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}")
        parts = urlsplit(pg_url)
        limited = PostgresStore(urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}")))
        try:
            limited.submit([countdown("ro.state")])
            [claim] = limited.claim("w", 1)
            limited.commit(claim, None)
        finally:
            limited.close()
    finally:
        db(pg_url, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        db(pg_url, f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_concurrent_first_opens_create_the_schema_once(pg_url: str) -> None:
    errors: list[BaseException] = []
    stores: list[PostgresStore] = []

    def open_one() -> None:
        try:
            stores.append(PostgresStore(pg_url))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opened in stores:
        opened.close()
    assert errors == []
    assert db(pg_url, "SELECT max(version) FROM schema_version") == [(LATEST,)]


def test_a_store_made_by_the_first_release_is_migrated_with_its_states(pg_url: str, pg_server_url: str) -> None:
    """A schema at version 1 (as 1.0 made it), with states and a worker in it, opens at the latest
    version with everything kept: upgrades are by numbered scripts, never by hand."""
    schema = parse_url(pg_url)[1].schema
    first = dict(migrations())[1]
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path = {schema}")
        conn.execute(Q["version_table"])
        conn.execute(first.encode())
        conn.execute(Q["set_version"], {"version": 1})
        conn.execute("INSERT INTO states (name, root, state, payload) "
                     "VALUES ('old.state', 'old.state', 'countdown', '{\"count\": 1}')")
        conn.execute("INSERT INTO workers (name, host, pid) VALUES ('old-worker', 'h', 1)")
    upgraded = PostgresStore(pg_url)
    try:
        assert db(pg_url, "SELECT max(version) FROM schema_version") == [(LATEST,)]
        assert [w.name for w in upgraded.status().workers] == ["old-worker"]
        [claim] = upgraded.claim("w", 1)
        assert claim.name == "old.state"
        upgraded.commit(claim, None)
        assert upgraded.is_finished()
    finally:
        upgraded.close()


# -- submit, claim, commit --------------------------------------------------------------


def test_submit_refuses_existing_and_unsafe_names(store: PostgresStore) -> None:
    results = store.submit([countdown("a.state"), countdown("b.state"), countdown("a.state"),
                            countdown("../evil.state"), countdown("notes.txt")])
    assert [(r.name, r.added) for r in results] == [
        ("a.state", True), ("b.state", True), ("a.state", False), ("../evil.state", False), ("notes.txt", False)]
    assert all(r.reason for r in results if not r.added)
    assert store.submit([countdown("b.state")])[0].added is False
    assert store.status().pending == 2


def test_chained_commit_hands_over_the_successor_claimed(pg_url: str, store: PostgresStore) -> None:
    store.submit([countdown("m.state", 3)])
    [claim] = store.claim("w1", 5)
    child = store.commit(claim, ("countdown", {"count": 2}), keep=True)
    assert child is not None
    assert (child.name, child.state.parent, child.worker, child.attempts) == ("m.state-1", "m.state", "w1", 0)
    assert child.token != claim.token
    stored = row(pg_url, "m.state-1")
    assert (stored["status"], stored["token"], stored["worker"]) == ("in_progress", child.token, "w1")
    assert row(pg_url, "m.state")["status"] == "done"
    assert store.claim("w2", 5) == []  # the chained successor is not up for grabs
    assert store.commit(child, ("countdown", {"count": 1})) is None
    [last] = store.claim("w2", 5)
    assert (last.name, last.state.payload) == ("m.state-2", {"count": 1})
    assert store.commit(last, None, keep=True) is None
    assert [e.name for e in store.history("m.state-1")] == ["m.state", "m.state-1", "m.state-2"]
    assert store.is_finished()
    report = store.status()
    assert (report.pending, report.in_progress, report.done, report.failed) == (0, 0, 3, 0)


def test_a_successor_name_taken_by_another_machine_moves_to_the_next_branch(store: PostgresStore) -> None:
    store.submit([countdown("a.state"), countdown("a.state-1")])
    claims = {c.name: c for c in store.claim("w", 5)}
    store.commit(claims["a.state"], ("countdown", {"count": 2}))
    store.commit(claims["a.state-1"], ("countdown", {"count": 2}))
    assert [e.name for e in store.history("a.state")] == ["a.state", "a.state-1~2"]
    assert [e.name for e in store.history("a.state-1")] == ["a.state-1", "a.state-2"]
    assert store.history("no-such.state") == []


def test_a_successor_payload_jsonb_cannot_hold_is_refused_and_nothing_commits(pg_url: str,
                                                                              store: PostgresStore) -> None:
    store.submit([countdown("n.state")])
    [claim] = store.claim("w", 1)
    with pytest.raises(InvalidDocument):
        store.commit(claim, ("countdown", {"count": float("nan")}))
    assert row(pg_url, "n.state")["status"] == "in_progress"
    assert names_with_parent(pg_url, "n.state") == []


# -- leases, fencing, takeover ------------------------------------------------------------


def test_an_expired_lease_is_taken_over_and_the_old_owner_is_fenced(pg_url: str, store: PostgresStore) -> None:
    store.submit([countdown("f.state")])
    [old] = store.claim("w1", 1)
    assert store.claim("w2", 1) == []  # a live lease is respected
    expire_leases(pg_url)
    [new] = store.claim("w2", 1)
    assert new.name == "f.state" and new.token != old.token
    assert new.attempts == 1 and new.errors == ("worker w1 stopped renewing its lease",)
    with pytest.raises(ClaimLost):
        store.commit(old, ("countdown", {"count": 2}), keep=True)
    with pytest.raises(ClaimLost):
        store.retry_later(old, 0, "late")
    with pytest.raises(ClaimLost):
        store.release(old)
    with pytest.raises(ClaimLost):
        store.fail(old, Failure("x", "late"))
    assert names_with_parent(pg_url, "f.state") == []  # nothing committed by the fenced worker
    assert store.heartbeat("w1", [old]) == [old]
    store.commit(new, ("countdown", {"count": 2}))
    assert names_with_parent(pg_url, "f.state") == ["f.state-1"]
    assert store.history("f.state")[0].worker == "w2"


def test_leases_expire_by_the_database_clock(pg_url: str) -> None:
    short = PostgresStore(pg_url, PostgresOptions(lease_seconds=0.3))
    try:
        short.submit([countdown("t.state")])
        [old] = short.claim("w1", 1)
        time.sleep(0.6)
        [new] = short.claim("w2", 1)
        assert new.name == old.name and new.attempts == 1
    finally:
        short.close()


def test_heartbeat_extends_leases_and_reports_only_lost_claims(pg_url: str, store: PostgresStore) -> None:
    store.submit([countdown("h1.state"), countdown("h2.state"), countdown("h3.state")])
    c1, c2, c3 = sorted(store.claim("w1", 3), key=lambda c: c.name)
    db(pg_url, "UPDATE states SET lease_expires = now() + interval '1 second'")
    store.commit(c2, None)  # finished meanwhile: not lost
    assert store.heartbeat("w1", [c1, c2]) == []
    expires = db(pg_url, "SELECT extract(epoch FROM lease_expires - now()) FROM states WHERE name = 'h1.state'")
    assert expires[0][0] > 20  # renewed for a whole lease (30 s)
    assert [w.name for w in store.status().workers] == ["w1"]  # a heartbeat registers the worker
    db(pg_url, "UPDATE states SET lease_expires = now() - interval '1 second' WHERE name = 'h3.state'")
    store.claim("w2", 1)  # takes h3 over
    assert store.heartbeat("w1", [c1, c3]) == [c3]


# -- lost connections -----------------------------------------------------------------------


def test_a_commit_whose_reply_was_lost_is_written_exactly_once(pg_url: str, store: PostgresStore,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store.submit([countdown("r.state")])
    [claim] = store.claim("w", 1)
    with reply_lost(monkeypatch, "commit_keep") as fired:
        child = store.commit(claim, ("countdown", {"count": 2}), keep=True)
    assert fired == [True]
    assert child is not None and child.name == "r.state-1"
    assert names_with_parent(pg_url, "r.state") == ["r.state-1"]
    assert row(pg_url, "r.state-1")["token"] == child.token  # the retry handed over the claim it made
    store.commit(child, None)
    assert store.is_finished()


def test_a_claim_whose_reply_was_lost_is_adopted_not_orphaned(pg_url: str, store: PostgresStore,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store.submit([countdown("c1.state"), countdown("c2.state")])
    with reply_lost(monkeypatch, "claim"):
        claims = store.claim("w", 1)
    assert len(claims) == 1
    assert db(pg_url, "SELECT count(*) FROM states WHERE status = 'in_progress'") == [(1,)]
    store.commit(claims[0], None)


def test_a_submit_whose_reply_was_lost_reports_its_rows_as_added(store: PostgresStore,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with reply_lost(monkeypatch, "submit"):
        results = store.submit([countdown("s.state")])
    assert results[0].added


def test_the_store_reconnects_after_its_sessions_are_terminated(pg_url: str, store: PostgresStore) -> None:
    store.submit([countdown("k.state")])
    [claim] = store.claim("w", 1)
    assert terminate_sessions(pg_url) >= 1
    assert store.heartbeat("w", [claim]) == []
    child = store.commit(claim, ("countdown", {"count": 2}), keep=True)
    assert child is not None and child.name == "k.state-1"


def test_a_cut_connection_does_not_let_a_taken_over_claim_commit(pg_url: str, store: PostgresStore) -> None:
    store.submit([countdown("x.state")])
    [old] = store.claim("w1", 1)
    terminate_sessions(pg_url)
    expire_leases(pg_url)
    other = PostgresStore(pg_url)
    try:
        [new] = other.claim("w2", 1)
        with pytest.raises(ClaimLost):
            store.commit(old, ("countdown", {"count": 2}))
        other.commit(new, ("countdown", {"count": 2}))
    finally:
        other.close()
    assert names_with_parent(pg_url, "x.state") == ["x.state-1"]


def test_the_general_commit_statement_refuses_a_taken_over_claim(pg_url: str, store: PostgresStore) -> None:
    """The statement that names a branch (the successor's first name is taken) checks the token itself.

    A worker reaches it only after its fast statement met the taken name while its claim still held, so
    a takeover in between is a race no store-level test can time: the statement is run here as the store
    runs it, with the token of a claim that was taken over.
    """
    store.submit([countdown("x.state"), countdown("x.state-1")])
    old = next(c for c in store.claim("w1", 2) if c.name == "x.state")
    expire_leases(pg_url)
    new = next(c for c in store.claim("w2", 2) if c.name == "x.state")
    params = {"name": old.name, "token": old.token, "state": "countdown", "payload": '{"count": 2}', "keep": False,
              "worker": "w1", "child_token": "t", "lease": 30.0, "channel": store.channel, "wait": None,
              "not_before": None, "candidates": ["x.state-1", "x.state-1~2"]}
    assert db(pg_url, Q["commit"], params) == []
    assert names_with_parent(pg_url, "x.state") == []
    assert db(pg_url, "SELECT status, token FROM states WHERE name = 'x.state'") == [("in_progress", new.token)]
    assert db(pg_url, Q["commit"], {**params, "token": new.token}) == [("x.state-1~2",)]


def test_status_names_the_runnable_states_no_live_worker_can_run(store: PostgresStore) -> None:
    """Workers publish the states they can run; status lists, per state name, what none of them can."""
    store.submit([State("a.state", "alpha", {}), State("b1.state", "beta", {}), State("b2.state", "beta", {})])
    store.register_worker("w-alpha", ["alpha"])
    store.heartbeat("w-alpha", [])  # a heartbeat keeps the published states
    [entry] = store.status().details["no_worker_for"]
    assert (entry["state"], entry["count"]) == ("beta", 2) and entry["oldest_pending_at"] <= time.time()
    store.register_worker("w-all")  # runs everything
    assert "no_worker_for" not in store.status().details
    store.unregister_worker("w-all")
    store.unregister_worker("w-alpha")
    assert {e["state"] for e in store.status().details["no_worker_for"]} == {"alpha", "beta"}
    # A state not due yet (here a retry's backoff) is scheduled, not runnable: not counted.
    for claim in store.claim("w-beta", 3):
        if claim.name == "b1.state":
            store.retry_later(claim, 3600, "later")
        else:
            store.release(claim)
    store.unregister_worker("w-beta")  # a claim registers its worker, able to run everything
    [beta] = [e for e in store.status().details["no_worker_for"] if e["state"] == "beta"]
    assert beta["count"] == 1


# -- retry, fail, release -----------------------------------------------------------------------


def test_retry_later_delays_the_state_and_uses_an_attempt(pg_url: str, store: PostgresStore) -> None:
    store.submit([countdown("d.state")])
    [claim] = store.claim("w", 1)
    store.retry_later(claim, 3600, "ValueError: boom")
    assert store.claim("w", 1) == []
    assert not store.is_finished()  # a delayed state is still to do
    status = store.status()
    assert (status.pending, status.scheduled) == (0, 1)  # its backoff is scheduled, not runnable
    db(pg_url, "UPDATE states SET not_before = now()")
    [again] = store.claim("w", 1)
    assert (again.attempts, again.errors) == (1, ("ValueError: boom",))
    store.release(again)
    [third] = store.claim("w", 1)
    assert third.attempts == 1  # a release uses no attempt


def test_fail_stores_a_machine_readable_reason(pg_url: str, store: PostgresStore) -> None:
    store.submit([countdown("e.state"), countdown("g.state")])
    for claim in store.claim("w", 2):
        store.fail(claim, Failure("tick_failed", f"{claim.name} broke", "Traceback ...", 3, ("a", "b", "c")))
    reason = row(pg_url, "e.state")["reason"]
    assert reason["code"] == "tick_failed" and reason["message"] == "e.state broke"
    assert reason["traceback"] == "Traceback ..." and reason["errors"] == ["a", "b", "c"] and reason["worker"] == "w"
    report = store.status()
    assert report.failed == 2 and report.finished
    assert ("e.state", "tick_failed", "e.state broke") in report.recent_failures
    [entry] = store.history("e.state")
    assert entry.status is Status.FAILED and entry.attempts == 3 and entry.reason == "tick_failed: e.state broke"
    assert store.retry_failed(["nope.state"]) == 0
    assert store.retry_failed(["e.state"]) == 1
    [claim] = store.claim("w", 5)
    assert claim.name == "e.state" and claim.attempts == 0 and claim.errors == ()
    assert store.retry_failed() == 1
    assert store.status().pending == 1


# -- maintenance -------------------------------------------------------------------------------


def run_all(store: PostgresStore) -> None:
    while claims := store.claim("w", 10):
        for claim in claims:
            count = claim.state.payload["count"] - 1
            store.commit(claim, ("countdown", {"count": count}) if count else None)


def test_reset_reruns_everything_without_duplicating_successors(pg_url: str, store: PostgresStore) -> None:
    store.submit([countdown("z.state", 3)])
    run_all(store)
    before = sorted(r[0] for r in db(pg_url, "SELECT name FROM states"))
    assert store.reset(successors=False) == 3
    assert store.status().pending == 3
    run_all(store)
    assert sorted(r[0] for r in db(pg_url, "SELECT name FROM states")) == before
    assert store.status().done == 3
    assert store.reset(successors=True) == 1
    assert [r[0] for r in db(pg_url, "SELECT name FROM states")] == ["z.state"]


def test_reset_refuses_while_workers_are_alive(store: PostgresStore) -> None:
    store.register_worker("busy")
    with pytest.raises(ConfigError, match="busy"):
        store.reset(successors=True)
    store.unregister_worker("busy")
    assert store.reset(successors=True) == 0


def test_unregister_gives_back_what_the_worker_holds(store: PostgresStore) -> None:
    store.submit([countdown("u.state")])
    store.register_worker("w")
    [claim] = store.claim("w", 1)
    store.unregister_worker("w")
    assert store.status().workers == []
    [again] = store.claim("w2", 1)
    assert again.name == claim.name and again.attempts == 0


def test_batch_claims_are_kept_renewed_and_given_back(pg_url: str) -> None:
    batched = PostgresStore(pg_url, PostgresOptions(claim_batch=3))
    try:
        batched.submit([countdown(f"b{i}.state") for i in range(5)])
        [first] = batched.claim("w", 1)
        assert db(pg_url, "SELECT count(*) FROM states WHERE status = 'in_progress'") == [(3,)]
        [second] = batched.claim("w", 1)  # from the batch, no new rows claimed
        assert second.name != first.name
        assert db(pg_url, "SELECT count(*) FROM states WHERE status = 'in_progress'") == [(3,)]
        db(pg_url, "UPDATE states SET lease_expires = now() + interval '1 second'")
        batched.heartbeat("w", [first])
        soon = "SELECT name FROM states WHERE status = 'in_progress' AND lease_expires < now() + interval '9 seconds'"
        assert db(pg_url, soon) == [(second.name,)]  # the spare one was renewed with the one passed
    finally:
        batched.close()
    assert db(pg_url, "SELECT count(*) FROM states WHERE status = 'in_progress'") == [(2,)]


def test_export_writes_the_directory_store_layout(pg_url: str, store: PostgresStore, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    store.submit([countdown("done.state", 2), countdown("bad.state"), countdown("wait.state"),
                  countdown("held.state")])
    claims = {c.name: c for c in store.claim("w", 4)}
    child = store.commit(claims["done.state"], ("countdown", {"count": 1}), keep=True)
    assert child is not None
    store.commit(child, None)
    store.fail(claims["bad.state"], Failure("tick_failed", "broke", None, 1, ("e",)))
    store.retry_later(claims["wait.state"], 0, "flaky")
    target = tmp_path / "exported"
    assert store.export(str(target)) == 5
    state = codec.decode((target / "done.state-1").read_bytes(), "done.state-1")
    assert (state.state, state.payload, state.parent) == ("countdown", {"count": 1}, "done.state")
    assert sorted(os.listdir(target / "done")) == ["done.state", "done.state-1"]
    assert json.loads((target / "done" / "done.state-1").read_text())["worker"] == "w"
    assert sorted(os.listdir(target / "failed")) == ["bad.state", "bad.state.reason.json"]
    assert json.loads((target / "failed" / "bad.state.reason.json").read_text())["code"] == "tick_failed"
    assert sorted(os.listdir(target / "pending")) == ["held.state", "wait.state"]
    assert json.loads((target / "pending" / "wait.state").read_text())["attempts"] == 1
    # Again into the same folder: the same files are there already, nothing is overwritten.
    assert store.export(str(target)) == 5
    (target / "wait.state").write_text('{"state": "countdown", "payload": {"count": 99}}')  # someone else's
    with caplog.at_level(logging.WARNING):
        assert store.export(str(target)) == 4
    assert "1 state(s) not exported" in caplog.text and "wait.state" in caplog.text
    assert json.loads((target / "wait.state").read_text())["payload"] == {"count": 99}  # never overwritten
    (target / "wait.state").write_bytes(codec.encode(State("wait.state", "countdown", {"count": 3, "tick_seconds": 0})))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="it is a file, not a folder"):
        store.export(str(a_file))
    # The directory store reads it and finishes the work the database had left.
    files = LeaseStore(target)
    try:
        report = files.status()
        assert (report.pending, report.done, report.failed) == (2, 2, 1)
        Worker(files, default_registry(), WorkerOptions(name="exported", poll_seconds=0.05)).run()
        assert files.is_finished() and files.status().done == 2 + 3 + 3  # the two pending countdown(3) ran
    finally:
        files.close()


def test_synchronous_commit_off_speeds_transitions_but_never_submits(pg_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fast = PostgresStore(pg_url, PostgresOptions(synchronous_commit=False))
    seen: dict[str, str] = {}
    original = psycopg.Connection.execute

    def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        cursor = original(self, query, params, **kwargs)
        for name in ("submit", "commit_pass"):
            if query == Q[name]:
                seen[name] = original(self, "SHOW synchronous_commit").fetchone()[0]
        return cursor

    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    try:
        fast.submit([countdown("sync.state")])
        [claim] = fast.claim("w", 1)
        fast.commit(claim, ("countdown", {"count": 2}))
    finally:
        fast.close()
    assert seen == {"submit": "on", "commit_pass": "off"}


# -- wake-ups --------------------------------------------------------------------------------


def test_wait_for_work_wakes_on_a_submit_from_another_process(pg_url: str, store: PostgresStore) -> None:
    store.wait_for_work(0.01)  # starts listening
    done = threading.Event()

    def wait() -> None:
        store.wait_for_work(120)  # poll_seconds is 60: only a NOTIFY ends this early
        done.set()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    time.sleep(0.2)
    assert not done.is_set()
    other = PostgresStore(pg_url)
    try:
        other.submit([countdown("wake.state")])
    finally:
        other.close()
    assert done.wait(30)


def test_wait_for_work_returns_when_a_delayed_state_falls_due(pg_url: str, store: PostgresStore) -> None:
    store.submit([countdown("later.state")])
    [claim] = store.claim("w", 1)
    store.retry_later(claim, 0.5, "later")
    store.wait_for_work(0.01)  # drain the retry's own notification
    done = threading.Event()

    def wait() -> None:
        store.wait_for_work(120)
        done.set()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    assert done.wait(30)
    assert [c.name for c in store.claim("w", 1)] == ["later.state"]


def test_claims_are_exclusive_under_concurrent_claimers(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(4)]
    stores[0].submit([countdown(f"p{i:03d}.state") for i in range(200)])
    taken: list[list[Claim]] = [[] for _ in stores]

    def take(index: int) -> None:
        while claims := stores[index].claim(f"w{index}", 3):
            taken[index].extend(claims)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opened in stores:
        opened.close()
    names = [c.name for claims in taken for c in claims]
    assert sorted(names) == sorted(f"p{i:03d}.state" for i in range(200))


def test_liveness_is_judged_by_each_workers_own_lease(pg_url: str) -> None:
    """A fleet running with a 120 s lease and sparse heartbeats stays "alive" for status and reset,
    whatever lease the reading command was opened with; a silent worker of a 30 s lease does not."""
    long_lease = PostgresStore(pg_url, PostgresOptions(lease_seconds=120))
    reader = PostgresStore(pg_url)  # the default 30 s lease
    try:
        long_lease.register_worker("patient")
        reader.register_worker("gone")
        db(pg_url, "UPDATE workers SET last_seen = now() - interval '60 seconds'")
        alive = {w.name: w.alive for w in reader.status().workers}
        assert alive == {"patient": True, "gone": False}
        with pytest.raises(ConfigError, match=r"workers are running on this store \(patient\)"):
            reader.reset(successors=False)
    finally:
        long_lease.close()
        reader.close()


def test_connection_settings_in_the_url_are_kept(pg_url: str, pg_server_url: str) -> None:
    """options=, connect_timeout and application_name given in the URL reach the server (ours are
    added to options=, not put in its place), and a host-less URL (host= as a parameter) works."""
    parts = urlsplit(pg_server_url)
    schema = parse_url(pg_url)[1].schema
    query = urlencode({"host": parts.hostname, "port": parts.port, "user": parts.username, "schema": schema,
                       "options": "-c work_mem=7MB", "application_name": "my-fleet", "connect_timeout": "3"},
                     quote_via=quote)
    url = f"postgresql:///{parts.path.lstrip('/')}?{query}"
    opened = PostgresStore(url)
    try:
        opened.submit([countdown("u.state", 1)])
        [claim] = opened.claim("w", 1)
        with opened.connector.connection() as conn:
            settings = conn.execute("SELECT current_setting('work_mem'), current_setting('application_name'), "
                                    "current_setting('search_path')").fetchone()
        assert settings == ("7MB", "my-fleet", schema)
        opened.commit(claim, None)
        assert opened.is_finished()
    finally:
        opened.close()
