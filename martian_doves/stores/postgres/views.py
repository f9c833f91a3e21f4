"""What ``doves status`` and ``doves history`` read from a PostgreSQL store, and the counters' fold.

Counts split as the machine model says (pending now, scheduled, waiting), the runnable
states no live worker can run, and each lineage with its timers, waits, events and children.
The counts come from counters the schema keeps by trigger (migration 0006), so reading
them costs the same at any size of the table; ``fold_counts`` keeps the counters compact.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import psycopg

from martian_doves.errors import StoreError
from martian_doves.model import JSONDict, StateRecord, StatusReport
from martian_doves.stores.postgres.inspection import full_record, worker_infos
from martian_doves.stores.postgres.machines import lineage_range
from martian_doves.stores.postgres.sql import Q
from martian_doves.text import first_line

if TYPE_CHECKING:
    from martian_doves.stores.postgres.connector import Conn, PostgresConnector

log = logging.getLogger(__name__)

#: ``details["outage"]`` while the database refuses writes.
READ_ONLY = ("the database refuses writes (a read-only standby, or default_transaction_read_only): "
             "workers wait and retry until it accepts them again")


def status(connector: PostgresConnector, lease_seconds: float, details: JSONDict) -> StatusReport:
    """Counts, workers, oldest pending state, recent failures, and what no live worker can run.

    Args:
        lease_seconds: liveness of workers that registered no lease of their own.
        details: the store's own extras (location, mode ...); ``no_worker_for`` is added
            when runnable states wait for a worker with their machine, ``outage`` while
            the database refuses writes.
    """
    lease = {"lease": lease_seconds}

    def read(conn: Conn, _: int) -> StatusReport:
        row = conn.execute(Q["counts"]).fetchone()
        pending, scheduled, waiting, in_progress, done, failed = (int(n) for n in row) if row else (0,) * 6
        oldest = conn.execute(Q["oldest_pending"]).fetchone()
        workers = worker_infos(conn, lease_seconds)
        failures = [(n, c, m) for n, c, m in conn.execute(Q["recent_failures"])]
        extras = dict(details)
        read_only = conn.execute(Q["read_only"]).fetchone()
        if read_only and read_only[0]:
            extras["outage"] = READ_ONLY
        unrunnable = [{"state": state, "count": int(count), "oldest_pending_at": since}
                      for state, count, since in conn.execute(Q["no_worker_for"], lease)]
        if unrunnable:
            extras["no_worker_for"] = unrunnable
        return StatusReport(pending, in_progress, done, failed, workers, oldest[0] if oldest else None, failures,
                            extras, scheduled=scheduled, waiting=waiting)

    return connector.run("status", read)


def history(connector: PostgresConnector, name: str) -> list[StateRecord]:
    """The lineage containing ``name`` (from its root), oldest first."""
    def read(conn: Conn, _: int) -> list[tuple[Any, ...]]:
        root = conn.execute(Q["root_of"], {"name": name}).fetchone()
        if root is None:
            return []
        # Every successor of a lineage is named base-N[~B]: one key range of the index.
        low, high = lineage_range(root[0])
        return conn.execute(Q["history"], {"root": root[0], "low": low, "high": high}).fetchall()

    return [full_record(row) for row in connector.run("history", read)]


def fold_counts(connector: PostgresConnector) -> None:
    """Move the counters' deltas into their totals, so ``status`` reads few rows (migration 0006).

    One try, never the outage retries of ``connector.run``: the counts are right without
    it (``status`` adds the deltas), so a store that refuses writes, or is gone, only
    leaves the deltas to the next fold (a worker's next heartbeat, the next submit).
    """
    try:
        with connector.connection() as conn:
            try:
                conn.execute(Q["fold_counts"])
            except psycopg.errors.ReadOnlySqlTransaction:
                conn.close()  # a session opened read-only stays so: the pool drops it
                raise
    except (psycopg.Error, StoreError) as e:
        log.debug("counters not folded: %s", first_line(e))
