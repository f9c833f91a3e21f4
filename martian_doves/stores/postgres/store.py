"""PostgreSQL store: states in a table, SKIP LOCKED claims, fenced one-statement commits.

Every ordinary step is one autocommit statement (one round trip, one transaction); a
wait, a spawn, a child machine's end and an event sent are a short transaction that
first takes the lock of what wakes the waiting entry. The SQL and the reasoning behind
each statement are in ``sql/queries.sql``. A claim takes over
expired leases, then due pending states (``FOR UPDATE SKIP LOCKED``). A commit marks
the parent done only while it is still claimed with our token, together with its
successor (named by ``codec.successor_names``, optionally claimed by us at once:
chaining). Tokens stay on a row after its claim ends, so an operation retried after a
lost connection can tell "my earlier try did it" from "my claim was taken over": a
successor is written exactly once. Leases run on the database's clock, so worker
hosts' clocks never matter. Wake-ups use ``LISTEN/NOTIFY`` with a polling fallback.

Timers and waiting entries are rows due later (a waiting entry: at its deadline, or not
before its event or its children); mailboxes, children and joins are ``machines.py``'s,
the general commit (a branch name, a waiting entry's lock) ``commits.py``'s.

This module holds what states mean; sessions, outages and the NOTIFY listener are the
connector's (``connector.py``), status and history ``views.py``'s, migrations
``schema.py``'s, writing the states back as a folder is ``export.py``'s.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Collection, Sequence
from typing import Any

from martian_doves import codec
from martian_doves.clock import Clock, SystemClock
from martian_doves.config import PostgresOptions
from martian_doves.errors import (
    ClaimLost,
    CodecError,
    InvalidDocument,
    MalformedJSON,
    NameTaken,
    StoreError,
    workers_alive_error,
)
from martian_doves.model import (
    MAX_KEPT_ERRORS,
    ChildOutcome,
    Claim,
    Failure,
    HistoryEntry,
    MachineEvent,
    State,
    Status,
    StatusReport,
)
from martian_doves.stores.base import Committed, SubmitResult, Successor
from martian_doves.stores.postgres import commits, machines, schema, views
from martian_doves.stores.postgres.connector import Conn, PostgresConnector, Unreadable
from martian_doves.stores.postgres.export import export as export_to_folder
from martian_doves.stores.postgres.idle import IdleStamps, QuietWait
from martian_doves.stores.postgres.inspection import PostgresInspection
from martian_doves.stores.postgres.sql import Q
from martian_doves.stores.postgres.url import parse_url

log = logging.getLogger(__name__)

#: Rows per statement when importing states.
_SUBMIT_CHUNK = 1000


class PostgresStore(PostgresInspection):
    """Store on a PostgreSQL schema. See the module docstring for the protocol."""

    mode = "postgres"

    def __init__(self, url: str, options: PostgresOptions | None = None, clock: Clock | None = None,
                 explicit: Collection[str] | None = None, *, read_only: bool = False) -> None:
        """Connect, create or migrate the schema, and open the connection pool.

        Args:
            url: ``postgresql://`` URL; ``?schema=NAME`` picks the schema (see ``parse_url``).
            options: tuning; options given here win over the URL's.
            clock: stamps failure reasons; leases use the database's clock, waits real time.
            explicit: the fields of ``options`` that were given (see ``parse_url``).
            read_only: change nothing: the schema must exist, at this release's version.

        Raises:
            ConfigError: bad URL, schema name or options.
            StoreUnavailable: the server cannot be reached or refuses the connection.
        """
        self.conninfo, self.options, self.description = parse_url(url, options, explicit)
        #: Connections to the schema: pool, retries, durable blocks, NOTIFY wake-ups.
        self.connector = PostgresConnector(self.conninfo, self.options, self.description)
        self.schema = self.connector.schema
        self.channel = self.connector.channel
        self.clock = clock or SystemClock()
        self._host = socket.gethostname()
        #: Claims locked by a batch claim but not handed out yet (see ``claim_batch``).
        self._spare: list[Claim] = []
        self._spare_lock = threading.Lock()
        #: The state names each worker of this process registered with (None: all), for heartbeats.
        self._worker_states: dict[str, list[str] | None] = {}
        #: What an idle worker costs: no query between wake-ups, a stamp every quarter lease.
        self._quiet = QuietWait(self.connector, self.options.poll_seconds, self.clock)
        self._stamps = IdleStamps(self.options.lease_seconds, self.clock)
        if read_only or not self.options.create_schema:
            schema.require(self.connector, current=read_only)
        if not read_only:
            self.migrate()
        self.connector.open()

    def migrate(self) -> int:
        """Create the schema or bring it to the latest version; safe to run concurrently.

        Returns:
            The schema version reached.

        Raises:
            StoreUnavailable: the server cannot be reached.
            ConfigError: the schema is newer than this release understands.
        """
        return schema.migrate(self.connector)

    def submit(self, states: Sequence[State]) -> list[SubmitResult]:
        """Import root states; a name that exists already is refused, never replaced.

        Returns:
            One result per state, in order.
        """
        results: dict[int, SubmitResult] = {}
        rows: list[tuple[int, str, str, str]] = []
        for index, state in enumerate(states):
            try:
                codec.check_state_file_name(state.name)
                codec.encode(State(state.name, state.state, state.payload), self.options.max_state_bytes)
                rows.append((index, state.name, state.state, json.dumps(state.payload, allow_nan=False)))
            except CodecError as e:
                results[index] = SubmitResult(state.name, False, e.message)
        for start in range(0, len(rows), _SUBMIT_CHUNK):
            chunk = rows[start:start + _SUBMIT_CHUNK]
            params = {"names": [r[1] for r in chunk], "states": [r[2] for r in chunk],
                      "payloads": [r[3] for r in chunk], "batch": secrets.token_hex(8), "channel": self.channel}

            def insert(conn: Conn, attempt: int, params: dict[str, Any] = params) -> set[str]:
                with self.connector.durable(conn):
                    added = {row[0] for row in conn.execute(Q["submit"], params)}
                    if attempt:  # an earlier try may have committed before its reply was lost
                        added |= {row[0] for row in conn.execute(Q["submitted"], params)}
                return added

            added = self.connector.run("submit", insert)
            for index, name, _, _ in chunk:
                results[index] = SubmitResult(name, name in added, None if name in added else NameTaken.__doc__)
                added.discard(name)  # the same name twice in one call: the second is refused
        views.fold_counts(self.connector)  # a big submit's counters are folded here, not by the next status
        return [results[index] for index in range(len(states))]

    @property
    def lease_seconds(self) -> float:
        """How long a claim lasts without a heartbeat (``options.lease_seconds``)."""
        return self.options.lease_seconds

    def _worker_params(self, worker: str) -> dict[str, Any]:
        return {"worker": worker, "host": self._host, "pid": os.getpid(), "lease": self.options.lease_seconds,
                "channel": self.channel, "states": self._worker_states.get(worker)}

    def register_worker(self, worker: str, states: Collection[str] | None = None) -> None:
        """Record ``worker`` as alive with the states it can run (and drop registrations dead for ten leases)."""
        self._worker_states[worker] = None if states is None else sorted(states)
        self.connector.run("register", lambda conn, _: conn.execute(Q["register_worker"], self._worker_params(worker)))
        self._stamps.stamped(worker)

    def unregister_worker(self, worker: str) -> None:
        """Remove ``worker``'s registration and give back every state it still holds."""
        with self._spare_lock:
            self._spare = [c for c in self._spare if c.worker != worker]
        params = self._worker_params(worker)
        self.connector.run("unregister", lambda conn, _: conn.execute(Q["unregister_worker"], params))
        views.fold_counts(self.connector)

    def claim(self, worker: str, limit: int, states: Collection[str] | None = None) -> list[Claim]:
        """Claim up to ``limit`` runnable states, taking over expired leases first.

        Returns:
            The claims, ``[]`` when nothing is runnable now.
        """
        with self._spare_lock:
            mine = [c for c in self._spare if c.worker == worker][:limit]
            self._spare = [c for c in self._spare if c not in mine]
        if mine:
            return mine
        self._quiet.claiming()
        batch = secrets.token_hex(8)
        params = {"limit": max(limit, self.options.claim_batch), "worker": worker, "batch": batch,
                  "lease": self.options.lease_seconds, "pattern": f"{batch}.%", "states": machines.state_names(states)}

        def take(conn: Conn, attempt: int) -> list[tuple[Any, ...]]:
            if attempt:  # the claim may have been made before the connection dropped: adopt it
                adopted = conn.execute(Q["adopt"], params).fetchall()
                if adopted:
                    return adopted
            return conn.execute(Q["claim"], params).fetchall()

        claims = []
        for name, state, payload, parent, token, attempts, errors, retries, taken_over, due_at, *model in \
                self.connector.run("claim", take):
            claim = Claim(machines.state_of(name, state, payload, parent, *model), token, worker, attempts,
                          tuple(errors), retries, None if taken_over else due_at)
            if not self._readable(claim):
                continue
            claims.append(claim)
            if taken_over:
                log.warning("took over %s from a worker that stopped renewing its lease", name,
                            extra={"action": "takeover", "state_name": name})
        with self._spare_lock:
            self._spare.extend(claims[limit:])
        return claims[:limit]

    def _readable(self, claim: Claim) -> bool:
        """Whether a claimed state's payload is one a folder store would read; if not, it is failed.

        Rows can be written by anyone with access to the table: a payload no worker can load
        (an integer of more digits than Python converts) or that no state file could hold
        fails its state with the reason, once, instead of failing every worker that claims it.
        """
        payload: Any = claim.state.payload
        if isinstance(payload, Unreadable):
            failure = Failure(MalformedJSON.code, f"{claim.name}: {payload.reason}", None, claim.attempts, claim.errors)
        else:
            try:
                codec.check_payload(payload)
                return True
            except InvalidDocument as e:
                failure = Failure(e.code, f"{claim.name}: {e.message}", None, claim.attempts, claim.errors)
        log.error("state %s failed (%s): %s", claim.name, failure.code, failure.message,
                  extra={"action": "fail", "state_name": claim.name})
        try:
            self.fail(claim, failure)
        except ClaimLost:
            pass
        return False

    def wait_for_work(self, timeout_seconds: float) -> bool | None:
        """Block until a NOTIFY, a due time or the timeout; False: a claim would find nothing new."""
        with self._spare_lock:
            if self._spare:
                return True
        return self._quiet.wait(timeout_seconds)

    def heartbeat(self, worker: str, claims: Sequence[Claim]) -> list[Claim]:
        """Extend the leases of ``claims`` and of claims this process holds for ``worker``.

        Returns:
            The claims whose tokens no longer match (taken over); drop them.
        """
        with self._spare_lock:
            spare = [c for c in self._spare if c.worker == worker]
        every = [*claims, *spare]
        if not every and not self._stamps.due(worker):
            return []  # holding nothing, it only needs to look alive: stamped every quarter lease
        params = {**self._worker_params(worker), "names": [c.name for c in every], "tokens": [c.token for c in every]}
        held = self.connector.run("heartbeat", lambda conn, _: {r[0] for r in conn.execute(Q["heartbeat"], params)})
        self._stamps.stamped(worker)
        views.fold_counts(self.connector)
        with self._spare_lock:
            self._spare = [c for c in self._spare if c not in spare or c.token in held]
        return [c for c in claims if c.token not in held]

    def _fenced(self, what: str, query: str, claim: Claim, status: Status, params: dict[str, Any],
                key: str | None = None) -> None:
        """Run a claim-checked update; a no-op retry of our own earlier try counts as done.

        Args:
            key: the lock to hold (in one transaction with the update) when the update
                settles a waiting entry or ends a child machine; that wakes its join.
        """
        full = {"name": claim.name, "token": claim.token, "channel": self.channel, **params}

        def apply(conn: Conn, _: int) -> bool:
            if not key:
                return bool(conn.execute(query, full).fetchall()) or owned(conn)
            # One round trip for the lock, the update and the wake-up: sent together (a pipeline).
            with conn.pipeline(), conn.transaction():
                machines.lock(conn, key)
                cursor = conn.execute(query, full)
                if status is not Status.PENDING:  # it ended a child machine (idempotent: its join is woken
                    machines.child_ended(conn, claim.state, self.channel)  # only once no child runs)
                return bool(cursor.fetchall()) or owned(conn)

        def owned(conn: Conn) -> bool:
            owner = conn.execute(Q["owner"], full).fetchone()
            return owner is not None and owner[1] == claim.token and owner[0] == status.value

        if not self.connector.run(what, apply):
            raise ClaimLost(f"claim on {claim.name} was taken over")

    def commit(self, claim: Claim, successor: Successor | None, *, keep: bool = False) -> Claim | None:
        """Write ``successor`` exactly once and mark the claimed state done, atomically.

        A timer is a successor due later; a waiting entry waits for its event or its
        children, created in the same transaction (see ``Store.commit``).

        Args:
            claim: the claim being committed.
            successor: what follows, or None when the machine ends.
            keep: insert the successor already claimed by the same worker and return
                that claim (declined, None, when the successor existed already, or is
                scheduled or waiting).

        Returns:
            The claim on the successor when ``keep`` was honoured, else None.

        Raises:
            ClaimLost: the claim was taken over; nothing was committed.
            CodecError: the successor (or a child) payload cannot be stored as JSON, or
                every candidate name is taken by other machines' states.
        """
        successor = None if successor is None else Successor(*successor)  # a plain pair reads as one
        params = commits.params_for(claim, successor, keep, self.options, self.channel)
        key = commits.lock_for(self.schema, claim, successor)
        fast = Q["commit_end"] if successor is None else Q["commit_keep"] if params["keep"] else Q["commit_pass"]
        if successor is None and key is not None:  # a child machine's last tick: its end may wake the join
            self._fenced("commit", fast, claim, Status.DONE, {}, key)
            return None

        def write(conn: Conn, _: int) -> tuple[bool, str | None]:
            if key is None:
                return commits.write(conn, claim, params, fast)
            with conn.transaction():
                machines.lock(conn, key)
                if successor is not None and successor.children:
                    owner = conn.execute(Q["fence"], params).fetchone()
                    if owner is None or owner[1] != claim.token or owner[0] != Status.IN_PROGRESS.value:
                        return owner is not None and owner[1] == claim.token and owner[0] == "done", None
                    machines.spawn(conn, claim.name, successor.children)
                return commits.write(conn, claim, params, Q["commit"], savepoints=True)

        committed, child = self.connector.run("commit", write)
        if not committed:
            raise ClaimLost(f"claim on {claim.name} was taken over before commit")
        return commits.kept_claim(claim, successor, params, child)

    def commit_many(self, transitions: Sequence[tuple[Claim, Successor | None]], *,
                    keep: bool = False) -> list[Committed | None]:
        """Commit plain transitions and child machines' ends at once (one statement, one transaction,
        one WAL flush), each atomic as ``commit`` makes it; one with another lock or left out is None."""
        batch, ending = {}, {}  # ending: a child machine's end, by name: its spawner (whose join it wakes)
        for claim, successor in transitions:
            successor = None if successor is None else Successor(*successor)
            origin = claim.state.origin if successor is None else None
            if origin is not None or commits.lock_for(self.schema, claim, successor) is None:
                try:
                    batch[claim.name] = (claim, successor, commits.params_for(claim, successor, keep, self.options,
                                                                               self.channel))
                except CodecError:
                    continue  # ``commit`` says why
                if origin is not None:
                    ending[claim.name] = origin.parent
        try:
            settled = self.connector.run("commit", lambda conn, _: commits.write_batch_ending(
                conn, [params for _, _, params in batch.values()], ending, self.schema, self.options.lease_seconds,
                self.channel)) if batch else {}
        except StoreError:
            return [None] * len(transitions)  # each is committed alone, riding the outage out
        return [Committed(commits.kept_claim(*batch[claim.name], settled[claim.name]))
                if claim.name in settled else None for claim, _ in transitions]

    def retry_later(self, claim: Claim, delay_seconds: float, error: str, *, requested: bool = False) -> None:
        """Give the state back, due after ``delay_seconds``: one attempt used, or (``requested``) one retry.

        Raises:
            ClaimLost: the claim was taken over.
        """
        self._fenced("retry", Q["retry_later"], claim, Status.PENDING,
                     {"delay": delay_seconds, "error": error, "requested": requested, "kept": MAX_KEPT_ERRORS})

    def release(self, claim: Claim) -> None:
        """Give the state back at once without using an attempt; a waiting entry waits again.

        Raises:
            ClaimLost: the claim was taken over.
        """
        key = machines.lock_key(self.schema, claim.state)
        self._fenced("release", Q["release"] if key is None else Q["release_wait"], claim, Status.PENDING, {}, key)

    def fail(self, claim: Claim, failure: Failure) -> None:
        """Mark the state failed with ``failure`` as its machine-readable reason (ending its machine).

        Raises:
            ClaimLost: the claim was taken over.
        """
        reason = {"name": claim.name, "worker": claim.worker, "failed_at": self.clock.time(), **failure.as_dict()}
        origin = claim.state.origin
        self._fenced("fail", Q["fail"], claim, Status.FAILED, {
            "attempts": failure.attempts, "errors": json.dumps(list(failure.errors)), "reason": json.dumps(reason)},
            None if origin is None else machines.join_key(self.schema, origin.parent))

    def send(self, machine: str, event: str, data: Any) -> None:
        """Deliver an event to a machine's mailbox (see ``Store.send``).

        Raises:
            NoSuchMachine, MachineEnded: the machine is not in the store, or has ended.
            InvalidDocument: ``data`` is not JSON a state could hold.
        """
        machines.send(self.connector, machine, event, data)

    def take_event(self, claim: Claim) -> MachineEvent | None:
        """The event a claimed event wait receives, bound to it for good (see ``Store.take_event``)."""
        return machines.take_event(self.connector, claim)

    def children(self, claim: Claim) -> list[ChildOutcome] | None:
        """How each child of a claimed join ended, in order; None while one still runs."""
        return machines.children(self.connector, claim)

    def status(self) -> StatusReport:
        """Counts, workers, oldest pending state, recent failures, states no live worker can run."""
        return views.status(self.connector, self.options.lease_seconds,
                            {"store": self.description, "mode": self.mode, "schema": self.schema})

    def history(self, name: str) -> list[HistoryEntry]:
        """The lineage containing ``name`` (from its root), oldest first."""
        return views.history(self.connector, name)

    def machine_names(self, limit: int | None = None) -> list[str]:
        """Lineage roots (submitted states), newest first."""
        rows = self.connector.run("machine_names", lambda conn, _: conn.execute(Q["machine_names"], {"limit": limit})
                                  .fetchall())
        return [row[0] for row in rows]

    def is_finished(self, states: Collection[str] | None = None) -> bool:
        """True when no state is pending (due now or later) and none is claimed."""
        params = {"states": machines.state_names(states)}
        row = self.connector.run("is_finished", lambda conn, _: conn.execute(Q["is_finished"], params).fetchone())
        return bool(row and row[0])

    def reset(self, *, successors: bool) -> int:
        """Forget every outcome so every state runs again; optionally delete successors.

        Returns:
            How many states are pending again.

        Raises:
            ConfigError: live workers are registered on this store.
        """
        def apply(conn: Conn, _: int) -> int:
            with self.connector.durable(conn, transaction=True):
                live = [row[0] for row in conn.execute(Q["live_workers"], {"lease": self.options.lease_seconds})]
                if live:
                    raise workers_alive_error(live)
                if successors:
                    conn.execute(Q["delete_successors"])
                row = conn.execute(Q["reset"], {"everything": True, "names": None, "channel": self.channel}).fetchone()
                return int(row[0]) if row else 0

        return self.connector.run("reset", apply)

    def retry_failed(self, names: Sequence[str] | None = None) -> int:
        """Make failed states (all, or those named) pending again with fresh attempts.

        Returns:
            How many states were made pending.
        """
        params = {"everything": False, "names": None if names is None else list(names), "channel": self.channel}

        def apply(conn: Conn, _: int) -> int:
            with self.connector.durable(conn):
                row = conn.execute(Q["reset"], params).fetchone()
            return int(row[0]) if row else 0

        return self.connector.run("retry_failed", apply)

    def export(self, directory: str) -> int:
        """Write every state to ``directory`` in the folder-store layout (see ``export.export``).

        Returns:
            How many state files were written.

        Raises:
            ConfigError: the directory cannot be created.
        """
        return export_to_folder(self.connector, directory)

    def close(self) -> None:
        """Give back spare claims and close every connection."""
        with self._spare_lock:
            spare, self._spare = self._spare, []
        for claim in spare:
            try:
                self.release(claim)
            except (ClaimLost, StoreError):
                pass
        self.connector.close()


__all__ = ["PostgresStore"]
