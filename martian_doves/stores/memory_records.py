"""The memory store's records, and what reading them shows: statuses, workers, state records.

No locking and no changes here: ``memory.py`` holds the lock and calls these on its dicts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from martian_doves.model import (
    Failure,
    MachineEvent,
    State,
    StateRecord,
    Status,
    WorkerClaim,
    WorkerInfo,
)

#: ``not_before`` of a waiting entry that nothing but an event or its children can wake.
NEVER = math.inf


@dataclass
class Record:
    state: State
    #: PENDING, WAITING, IN_PROGRESS, DONE or FAILED (SCHEDULED is PENDING not yet due).
    status: Status
    submitted_at: float
    #: Not claimable before this (retry backoff, timer, a wait's deadline; NEVER: not by time).
    not_before: float = 0.0
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    retries: int = 0
    token: str | None = None
    worker: str | None = None
    lease_expires: float = 0.0
    claimed_at: float | None = None
    finished_at: float | None = None
    failure: Failure | None = None
    #: Committed with no successor: its machine ended here.
    ended: bool = False
    #: Child machines its tick started (``Spawn``), in order.
    children: tuple[str, ...] = ()


@dataclass
class WorkerEntry:
    #: Last heartbeat (or registration).
    seen: float
    #: The states it can run (None: all).
    states: frozenset[str] | None
    started_at: float
    #: Why it is known dead (its supervisor said so).
    ended: str | None = None


@dataclass
class Mail:
    event: MachineEvent
    #: The waiting entry that took it, once one has.
    taken_by: str | None = None


def reported(record: Record, now: float) -> Status:
    """A record's status as ``status`` counts it: a timer not yet due is scheduled, a woken wait pending."""
    if record.status is Status.PENDING and record.not_before > now:
        return Status.SCHEDULED
    if record.status is Status.WAITING and record.not_before <= now:
        return Status.PENDING
    return record.status


def state_record(record: Record, mail: Mapping[str, Sequence[Mail]], now: float) -> StateRecord:
    """Everything ``record`` holds, as ``show`` and ``history`` give it (``mail``: the mailboxes by machine)."""
    failure = record.failure if record.status is Status.FAILED else None
    status = reported(record, now)
    state = record.state
    event = next((m.event for m in mail.get(state.machine_name, ()) if m.taken_by == state.name), None)
    return StateRecord(
        state.name, state.state, status, state.payload, record.worker, record.finished_at,
        failure.attempts if failure else record.attempts,
        f"{failure.code}: {failure.message}" if failure else None,
        not_before=record.not_before if status is Status.SCHEDULED else None, wait=state.wait,
        event=event, origin=state.origin, children=record.children, parent=state.parent, machine=state.machine,
        submitted_at=record.submitted_at, claimed_at=record.claimed_at, retries=record.retries,
        errors=failure.errors if failure else tuple(record.errors), failure=failure)


def worker_infos(records: Iterable[Record], workers: Mapping[str, WorkerEntry], now: float,
                 lease_seconds: float) -> list[WorkerInfo]:
    """Each registered worker with its claims and what it brought to an outcome."""
    claims: dict[str, list[WorkerClaim]] = {}
    processed: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for record in records:
        if record.worker is None:
            continue
        if record.status is Status.IN_PROGRESS:
            claims.setdefault(record.worker, []).append(
                WorkerClaim(record.state.name, record.state.state, record.claimed_at))
        elif record.status in (Status.DONE, Status.FAILED):
            processed[record.worker] += 1
            failed[record.worker] += record.status is Status.FAILED
    return [WorkerInfo(name, "localhost", 0, info.seen, info.ended is None and now - info.seen < lease_seconds,
                       info.started_at, None if info.states is None else tuple(sorted(info.states)),
                       tuple(sorted(claims.get(name, ()), key=lambda c: (c.since or 0.0, c.name))),
                       processed[name], failed[name], info.ended)
            for name, info in sorted(workers.items())]
