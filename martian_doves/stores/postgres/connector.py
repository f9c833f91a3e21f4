"""Connections to a PostgreSQL store's schema: the pool, session settings, retries, wake-ups.

Knows nothing about states (``store.py`` does): it opens sessions set up for one
schema, runs operations again on a fresh connection when one is lost, makes a block
of statements wait for the WAL flush on demand, and waits on the schema's
``LISTEN/NOTIFY`` channel.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
import psycopg.conninfo
from psycopg import sql
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool

from martian_doves.config import DEFAULT_SCHEMA, PostgresOptions
from martian_doves.errors import StoreError, StoreUnavailable
from martian_doves.text import first_line

log = logging.getLogger(__name__)

T = TypeVar("T")
#: A connection as the store uses it: autocommit, rows as tuples.
Conn = psycopg.Connection[tuple[Any, ...]]

#: TCP keepalive settings used unless the URL gives its own.
#: How long a readable LISTEN socket is read for its notification (see ``_listen``).
_READ_SECONDS = 0.05
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


class Unreadable:
    """A json or jsonb value that Python cannot load, in place of the value.

    jsonb holds numbers of any length; Python refuses to convert an integer of more than
    4,300 digits (and deep nesting exhausts its parser). Reading such a row must not raise
    in the middle of a statement: whoever reads the column decides (a claimed state with
    such a payload is failed with this reason).
    """

    def __init__(self, reason: str) -> None:
        #: Why it could not be loaded (one line).
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unreadable({self.reason!r})"


def _load_json(data: bytes | bytearray | memoryview | str) -> Any:
    try:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
    except (ValueError, RecursionError) as e:
        return Unreadable(f"invalid JSON: {first_line(e)}")


#: What an outage is, by SQLSTATE, as a user reads it (the server's own words follow).
_OUTAGES = {
    "25006": "the database refuses writes (a read-only standby, or default_transaction_read_only)",
    "53100": "the database server's disk is full",
    "53200": "the database server is out of memory",
    "53300": "the database server has no connection slot left",
    "57P01": "the database server ended the session",
    "57P03": "the database server is starting up or in recovery",
}


def outage_reason(error: psycopg.Error) -> tuple[str, str]:
    """Why the store is unavailable: what ``error`` means (a few words), and the server's own message."""
    return _OUTAGES.get(error.sqlstate or "", "database connection lost"), first_line(error)


