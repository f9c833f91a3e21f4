"""Batched claims and commits on PostgreSQL: ``claim`` of many states, ``commit_many``.

A worker that claims several states at once runs them in rounds and commits each round's
transitions in one statement (``BatchCommitStore``). Here: no state is handed to two
claimers, a batch commits exactly what ``commit`` would and leaves the rest to it, and
(in ``test_postgres_faults.py``) ``kill -9`` in the middle of a batch loses nothing.
"""

from __future__ import annotations

import math
import threading

import pytest

pytest.importorskip("psycopg")

from pgdb import assert_counters_match, db

from martian_doves.clock import FakeClock
from martian_doves.config import PostgresOptions, WorkerOptions
from martian_doves.errors import ClaimLost, CodecError
from martian_doves.model import JOIN_STATE, Child, Claim, State, Successor, WaitFor
from martian_doves.registry import Registry
from martian_doves.stores.base import BatchCommitStore, Committed
from martian_doves.stores.postgres import PostgresStore, Q, commits
from martian_doves.worker import Worker


def test_concurrent_batch_claims_never_hand_a_state_out_twice(pg_url: str, pg_store: PostgresStore) -> None:
    pg_store.submit([State(f"s{i:04d}.state", "countdown", {"count": 1}) for i in range(600)])
    other = PostgresStore(pg_url, PostgresOptions(claim_batch=5))
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(opened: PostgresStore, worker: str) -> None:
        while batch := opened.claim(worker, 7):
            with lock:
                claimed.extend(claim.name for claim in batch)

    threads = [threading.Thread(target=claimer, args=(opened, f"w{i}"))
               for i, opened in enumerate([pg_store, other] * 4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        other.close()
    assert len(claimed) == 600 and len(set(claimed)) == 600
    assert db(pg_url, "SELECT count(DISTINCT token) FROM states WHERE status = 'in_progress'") == [(600,)]


def test_commit_many_commits_plain_transitions_together_and_leaves_the_rest(pg_url: str,
                                                                               pg_store: PostgresStore) -> None:
    assert isinstance(pg_store, BatchCommitStore)
    pg_store.submit([State(f"b{i}.state", "countdown", {"count": 3}) for i in range(6)]
                 + [State("b5.state-1", "other", {})])  # takes the first successor name of b5
    claims = {claim.name: claim for claim in pg_store.claim("w", 6, {"countdown"})}
    db(pg_url, "UPDATE states SET token = 'theirs' WHERE name = 'b4.state'")  # taken over meanwhile
    transitions: list[tuple[Claim, Successor | None]] = [
        (claims["b0.state"], Successor("countdown", {"count": 2})),  # chained: kept for us
        (claims["b1.state"], None),  # the machine's end
        (claims["b2.state"], Successor("countdown", {"count": math.nan})),  # cannot be stored
        (claims["b3.state"], Successor("countdown", {"count": 2}, not_before=9e9)),  # a timer: not kept
        (claims["b4.state"], Successor("countdown", {"count": 2})),  # lost
        (claims["b5.state"], Successor("countdown", {"count": 2})),  # its name is taken
    ]
    outcomes = pg_store.commit_many(transitions, keep=True)
    kept, end, bad, timer, lost, taken = outcomes
    assert isinstance(kept, Committed) and kept.successor is not None
    assert (kept.successor.name, kept.successor.state.payload) == ("b0.state-1", {"count": 2})
    assert end == Committed(None) and timer == Committed(None)
    assert (bad, lost, taken) == (None, None, None)
    assert db(pg_url, "SELECT name, status FROM states WHERE name LIKE 'b0%%' OR name LIKE 'b3%%' ORDER BY name") == [
        ("b0.state", "done"), ("b0.state-1", "in_progress"), ("b3.state", "done"), ("b3.state-1", "pending")]
    # What the batch left is committed alone, which says why or does it.
    with pytest.raises(CodecError):
        pg_store.commit(*transitions[2])
    with pytest.raises(ClaimLost):
        pg_store.commit(*transitions[4])
    pg_store.commit(*transitions[5])
    assert db(pg_url, "SELECT name FROM states WHERE parent = 'b5.state'") == [("b5.state-1~2",)]
    # A batch retried after its reply was lost: every one of it is done already.
    again = pg_store.commit_many([transitions[1]], keep=True)
    assert again == [None]
    pg_store.commit(*transitions[1])  # "my earlier try did it": no error, nothing written twice
    assert_counters_match(pg_url)


def test_commit_many_ends_child_machines_together_and_wakes_each_join_once_the_last_ended(
        pg_url: str, pg_store: PostgresStore) -> None:
    """A fan-out's children end a batch at a time: their joins' locks held, each join woken once no
    child of it runs, and not before."""
    pg_store.submit([State("f.state", "fan", {}), State("g.state", "fan", {})])
    for spawner in pg_store.claim("w", 2, {"fan"}):
        children = tuple(Child("item", {"i": i}) for i in range(3))
        pg_store.commit(spawner, Successor(JOIN_STATE, {}, wait=WaitFor("collect", children=3), children=children))
    claims = {claim.name: claim for claim in pg_store.claim("w", 6, {"item"})}
    assert len(claims) == 6
    # Every child of f, and two of g's three: f's join is due, g's still waits.
    ending = [name for name in sorted(claims) if name != "g.state+2.state"]
    outcomes = pg_store.commit_many([(claims[name], None) for name in ending])
    assert outcomes == [Committed(None)] * 5
    assert [claim.name for claim in pg_store.claim("w", 10)] == ["f.state-1"]
    assert pg_store.commit_many([(claims["g.state+2.state"], None)]) == [Committed(None)]
    assert [claim.name for claim in pg_store.claim("w", 10)] == ["g.state-1"]
    assert_counters_match(pg_url)


def test_a_commit_finds_its_row_by_name_whatever_the_statistics_say(pg_url: str, pg_store: PostgresStore) -> None:
    """Not through the lease index, which holds an entry for every claim since the last vacuum
    (migration 0007): the statistics say few rows are claimed, and a commit must not believe it."""
    pg_store.submit([State(f"p{i}.state", "countdown", {"count": 3}) for i in range(300)])
    for claim in pg_store.claim("w", 200):
        pg_store.commit(claim, None)
    [claim] = pg_store.claim("w", 1)
    db(pg_url, "ANALYZE states")
    params = commits.params_for(claim, Successor("countdown", {"count": 2}), True, pg_store.options, "c")
    for name in ("commit_keep", "commit_end", "commit_pass", "release"):
        plan = "\n".join(row[0] for row in db(pg_url, f"EXPLAIN {Q[name]}", params))
        assert "states_pkey" in plan and "states_leases" not in plan, (name, plan)
    items = {key: [params[field]] for key, field in commits._BATCH_FIELDS.items()}
    plan = "\n".join(row[0] for row in db(pg_url, f"EXPLAIN {Q['commit_batch']}", {**items, "lease": 1.0,
                                                                                   "channel": "c"}))
    assert "states_leases" not in plan, plan


@pytest.mark.parametrize(("tick_seconds", "expected"), [(0.0, [1, 2, 4, 8, 16, 32, 64, 64]), (0.02, [1] * 8)])
def test_a_worker_left_to_adapt_batches_short_ticks_and_claims_slow_ones_one_by_one(
        pg_store: PostgresStore, tick_seconds: float, expected: list[int]) -> None:
    """Without --prefetch, a worker doubles its batch while ticks are short and stays at one while
    they are slow (a batch would hold slow states in one worker while others idle).

    The worker times ticks on its clock; here only the ticks move it, so a tick of 0 s stays one of
    0 s on a machine busy enough to stretch it past ``FAST_TICK_SECONDS``."""
    clock = FakeClock()

    def nap(payload: dict[str, object]) -> None:
        clock.advance(tick_seconds)

    registry = Registry()
    registry.register("nap", nap)

    pg_store.submit([State(f"n{i:03}.state", "nap", {}) for i in range(sum(expected))])
    worker = Worker(pg_store, registry, WorkerOptions(name="adapting", chain=False), clock=clock)
    assert worker.options.prefetch is None
    assert [worker.step().claimed for _ in expected] == expected
    assert pg_store.status().done == sum(expected)
