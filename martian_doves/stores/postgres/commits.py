"""The general commit of the PostgreSQL store: a successor's name, a waiting entry's lock, retries.

``PostgresStore.commit`` runs the fast statement of a commit (``commit_end``,
``commit_keep``, ``commit_pass``) and falls back on the general one (``commit``) when the
first successor name is taken; a commit that makes a waiting entry, spawns children or
ends a child machine runs in a transaction holding the lock of what wakes that entry.
"""

from __future__ import annotations

import contextlib
import json
from itertools import islice
from typing import TYPE_CHECKING, Any

import psycopg

from martian_doves import codec
from martian_doves.errors import InvalidDocument, UnsafeName
from martian_doves.model import Claim, JSONDict, State, Successor
from martian_doves.stores.postgres.machines import join_key, mail_key
from martian_doves.stores.postgres.sql import Q

if TYPE_CHECKING:
    from martian_doves.stores.postgres.connector import Conn

#: Successor names the general commit considers (branches ~2, ~3 ... of the first).
CANDIDATES = 100


def storable(max_state_bytes: int, name: str, state: str, payload: JSONDict) -> str:
    """``payload`` as jsonb text, checked as a folder would check the file.

    Raises:
        CodecError: too large, or not JSON a state file (and jsonb) can hold.
    """
    # As in a folder: a successor over the size limit fails the tick that made it.
    codec.encode(State(name, state, payload), max_state_bytes)
    try:  # jsonb has no NaN or Infinity: refuse them here, as a bad return value
        return json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidDocument(f"{name}: payload is not storable JSON: {e}") from e


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
