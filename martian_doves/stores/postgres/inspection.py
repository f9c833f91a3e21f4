"""What operators read and do beyond running a PostgreSQL store: ``InspectableStore`` and ``SupervisedStore``.

``PostgresStore`` mixes ``PostgresInspection`` in. Every read is one named query of
``sql/queries.sql`` that returns a page or a count, never the whole table to Python;
``forget`` and ``worker_exited`` are one statement each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from martian_doves.model import (
    MAX_KEPT_ERRORS,
    Failure,
    StateQuery,
    StateRecord,
    Status,
    WorkerClaim,
    WorkerInfo,
)
from martian_doves.stores.postgres.connector import Unreadable
from martian_doves.stores.postgres.machines import with_machine_fields
from martian_doves.stores.postgres.sql import Q

if TYPE_CHECKING:
    from martian_doves.config import PostgresOptions
    from martian_doves.stores.postgres.connector import Conn, PostgresConnector


#: Columns of a row that ``record_of`` reads; a ``state_records`` row adds the machine model's.
RECORD_COLUMNS = 15


def full_record(row: Sequence[Any]) -> StateRecord:
    """A ``StateRecord`` from a row of the ``state_records`` view (``show``, ``history``)."""
    return with_machine_fields(record_of(row[:RECORD_COLUMNS]), row[RECORD_COLUMNS:])


def record_of(row: Sequence[Any]) -> StateRecord:
    """A ``StateRecord`` from a row of the ``show``, ``find`` or ``history`` query."""
    (name, state, status, payload, worker, finished_at, attempts, reason, errors, parent, root, submitted_at,
     claimed_at, retries, not_before) = row
    failure = None
    if status == Status.FAILED.value:
        reason = reason if isinstance(reason, dict) else {}
        traceback = reason.get("traceback")
        failure = Failure(str(reason.get("code", "error")), str(reason.get("message", "")),
                          None if traceback is None else str(traceback), attempts, tuple(errors))
    if isinstance(payload, Unreadable):  # shown without it (a claim fails the state, saying why)
        payload = None
    return StateRecord(
        name, state, Status(status), payload, worker, finished_at, attempts,
        None if failure is None else f"{failure.code}: {failure.message}",
        not_before=not_before if status == Status.SCHEDULED.value else None,
        parent=parent, machine=None if root == name else root, submitted_at=submitted_at, claimed_at=claimed_at,
        retries=retries, errors=tuple(errors), failure=failure)


def worker_infos(conn: Conn, lease_seconds: float) -> list[WorkerInfo]:
    """The registered workers with their claims and the outcomes the table still holds.

    Args:
        lease_seconds: liveness of workers that registered no lease of their own.
    """
    found = conn.execute(Q["workers"], {"lease": lease_seconds}).fetchall()
    if not found:
        return []
    claims: dict[str, list[WorkerClaim]] = {}
    for worker, name, state, since in conn.execute(Q["worker_claims"]):
        claims.setdefault(worker, []).append(WorkerClaim(name, state, since))
    outcomes = {worker: (int(done), int(failed)) for worker, done, failed
                in conn.execute(Q["worker_outcomes"], {"workers": [row[0] for row in found]})}
    return [WorkerInfo(name, host, pid, seen, alive, started_at, None if states is None else tuple(states),
                       claims=tuple(claims.get(name, ())), processed=outcomes.get(name, (0, 0))[0],
                       failed=outcomes.get(name, (0, 0))[1], ended=ended)
            for name, host, pid, seen, alive, started_at, ended, states in found]


class PostgresInspection:
    """``find``, ``show``, ``counts_by_state``, ``forget`` and ``worker_exited`` on a schema."""

    connector: PostgresConnector
    options: PostgresOptions
    channel: str

    def find(self, query: StateQuery) -> list[StateRecord]:
        params = {"status": None if query.status is None else query.status.value, "state": query.state,
                  "code": query.code, "since": query.since, "text": query.text, "limit": query.limit,
                  "offset": query.offset}
        # The failures list has a query of its own that walks the failed states' index.
        named = Q["find_failed"] if query.status is Status.FAILED else Q["find"]
        rows = self.connector.run("find", lambda conn, _: conn.execute(named, params).fetchall())
        return [record_of(row) for row in rows]

    def show(self, name: str) -> StateRecord | None:
        row = self.connector.run("show", lambda conn, _: conn.execute(Q["show"], {"name": name}).fetchone())
        return None if row is None else full_record(row)

    def counts_by_state(self) -> dict[str, dict[Status, int]]:
        rows = self.connector.run("counts_by_state", lambda conn, _: conn.execute(Q["counts_by_state"]).fetchall())
        counts: dict[str, dict[Status, int]] = {}
        for state, status, count in rows:
            counts.setdefault(state, {})[Status(status)] = int(count)
        return counts

    def forget(self, names: Sequence[str]) -> int:
        params = {"names": list(names)}
        return self.connector.run("forget", lambda conn, _: len(conn.execute(Q["forget"], params).fetchall()))

    def worker_exited(self, worker: str, reason: str) -> int:
        params = {"worker": worker, "reason": reason, "error": f"worker {worker} {reason}",
                  "kept": MAX_KEPT_ERRORS, "channel": self.channel}

        def apply(conn: Conn, _: int) -> int:
            row = conn.execute(Q["worker_exited"], params).fetchone()
            return int(row[0]) if row else 0

        return self.connector.run("worker_exited", apply)
