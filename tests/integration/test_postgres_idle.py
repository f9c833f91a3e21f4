"""What an idle worker costs on PostgreSQL (``stores/postgres/idle.py``).

Between two wake-ups (a NOTIFY, the next due time, ``poll_seconds``) a claim can find
nothing: ``wait_for_work`` says so (False) and the worker waits again without a query;
a worker that holds nothing is stamped alive every quarter lease, not at every beat.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("psycopg")

from pgdb import db

from martian_doves.config import PostgresOptions
from martian_doves.model import State
from martian_doves.stores.postgres import PostgresStore


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(pg_url, PostgresOptions(poll_seconds=60.0))
    try:
        yield opened
    finally:
        opened.close()


def countdown(name: str) -> State:
    return State(name, "countdown", {"count": 1})


def test_an_idle_wait_says_that_nothing_came_until_a_notify(pg_url: str, store: PostgresStore) -> None:
    store.wait_for_work(0.01)  # starts listening
    assert store.claim("w", 1) == []
    assert store.wait_for_work(0.05) is False  # no NOTIFY, nothing due: claiming would find nothing
    assert store.wait_for_work(0.05) is False
    answers: list[bool | None] = []
    thread = threading.Thread(target=lambda: answers.append(store.wait_for_work(120)), daemon=True)
    thread.start()
    other = PostgresStore(pg_url)
    try:
        other.submit([countdown("woken.state")])
    finally:
        other.close()
    thread.join(30)
    assert answers == [True]
    assert [c.name for c in store.claim("w", 1)] == ["woken.state"]


def test_an_idle_wait_ends_when_a_timer_falls_due(store: PostgresStore) -> None:
    store.submit([countdown("timer.state")])
    [claim] = store.claim("w", 1)
    store.retry_later(claim, 0.5, "later")
    store.wait_for_work(0.01)  # the retry's own NOTIFY
    assert store.claim("w", 1) == []  # not due yet
    answers = [store.wait_for_work(120) for _ in range(20)]  # poll_seconds is 60: only the due time ends these
    assert True in answers
    assert [c.name for c in store.claim("w", 1)] == ["timer.state"]


def test_a_worker_holding_nothing_is_stamped_every_quarter_lease(pg_url: str) -> None:
    store = PostgresStore(pg_url, PostgresOptions(lease_seconds=0.4))
    try:
        store.register_worker("w")

        def last_seen() -> object:
            [(seen,)] = db(pg_url, "SELECT last_seen FROM workers WHERE name = 'w'")
            return seen

        registered = last_seen()
        assert store.heartbeat("w", []) == []
        assert last_seen() == registered  # stamped at its registration just now: nothing sent
        time.sleep(0.15)  # over a quarter lease later
        store.heartbeat("w", [])
        assert last_seen() != registered
        store.submit([countdown("held.state")])
        [claim] = store.claim("w", 1)
        stamped = last_seen()
        store.heartbeat("w", [claim])  # holding a claim: every beat renews it
        assert last_seen() != stamped
    finally:
        store.close()


def test_a_worker_without_the_machine_for_a_due_state_backs_off_instead_of_spinning(store: PostgresStore) -> None:
    """A state due that this worker's claims never take (a machine it lacks, in a mixed fleet)
    makes each wait twice as long as the one before, up to a second, not 10 ms each time."""
    store.submit([State("other.state", "beta", {})])
    store.register_worker("w", ["alpha"])
    store.wait_for_work(0.01)  # starts listening
    store.claim("w", 1, ["alpha"])
    store.wait_for_work(0.01)  # the submit's own NOTIFY
    waits = []
    for _ in range(9):
        assert store.claim("w", 1, ["alpha"]) == []  # beta is due, but not this worker's
        store.wait_for_work(0.0)  # looks at the next due time: now, for a state it did not take
        seen = store._quiet._seen
        waits.append(round(seen.quiet_until - store.clock.monotonic(), 2))
    assert waits[0] <= 0.1 and waits[-1] >= 0.9  # short at first (a timer just due), then backing off
    assert all(later >= earlier - 0.05 for earlier, later in itertools.pairwise(waits))  # remaining time, read after
    store.submit([State("late.state", "alpha", {"count": 1})])
    assert [c.name for c in store.claim("w", 1, ["alpha"])] == ["late.state"]  # its own work is claimed as before