class _QuietDiscard(logging.Filter):
    """Drops the pool's warning for each closed connection it discards: during an outage every
    retry meets one, and the outage is logged once, by ``PostgresConnector.run``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("discarding closed connection")


logging.getLogger("psycopg.pool").addFilter(_QuietDiscard())


def _configure(conn: Conn) -> None:
    """Per-connection setup: json and jsonb values load without ever raising (see ``Unreadable``)."""
    set_json_loads(_load_json, conn)


class PostgresConnector:
    """Sessions on one store's schema, shared by the threads of one process.

    Args:
        conninfo: what libpq gets (``url.parse_url``'s first part).
        options: the store's options; this reads the connection ones (schema, pool
            size, reconnect and connect timeouts, ``synchronous_commit``).
        description: the password-free store description used in messages.
    """

    def __init__(self, conninfo: str, options: PostgresOptions, description: str) -> None:
        self.conninfo = conninfo
        self.options = options
        self.description = description
        #: The schema every session's ``search_path`` points to.
        self.schema: str = options.schema or DEFAULT_SCHEMA
        #: The ``LISTEN/NOTIFY`` channel of this schema (statements NOTIFY it by this name).
        self.channel = f"doves_{self.schema}"
        #: Set by ``close``: a lost connection is then final, not retried.
        self.closed = False
        self._pool: ConnectionPool[Conn] | None = None
        self._listener: Conn | None = None
        self._listen_lock = threading.Lock()
        self._woken = threading.Condition()
        #: Grows with every NOTIFY the listener received, and whenever one may have been
        #: missed (the listener was rebuilt or failed): a waiter that sees it unchanged
        #: knows no wake-up came (``PostgresStore.wait_for_work``).
        self.wakeups = 0
        #: When the current outage began (monotonic seconds); None while the store answers.
        self._outage_since: float | None = None
        #: What the current outage is, in a few words (``outage_reason``).
        self._outage_cause: str | None = None
        self._outage_lock = threading.Lock()

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

    def connect(self) -> Conn:
        """A new connection of its own (outside the pool), set up like the pool's.

        Raises:
            StoreUnavailable: the server cannot be reached or refuses the connection.
        """
        try:
            conn = psycopg.connect(self.conninfo, **self._connect_kwargs())
            _configure(conn)
            return conn
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"cannot connect to {self.description}: {first_line(e)}") from e

    def open(self) -> None:
        """Open the connection pool (connections are made as threads need them)."""
        self._pool = ConnectionPool(
            self.conninfo, min_size=1, max_size=self.options.pool_size, kwargs=self._connect_kwargs(),
            configure=_configure, timeout=max(1.0, min(self.options.reconnect_seconds, 10.0)),
            name=f"doves-{self.schema}", open=True)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Conn]:
        """A pooled connection for the block (autocommit), returned to the pool after it.

        Raises:
            StoreError: the pool is not open (``open`` not called, or closed).
        """
        if self._pool is None:
            raise StoreError(f"{self.description}: connection pool is not open")
        with self._pool.connection() as conn:
            yield conn

    @contextlib.contextmanager
    def durable(self, conn: Conn, transaction: bool = False) -> Iterator[None]:
        """Statements (in a transaction if asked) that wait for their WAL flush in any case.

        Submitting and re-queueing are what a server crash must never undo (a state
        reported added would be lost); a worker's transitions may be, as they run again.

        Args:
            conn: the connection the block's statements run on.
            transaction: run the block as one transaction even when commits are synchronous.
        """
        if self.options.synchronous_commit and not transaction:
            yield
            return
        with conn.transaction():
            if not self.options.synchronous_commit:
                conn.execute("SET LOCAL synchronous_commit = on")
            yield

    def run(self, what: str, operation: Callable[[Conn, int], T]) -> T:
        """Run ``operation(conn, attempt)``, retrying for a while when the server is unavailable.

        Unavailable is a lost connection, a server that is restarting, out of disk or
        memory, or that refuses writes (a standby after a failover, ``default_transaction_
        read_only``): an outage of the store, logged once when it begins and once when an
        operation succeeds again, however many operations and retries meet it.

        ``attempt`` > 0 tells the operation that an earlier try may have taken effect.

        Args:
            what: names the operation in messages (``commit``, ``claim`` ...).
            operation: the statements, on a pooled connection.

        Returns:
            What ``operation`` returned.

        Raises:
            StoreUnavailable: the server stayed unreachable (or refused writes: a read-only
                standby, a full disk) for ``reconnect_seconds``.
            StoreError: any other database error.
        """
        # Real time, whatever clock the store was given: this waits for a real server.
        deadline = time.monotonic() + self.options.reconnect_seconds
        delay, attempt = 0.05, 0
        while True:
            try:
                with self.connection() as conn:
                    try:
                        result = operation(conn, attempt)
                    except psycopg.errors.ReadOnlySqlTransaction:
                        # A session opened read-only stays so: the next try takes a fresh one
                        # (the pool drops the closed connection, quietly: see _QuietDiscard).
                        conn.close()
                        raise
                self._outage_over()
                return result
            except (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction) as e:
                cause, message = outage_reason(e)
                if self.closed or time.monotonic() >= deadline:
                    raise StoreUnavailable(f"{what}: {self.description} is unavailable: {cause}: {message}") from e
                self._outage_begins(what, cause, message)
            except psycopg.Error as e:
                raise StoreError(f"{what} failed on {self.description}: {first_line(e)}") from e
            time.sleep(delay)
            delay, attempt = min(delay * 2, 1.0), attempt + 1

    def _outage_begins(self, what: str, cause: str, message: str) -> None:
        with self._outage_lock:
            known, self._outage_cause = self._outage_cause, cause
            if self._outage_since is None:
                self._outage_since = time.monotonic()
            elif known == cause:
                log.debug("%s: %s still unavailable (%s: %s); retrying", what, self.description, cause, message)
                return
        if known is None:
            log.warning("%s is unavailable (%s: %s); backing off and retrying until it answers again",
                        self.description, cause, message, extra={"action": "store_outage"})
        else:  # the same outage, another cause (a session ended, then the new one is read-only)
            log.warning("%s is still unavailable, now %s: %s", self.description, cause, message,
                        extra={"action": "store_outage"})

    def _outage_over(self) -> None:
        if self._outage_since is None:  # the usual case, without taking the lock
            return
        with self._outage_lock:
            since, self._outage_since, self._outage_cause = self._outage_since, None, None
        if since is not None:
            log.warning("%s is available again after %.1f s", self.description, time.monotonic() - since,
                        extra={"action": "store_outage_over"})

    def wait_for_notify(self, timeout_seconds: float) -> None:
        """Block until a NOTIFY on ``channel`` arrives or ``timeout_seconds`` pass.

        One thread of the process listens and wakes the others when it returns. A
        listener that fails is dropped (the wait still passes, as a poll) and rebuilt
        on the next wait; the first wait on a new listener returns at once, as a
        NOTIFY sent before LISTEN took effect is lost.
        """
        timeout = timeout_seconds
        if not self._listen_lock.acquire(blocking=False):
            with self._woken:  # another thread listens, and wakes us all on a notification
                self._woken.wait(timeout)
            return
        try:
            if self._listener is None or self._listener.closed:
                self._listener = self.connect()
                self._listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                # A NOTIFY sent before LISTEN took effect is lost: look for work once more.
                timeout = 0.0
                self.wakeups += 1
            self._listen(self._listener, timeout)
        except (psycopg.Error, StoreError) as e:
            # Polling carries on; the listener is rebuilt on the next wait.
            log.debug("LISTEN connection failed (%s); polling", first_line(e))
            self.wakeups += 1
            if self._listener is not None:
                self._listener.close()
            self._listener = None
            time.sleep(min(timeout, 0.5))
        finally:
            self._listen_lock.release()
        with self._woken:
            self._woken.notify_all()

    def _listen(self, listener: Conn, timeout: float) -> None:
        """Wait up to ``timeout`` for a NOTIFY on ``listener``, counting it in ``wakeups``.

        The socket is waited on in one ``select`` for the whole timeout: psycopg's own wait
        wakes every 0.1 s (to answer Ctrl-C), ten wake-ups a second in every idle worker.
        Whatever the server sent is then read by psycopg, briefly.
        """
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([listener.fileno()], [], [], left)
            if not ready:
                return
            # Readable: a notification, or a message that is none (then this waits no more
            # than _READ_SECONDS), or a closed connection (then psycopg raises).
            received = sum(1 for _ in listener.notifies(timeout=_READ_SECONDS, stop_after=1))
            if received:
                self.wakeups += 1
                return

    def close(self) -> None:
        """Close every connection; operations still running give up instead of retrying."""
        self.closed = True
        if self._pool is not None:
            self._pool.close()
        if self._listener is not None:
            self._listener.close()
