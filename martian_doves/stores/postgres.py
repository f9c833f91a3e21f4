"""PostgreSQL store: states in a table, SKIP LOCKED claims, fenced one-statement commits.

Every step is one autocommit statement (one round trip, one transaction); the SQL and
the reasoning behind each statement are in ``sql/queries.sql``. A claim takes over
expired leases, then due pending states (``FOR UPDATE SKIP LOCKED``). A commit marks
the parent done only while it is still claimed with our token, together with its
successor (named by ``codec.successor_names``, optionally claimed by us at once:
chaining). Tokens stay on a row after its claim ends, so an operation retried after a
lost connection can tell "my earlier try did it" from "my claim was taken over": a
successor is written exactly once. Leases run on the database's clock, so worker
hosts' clocks never matter. Wake-ups use ``LISTEN/NOTIFY`` with a polling fallback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

import psycopg
import psycopg.conninfo
from psycopg import sql
from psycopg_pool import ConnectionPool

from martian_doves import codec
from martian_doves.clock import Clock, SystemClock
from martian_doves.config import DEFAULT_SCHEMA, PostgresOptions
from martian_doves.errors import (
    ClaimLost,
    CodecError,
    ConfigError,
    InvalidDocument,
    NameTaken,
    StoreError,
    StoreUnavailable,
    UnsafeName,
    workers_alive_error,
)
from martian_doves.model import Claim, Failure, HistoryEntry, JSONDict, State, Status, StatusReport, WorkerInfo
from martian_doves.stores.base import SubmitResult, Successor
from martian_doves.stores.directory import fsops
from martian_doves.stores.directory.layout import REASON_SUFFIX, Layout
from martian_doves.stores.pgconfig import (
    URL_OPTIONS,
    Q,
    _migrations,
    parse_url,
)
from martian_doves.text import first_line

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = psycopg.Connection[tuple[Any, ...]]

#: Successor names the general commit considers (branches ~2, ~3 ... of the first).
_CANDIDATES = 100
#: Rows per statement when importing states.
_SUBMIT_CHUNK = 1000
#: TCP keepalive settings used unless the URL gives its own.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
class PostgresStore:
    """Store on a PostgreSQL schema. See the module docstring for the protocol."""

    mode = "postgres"

    def __init__(self, url: str, options: PostgresOptions | None = None, clock: Clock | None = None,
                 explicit: Collection[str] | None = None) -> None:
        """Connect, create or migrate the schema, and open the connection pool.

        Args:
            url: ``postgresql://`` URL; ``?schema=NAME`` picks the schema (see ``parse_url``).
            options: tuning; options given here win over the URL's.
            clock: stamps failure reasons; leases use the database's clock, waits real time.
            explicit: the fields of ``options`` that were given (see ``parse_url``).

        Raises:
            ConfigError: bad URL, schema name or options.
            StoreUnavailable: the server cannot be reached or refuses the connection.
        """
        self.conninfo, self.options, self.description = parse_url(url, options, explicit)
        self.schema: str = self.options.schema or DEFAULT_SCHEMA
        self.clock = clock or SystemClock()
        self.channel = f"doves_{self.schema}"
        self._host = socket.gethostname()
        self._closed = False
        #: Claims locked by a batch claim but not handed out yet (see ``claim_batch``).
        self._spare: list[Claim] = []
        self._spare_lock = threading.Lock()
        self._listener: Conn | None = None
        self._listen_lock = threading.Lock()
        self._woken = threading.Condition()
        if not self.options.create_schema:
            self._require_schema()
        self.migrate()
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            self.conninfo, min_size=1, max_size=self.options.pool_size, kwargs=self._connect_kwargs(),
            timeout=max(1.0, min(self.options.reconnect_seconds, 10.0)), name=f"doves-{self.schema}", open=True)

    def _connect_kwargs(self) -> dict[str, Any]:
        # Generic plans: our statements are index lookups whose plan never depends on
        # the values, and re-planning the commit's CTEs would cost more than running them.
        settings = f"-c search_path={self.schema} -c plan_cache_mode=force_generic_plan"
        if not self.options.synchronous_commit:
            settings += " -c synchronous_commit=off"
        # The application name lets an operator (and the fault tests) find this store's
        # sessions in pg_stat_activity: doves:SCHEMA:PID. Keepalives notice a peer that
        # vanished without a word (a partition) in about half a minute, unless the URL says.
        # What the URL sets itself wins (its options= come first, ours are added).
        given = psycopg.conninfo.conninfo_to_dict(self.conninfo)
        if given.get("options"):
            settings = f"{given['options']} {settings}"
        ours = {"application_name": f"doves:{self.schema[:45]}:{os.getpid()}",  # at most 63 bytes
                "connect_timeout": max(1, round(self.options.connect_timeout_seconds)), **_KEEPALIVES}
        return {"autocommit": True, "options": settings, **{k: v for k, v in ours.items() if k not in given}}

    def _connect(self) -> Conn:
        try:
            return psycopg.connect(self.conninfo, **self._connect_kwargs())
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"cannot connect to {self.description}: {first_line(e)}") from e

    @contextlib.contextmanager
    def _durable(self, conn: Conn, transaction: bool = False) -> Iterator[None]:
        """Statements (in a transaction if asked) that wait for their WAL flush in any case.

        Submitting and re-queueing are what a server crash must never undo (a state
        reported added would be lost); a worker's transitions may be, as they run again.
        """
        if self.options.synchronous_commit and not transaction:
            yield
            return
        with conn.transaction():
            if not self.options.synchronous_commit:
                conn.execute("SET LOCAL synchronous_commit = on")
            yield

    def _run(self, what: str, operation: Callable[[Conn, int], T]) -> T:
        """Run ``operation(conn, attempt)``, retrying on lost connections for a while.

        ``attempt`` > 0 tells the operation that an earlier try may have taken effect.

        Raises:
            StoreUnavailable: the server stayed unreachable for ``reconnect_seconds``.
            StoreError: any other database error.
        """
        # Real time, whatever clock the store was given: this waits for a real server.
        deadline = time.monotonic() + self.options.reconnect_seconds
        delay, attempt = 0.05, 0
        while True:
            try:
                with self._pool.connection() as conn:
                    return operation(conn, attempt)
            except psycopg.OperationalError as e:
                if self._closed or time.monotonic() >= deadline:
                    raise StoreUnavailable(f"{what}: {self.description} is unreachable: {first_line(e)}") from e
                log.warning("%s: database connection lost (%s); retrying", what, first_line(e),
                            extra={"action": "reconnect"})
            except psycopg.Error as e:
                raise StoreError(f"{what} failed on {self.description}: {first_line(e)}") from e
            time.sleep(delay)
            delay, attempt = min(delay * 2, 1.0), attempt + 1

    def _require_schema(self) -> None:
        """Raise ``ConfigError`` unless this store's schema exists (see ``create_schema``)."""
        try:
            with self._connect() as conn:
                found = conn.execute(Q["has_versions"], {"table": f"{self.schema}.schema_version"}).fetchone()
        except psycopg.Error as e:
            raise StoreError(f"cannot read {self.description}: {first_line(e)}") from e
        if found == (None,):
            raise ConfigError(f"no store at {self.description}: schema {self.schema} does not exist "
                              "(doves submit or doves migrate creates it)")

    def migrate(self) -> int:
        """Create the schema or bring it to the latest version; safe to run concurrently.

        Returns:
            The schema version reached.

        Raises:
            StoreUnavailable: the server cannot be reached.
            ConfigError: the schema is newer than this release understands.
        """
        scripts = _migrations()
        with self._connect() as conn:
            try:
                # Read-only first: an up-to-date schema needs no lock and no CREATE privilege.
                if conn.execute(Q["has_versions"], {"table": f"{self.schema}.schema_version"}).fetchone() != (None,):
                    row = conn.execute(Q["version"]).fetchone()
                    if row is not None and row[0] == scripts[-1][0]:
                        return int(row[0])
                with conn.transaction():
                    # Serialises concurrent first opens (two workers starting at once).
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"doves-migrate:{self.schema}",))
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                    conn.execute(Q["version_table"])
                    row = conn.execute(Q["version"]).fetchone()
                    current = int(row[0]) if row else 0
                    if current > scripts[-1][0]:
                        raise ConfigError(f"schema {self.schema} is at version {current}, newer than this "
                                          f"release supports ({scripts[-1][0]}); upgrade martian-doves")
                    for version, script in scripts:
                        if version > current:
                            conn.execute(script.encode())
                            conn.execute(Q["set_version"], {"version": version})
                            log.info("schema %s migrated to version %d", self.schema, version,
                                     extra={"action": "migrate"})
                            current = version
            except psycopg.OperationalError as e:
                raise StoreUnavailable(f"cannot migrate {self.description}: {first_line(e)}") from e
            except psycopg.Error as e:
                raise StoreError(f"cannot migrate {self.description}: {first_line(e)}") from e
        return current

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
                with self._durable(conn):
                    added = {row[0] for row in conn.execute(Q["submit"], params)}
                    if attempt:  # an earlier try may have committed before its reply was lost
                        added |= {row[0] for row in conn.execute(Q["submitted"], params)}
                return added

            added = self._run("submit", insert)
            for index, name, _, _ in chunk:
                results[index] = SubmitResult(name, name in added, None if name in added else NameTaken.__doc__)
                added.discard(name)  # the same name twice in one call: the second is refused
        return [results[index] for index in range(len(states))]

    @property
    def lease_seconds(self) -> float:
        return self.options.lease_seconds

    def _worker_params(self, worker: str) -> dict[str, Any]:
        return {"worker": worker, "host": self._host, "pid": os.getpid(), "lease": self.options.lease_seconds,
                "channel": self.channel}

    def register_worker(self, worker: str) -> None:
        """Record ``worker`` as alive (and drop registrations dead for ten leases)."""
        self._run("register", lambda conn, _: conn.execute(Q["register_worker"], self._worker_params(worker)))

    def unregister_worker(self, worker: str) -> None:
        """Remove ``worker``'s registration and give back every state it still holds."""
        with self._spare_lock:
            self._spare = [c for c in self._spare if c.worker != worker]
        self._run("unregister", lambda conn, _: conn.execute(Q["unregister_worker"], self._worker_params(worker)))

    def claim(self, worker: str, limit: int) -> list[Claim]:
        """Claim up to ``limit`` runnable states, taking over expired leases first.

        Returns:
            The claims, ``[]`` when nothing is runnable now.
        """
        with self._spare_lock:
            mine = [c for c in self._spare if c.worker == worker][:limit]
            self._spare = [c for c in self._spare if c not in mine]
        if mine:
            return mine
        batch = secrets.token_hex(8)
        params = {"limit": max(limit, self.options.claim_batch), "worker": worker, "batch": batch,
                  "lease": self.options.lease_seconds, "pattern": f"{batch}.%"}

        def take(conn: Conn, attempt: int) -> list[tuple[Any, ...]]:
            if attempt:  # the claim may have been made before the connection dropped: adopt it
                adopted = conn.execute(Q["adopt"], params).fetchall()
                if adopted:
                    return adopted
            return conn.execute(Q["claim"], params).fetchall()

        claims = []
        for name, state, payload, parent, token, attempts, errors, taken_over in self._run("claim", take):
            claims.append(Claim(State(name, state, payload, parent), token, worker, attempts, tuple(errors)))
            if taken_over:
                log.warning("took over %s from a worker that stopped renewing its lease", name,
                            extra={"action": "takeover", "state_name": name})
        with self._spare_lock:
            self._spare.extend(claims[limit:])
        return claims[:limit]

    def wait_for_work(self, timeout_seconds: float) -> None:
        """Block until a NOTIFY arrives, a delayed state falls due, or the timeout passes."""
        with self._spare_lock:
            if self._spare:
                return
        timeout = min(timeout_seconds, self.options.poll_seconds)
        try:
            due = self._run("wait", lambda conn, _: conn.execute(Q["next_due"]).fetchone())
            if due and due[0] is not None:
                timeout = min(timeout, max(0.01, float(due[0])))
        except StoreError:
            pass  # the wait itself is the back-off
        if not self._listen_lock.acquire(blocking=False):
            with self._woken:  # another thread listens, and wakes us all on a notification
                self._woken.wait(timeout)
            return
        try:
            if self._listener is None or self._listener.closed:
                self._listener = self._connect()
                self._listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                # A NOTIFY sent before LISTEN took effect is lost: look for work once more.
                timeout = 0.0
            for _ in self._listener.notifies(timeout=timeout, stop_after=1) if timeout > 0 else ():
                pass
        except (psycopg.Error, StoreError) as e:
            # Polling carries on; the listener is rebuilt on the next wait.
            log.debug("LISTEN connection failed (%s); polling", first_line(e))
            if self._listener is not None:
                self._listener.close()
            self._listener = None
            time.sleep(min(timeout, 0.5))
        finally:
            self._listen_lock.release()
        with self._woken:
            self._woken.notify_all()

    def heartbeat(self, worker: str, claims: Sequence[Claim]) -> list[Claim]:
        """Extend the leases of ``claims`` and of claims this process holds for ``worker``.

        Returns:
            The claims whose tokens no longer match (taken over); drop them.
        """
        with self._spare_lock:
            spare = [c for c in self._spare if c.worker == worker]
        every = [*claims, *spare]
        params = {**self._worker_params(worker), "names": [c.name for c in every], "tokens": [c.token for c in every]}
        held = self._run("heartbeat", lambda conn, _: {r[0] for r in conn.execute(Q["heartbeat"], params)})
        with self._spare_lock:
            self._spare = [c for c in self._spare if c not in spare or c.token in held]
        return [c for c in claims if c.token not in held]

    def _fenced(self, what: str, query: str, claim: Claim, status: Status, params: dict[str, Any]) -> None:
        """Run a claim-checked update; a no-op retry of our own earlier try counts as done."""
        full = {"name": claim.name, "token": claim.token, "channel": self.channel, **params}

        def apply(conn: Conn, _: int) -> bool:
            if conn.execute(query, full).fetchall():
                return True
            owner = conn.execute(Q["owner"], full).fetchone()
            return owner is not None and owner[1] == claim.token and owner[0] == status.value

        if not self._run(what, apply):
            raise ClaimLost(f"claim on {claim.name} was taken over")

    def commit(self, claim: Claim, successor: Successor | None, *, keep: bool = False) -> Claim | None:
        """Write ``successor`` exactly once and mark the claimed state done, atomically.

        Args:
            claim: the claim being committed.
            successor: ``(state name, payload)`` or None when the machine ends.
            keep: insert the successor already claimed by the same worker and return
                that claim (declined, None, when the successor existed already).

        Returns:
            The claim on the successor when ``keep`` was honoured, else None.

        Raises:
            ClaimLost: the claim was taken over; nothing was committed.
            CodecError: the successor payload cannot be stored as JSON, or every
                candidate name is taken by other machines' states.
        """
        payload = None
        if successor is not None:
            # As in a folder: a successor over the size limit fails the tick that made it.
            codec.encode(State(f"successor of {claim.name}", *successor), self.options.max_state_bytes)
            try:  # jsonb has no NaN or Infinity: refuse them here, as a bad return value
                payload = json.dumps(successor[1], allow_nan=False)
            except (TypeError, ValueError) as e:
                raise InvalidDocument(f"{claim.name}: successor payload is not storable JSON: {e}") from e
        params: dict[str, Any] = {
            "name": claim.name, "token": claim.token, "state": successor[0] if successor else None,
            "payload": payload, "keep": keep and successor is not None, "worker": claim.worker,
            "child_token": secrets.token_hex(8), "lease": self.options.lease_seconds, "channel": self.channel,
            "child": next(codec.successor_names(claim.name)),
        }
        fast = Q["commit_end"] if successor is None else Q["commit_keep"] if params["keep"] else Q["commit_pass"]

        def write(conn: Conn, _: int) -> tuple[bool, str | None]:
            # The fast statement first; the general one when the first successor name is
            # taken (UniqueViolation), and again if another insert took its choice meanwhile.
            for query in (fast, Q["commit"], Q["commit"], Q["commit"]):
                try:
                    row = conn.execute(query, params).fetchone()
                except psycopg.errors.UniqueViolation:
                    params["candidates"] = list(islice(codec.successor_names(claim.name), _CANDIDATES))
                    continue
                if row is not None:
                    return True, row[0]
                owner = conn.execute(Q["owner"], params).fetchone()
                if owner is None or owner[1] != claim.token or owner[0] not in ("done", "in_progress"):
                    return False, None
                if owner[0] == "done":  # an earlier try committed, and its reply was lost
                    child = conn.execute(Q["kept_child"], params).fetchone()
                    return True, child[0] if child else None
                params["candidates"] = list(islice(codec.successor_names(claim.name), _CANDIDATES))
            raise UnsafeName(f"no free successor name for {claim.name} among the first {_CANDIDATES}")

        committed, child = self._run("commit", write)
        if not committed:
            raise ClaimLost(f"claim on {claim.name} was taken over before commit")
        if not params["keep"] or child is None or successor is None:
            return None
        return Claim(State(child, successor[0], successor[1], claim.name), params["child_token"], claim.worker)

    def retry_later(self, claim: Claim, delay_seconds: float, error: str) -> None:
        """Give the state back, due after ``delay_seconds``, one attempt used.

        Raises:
            ClaimLost: the claim was taken over.
        """
        self._fenced("retry", Q["retry_later"], claim, Status.PENDING, {"delay": delay_seconds, "error": error})

    def release(self, claim: Claim) -> None:
        """Give the state back at once without using an attempt.

        Raises:
            ClaimLost: the claim was taken over.
        """
        self._fenced("release", Q["release"], claim, Status.PENDING, {})

    def fail(self, claim: Claim, failure: Failure) -> None:
        """Mark the state failed with ``failure`` as its machine-readable reason.

        Raises:
            ClaimLost: the claim was taken over.
        """
        reason = {"name": claim.name, "worker": claim.worker, "failed_at": self.clock.time(), **failure.as_dict()}
        self._fenced("fail", Q["fail"], claim, Status.FAILED, {
            "attempts": failure.attempts, "errors": json.dumps(list(failure.errors)), "reason": json.dumps(reason)})

    def status(self) -> StatusReport:
        """Counts, workers, oldest pending state and recent failures."""
        def read(conn: Conn, _: int) -> StatusReport:
            counts = {status: 0 for status in Status}
            counts.update({Status(status): int(count) for status, count in conn.execute(Q["counts"])})
            oldest = conn.execute(Q["oldest_pending"]).fetchone()
            workers = [WorkerInfo(*row) for row in conn.execute(Q["workers"], {"lease": self.options.lease_seconds})]
            failures = [(n, c, m) for n, c, m in conn.execute(Q["recent_failures"])]
            return StatusReport(
                counts[Status.PENDING], counts[Status.IN_PROGRESS], counts[Status.DONE], counts[Status.FAILED],
                workers, oldest[0] if oldest else None, failures,
                {"store": self.description, "mode": self.mode, "schema": self.schema})

        return self._run("status", read)

    def history(self, name: str) -> list[HistoryEntry]:
        """The lineage containing ``name`` (from its submitted root), oldest first."""
        def read(conn: Conn, _: int) -> list[tuple[Any, ...]]:
            root = conn.execute(Q["root_of"], {"name": name}).fetchone()
            if root is None:
                return []
            # Every successor of a lineage is named base-N[~B]: one key range of the index.
            first = next(codec.successor_names(root[0]))
            low = first[: first.rindex("-") + 1]
            return conn.execute(Q["history"], {"root": root[0], "low": low, "high": low[:-1] + "."}).fetchall()

        return [HistoryEntry(r[0], r[1], Status(r[2]), *r[3:]) for r in self._run("history", read)]

    def is_finished(self) -> bool:
        """True when no state is pending (due now or later) and none is claimed."""
        row = self._run("is_finished", lambda conn, _: conn.execute(Q["is_finished"]).fetchone())
        return bool(row and row[0])

    def reset(self, *, successors: bool) -> int:
        """Forget every outcome so every state runs again; optionally delete successors.

        Returns:
            How many states are pending again.

        Raises:
            ConfigError: live workers are registered on this store.
        """
        def apply(conn: Conn, _: int) -> int:
            with self._durable(conn, transaction=True):
                live = [row[0] for row in conn.execute(Q["live_workers"], {"lease": self.options.lease_seconds})]
                if live:
                    raise workers_alive_error(live)
                if successors:
                    conn.execute(Q["delete_successors"])
                row = conn.execute(Q["reset"], {"everything": True, "names": None, "channel": self.channel}).fetchone()
                return int(row[0]) if row else 0

        return self._run("reset", apply)

    def retry_failed(self, names: Sequence[str] | None = None) -> int:
        """Make failed states (all, or those named) pending again with fresh attempts.

        Returns:
            How many states were made pending.
        """
        params = {"everything": False, "names": None if names is None else list(names), "channel": self.channel}

        def apply(conn: Conn, _: int) -> int:
            with self._durable(conn):
                row = conn.execute(Q["reset"], params).fetchone()
            return int(row[0]) if row else 0

        return self._run("retry_failed", apply)

    def export(self, directory: str) -> int:
        """Write every state to ``directory`` in the lease directory-store layout.

        State files by lineage name, ``done/`` markers, ``failed/NAME`` with its reason,
        ``pending/`` hints (claimed states too: a claim means nothing elsewhere), so
        ``doves run DIRECTORY`` or any file tool reads them. Never overwrites a file.

        Returns:
            How many state files were written.

        Raises:
            ConfigError: the directory cannot be created.
        """
        layout = Layout(os.path.abspath(directory))
        if os.path.exists(layout.root) and not os.path.isdir(layout.root):
            raise ConfigError(f"cannot export to {layout.root}: it is a file, not a folder")
        try:
            layout.create()
        except OSError as e:
            raise ConfigError(f"cannot export to {layout.root}: {e.strerror}") from e
        clashes: list[str] = []

        def dump(conn: Conn, _: int) -> int:
            clashes.clear()  # a retry after a lost connection starts over (and finds its own files)
            # A server-side cursor: millions of states stream through in small batches.
            with conn.transaction(), conn.cursor(name=f"doves_export_{secrets.token_hex(4)}") as cursor:
                cursor.itersize = 500
                return sum(self._export_one(layout, clashes, *row) for row in cursor.execute(Q["export"]))

        exported = self._run("export", dump)
        if clashes:
            log.warning("%d state(s) not exported: %s holds other files of those names (%s%s)", len(clashes),
                        layout.root, ", ".join(clashes[:5]), ", ..." if len(clashes) > 5 else "",
                        extra={"action": "export"})
        return exported

    def _export_one(self, layout: Layout, clashes: list[str], name: str, state: str, payload: JSONDict,
                    parent: str | None,
                    status: str, attempts: int, errors: list[str], not_before: float, worker: str | None,
                    token: str | None, claimed_at: float | None, reason: JSONDict | None) -> int:
        try:
            codec.check_name(name)
            data = codec.encode(State(name, state, payload, parent))
        except CodecError as e:
            log.warning("not exporting %r: %s", name, e.message, extra={"action": "export"})
            return 0
        folder = layout.failed if status == Status.FAILED.value else layout.root
        path = os.path.join(folder, name)
        if not layout.write_new(path, data):
            try:  # exported before (again, or by an earlier try of this export): already there
                same = fsops.read_regular(path, len(data)) == data
            except (OSError, CodecError):
                same = False
            if not same:
                clashes.append(name)
                return 0
        # Markers too are written only where missing (an earlier try may have stopped short).
        info = {"attempts": attempts, "errors": errors}
        if status == Status.DONE.value:
            marker = json.dumps({"worker": worker, "token": token, "claimed_at": claimed_at, **info}).encode()
            layout.write_new(os.path.join(layout.done, name), marker)
        elif status == Status.FAILED.value:
            text = json.dumps(reason or {"name": name, "code": "error", "message": "failed"}, indent=2).encode()
            layout.write_new(os.path.join(layout.failed, name + REASON_SUFFIX), text)
        else:
            hint = json.dumps(info).encode() if attempts else b""
            layout.write_new(os.path.join(layout.pending, name), hint, mtime=not_before)
        return 1

    def close(self) -> None:
        """Give back spare claims and close every connection."""
        with self._spare_lock:
            spare, self._spare = self._spare, []
        for claim in spare:
            try:
                self.release(claim)
            except (ClaimLost, StoreError):
                pass
        self._closed = True
        self._pool.close()
        if self._listener is not None:
            self._listener.close()


__all__ = ["DEFAULT_SCHEMA", "URL_OPTIONS", "PostgresOptions", "PostgresStore", "parse_url"]
