"""The general commit of the PostgreSQL store: a successor's name, a waiting entry's lock, retries.

``PostgresStore.commit`` runs the fast statement of a commit (``commit_end``,
``commit_keep``, ``commit_pass``) and falls back on the general one (``commit``) when the
first successor name is taken; a commit that makes a waiting entry, spawns children or
ends a child machine runs in a transaction holding the lock of what wakes that entry.
Plain commits of several claims run together in one statement (``write_batch``).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

import psycopg

from martian_doves import codec
from martian_doves.errors import InvalidDocument, UnsafeName
from martian_doves.model import Claim, JSONDict, State, Successor
from martian_doves.stores.postgres.machines import join_key, lock, mail_key, wake_join
from martian_doves.stores.postgres.sql import Q

if TYPE_CHECKING:
    from martian_doves.config import PostgresOptions
    from martian_doves.stores.postgres.connector import Conn

#: Successor names the general commit considers (branches ~2, ~3 ... of the first).
CANDIDATES = 100


def storable(max_state_bytes: int, name: str, state: str, payload: JSONDict, *, join: bool = False) -> str:
    """``payload`` as jsonb text, checked as a folder would check the file.

    Args:
        join: a join's successor, ``max_state_bytes`` the join limit.

    Raises:
        CodecError: too large, or not JSON a state file (and jsonb) can hold.
    """
    # As in a folder: a successor over the size limit fails the tick that made it.
    codec.encode(State(name, state, payload), max_state_bytes, join=join)
    try:  # jsonb has no NaN or Infinity: refuse them here, as a bad return value
        return json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidDocument(f"{name}: payload is not storable JSON: {e}") from e


def params_for(claim: Claim, successor: Successor | None, keep: bool, options: PostgresOptions,
               channel: str) -> dict[str, Any]:
    """The parameters of a commit's statements, every payload checked first.

    Raises:
        CodecError: the successor (or a child) payload cannot be stored as JSON.
    """
    payload = wait = None
    limit = options.max_state_bytes
    if successor is not None:
        most, join = codec.successor_limit(claim.state, limit, options.max_join_bytes)
        payload = storable(most, f"successor of {claim.name}", successor.state, successor.payload, join=join)
        for index, spawned in enumerate(successor.children):  # all storable before anything is written
            codec.check_name(next(codec.child_names(claim.name, index)))
            storable(limit, f"child {index} of {claim.name}", spawned.state, spawned.payload)
        wait = None if successor.wait is None else json.dumps(successor.wait.as_dict(), allow_nan=False)
    later = successor is not None and (successor.wait is not None or (successor.not_before or 0.0) > time.time())
    return {
        "name": claim.name, "token": claim.token, "state": successor.state if successor else None,
        "payload": payload, "keep": keep and successor is not None and not later, "worker": claim.worker,
        "child_token": secrets.token_hex(8), "lease": options.lease_seconds, "channel": channel,
        "child": next(codec.successor_names(claim.name)), "wait": wait,
        "not_before": successor.not_before if successor else None,
    }


def kept_claim(claim: Claim, successor: Successor | None, params: dict[str, Any], child: str | None) -> Claim | None:
    """The claim on a committed successor inserted claimed for us (chaining), or None."""
    if not params["keep"] or child is None or successor is None:
        return None
    return Claim(State(child, successor.state, successor.payload, claim.name, claim.state.machine_name,
                       None, claim.state.origin), params["child_token"], claim.worker)


def lock_for(schema: str, claim: Claim, successor: Successor | None) -> str | None:
    """The lock a commit holds: the wait it creates, or the join a child machine's end wakes."""
    if successor is None:
        origin = claim.state.origin
        return None if origin is None else join_key(schema, origin.parent)
    if successor.children or (successor.wait is not None and successor.wait.is_join):
        return join_key(schema, claim.name)
    if successor.wait is not None:
        return mail_key(schema, claim.state.machine_name)
    return None


def write(conn: Conn, claim: Claim, params: dict[str, Any], first: str,
          savepoints: bool = False) -> tuple[bool, str | None]:
    """The commit's statements: ``first``, then the general one while a name is taken.

    Returns:
        Whether the claim is committed (now, or by an earlier try whose reply was lost),
        and the successor's name if it was kept for us.
    """
    # The fast statement first; the general one when the first successor name is
    # taken (UniqueViolation), and again if another insert took its choice meanwhile.
    for query in (first, Q["commit"], Q["commit"], Q["commit"]):
        if query is Q["commit"] and "candidates" not in params:
            params["candidates"] = list(islice(codec.successor_names(claim.name), CANDIDATES))
        try:
            # In a transaction a failed statement would end it: each try in a savepoint.
            with conn.transaction() if savepoints else contextlib.nullcontext():
                row = conn.execute(query, params).fetchone()
        except psycopg.errors.UniqueViolation:
            continue
        if row is not None:
            return True, row[0]
        owner = conn.execute(Q["owner"], params).fetchone()
        if owner is None or owner[1] != claim.token or owner[0] not in ("done", "in_progress"):
            return False, None
        if owner[0] == "done":  # an earlier try committed, and its reply was lost
            child = conn.execute(Q["kept_child"], params).fetchone()
            return True, child[0] if child else None
    raise UnsafeName(f"no free successor name for {claim.name} among the first {CANDIDATES}")


def write_batch(conn: Conn, items: Sequence[dict[str, Any]], lease: float, channel: str,
                savepoint: bool = False) -> dict[str, str | None]:
    """Plain commits (``PostgresStore.commit``'s parameters, no lock) in one statement.

    Args:
        savepoint: the caller's transaction goes on after this statement fails (a savepoint).

    Returns:
        The successor's name (None for a machine's end) of each parent settled, by the
        parent's name. One left out is not settled: the caller commits it alone, which
        tells a taken name, a lost claim or an earlier try that did it.
    """
    ordered = sorted(items, key=lambda item: item["name"])  # rows locked in one order by every batch
    params = {key: [item[field] for item in ordered] for key, field in _BATCH_FIELDS.items()}
    try:
        with conn.transaction() if savepoint else contextlib.nullcontext():
            rows = conn.execute(Q["commit_batch"], {**params, "lease": lease, "channel": channel}).fetchall()
    except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
        return {}  # a name taken meanwhile, two takeovers crossing: each commits alone
    return {parent: child for parent, child in rows}


def write_batch_ending(conn: Conn, items: Sequence[dict[str, Any]], ending: dict[str, str], schema: str,
                       lease: float, channel: str) -> dict[str, str | None]:
    """``write_batch`` of ``items`` among which child machines end (``ending``: the spawner of each, by name).

    Their joins' locks are held (in one order: two batches never wait on each other) and each
    join is woken after, as a single commit does: a fan-out's children end a batch at a time.
    """
    if not ending:
        return write_batch(conn, items, lease, channel)
    with conn.transaction():
        for spawner in sorted(set(ending.values())):
            lock(conn, join_key(schema, spawner))
        done = write_batch(conn, items, lease, channel, savepoint=True)
        for spawner in sorted({ending[name] for name in done if name in ending}):
            wake_join(conn, spawner, channel)
        return done


#: ``commit_batch``'s array parameters and the commit parameter each is made of.
_BATCH_FIELDS = {"names": "name", "tokens": "token", "children": "child", "states": "state",
                 "payloads": "payload", "keeps": "keep", "workers": "worker", "child_tokens": "child_token",
                 "not_befores": "not_before"}
