"""Records shared by every layer: states, claims, outcomes, statuses."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

JSONDict = dict[str, Any]


class Status(enum.StrEnum):
    """Where a state is in its life. String values are what ``status --json`` prints."""

    #: Runnable now (or as soon as a worker is free).
    PENDING = "pending"
    #: Runnable later: a timer (``Next(after=...)``) or a retry's backoff not yet due.
    SCHEDULED = "scheduled"
    #: A waiting entry: for an event (``Wait``) or for its children to end (``Spawn``).
    WAITING = "waiting"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"


#: Failed attempts whose error summaries a state keeps (the newest); its attempt count is kept whole.
MAX_KEPT_ERRORS = 20


def with_error(errors: Sequence[str], error: str) -> tuple[str, ...]:
    """``errors`` plus ``error``, the newest ``MAX_KEPT_ERRORS`` only: a retry record stays bounded
    however many attempts a state is allowed."""
    return (*errors, error)[-MAX_KEPT_ERRORS:]


#: The state name of a waiting entry made by ``Wait``: no handler runs it, the worker delivers the event.
WAIT_STATE = "doves.wait"
#: The state name of a waiting entry made by ``Spawn``: the worker joins the children's outcomes.
JOIN_STATE = "doves.join"
#: State names the worker runs itself, on any worker, whatever machines it has.
INTERNAL_STATES = frozenset({WAIT_STATE, JOIN_STATE})
#: State names starting with this are reserved for the worker's own steps.
RESERVED_PREFIX = "doves."


@dataclass(frozen=True)
class WaitFor:
    """What a waiting entry (``WAIT_STATE`` or ``JOIN_STATE``) waits for, and what runs next.

    An event wait ends when an event named ``event`` is delivered to the machine (its
    successor runs ``then`` with the event in its payload) or at ``deadline`` (its
    successor runs ``on_timeout``; without one the machine fails with ``wait_timeout``).
    A join ends when all ``children`` child machines have ended (its successor runs
    ``then`` with their outcomes).
    """

    #: State the successor runs once the event arrives or the children ended.
    then: str
    #: Event name waited for; None for a join.
    event: str | None = None
    #: Epoch seconds after which an event wait times out; None: it waits forever.
    deadline: float | None = None
    #: State the successor runs on timeout; None: the machine fails with ``wait_timeout``.
    on_timeout: str | None = None
    #: Number of child machines a join waits for (0 for an event wait).
    children: int = 0

    @property
    def is_join(self) -> bool:
        return self.event is None

    def as_dict(self) -> JSONDict:
        document: JSONDict = {"then": self.then}
        if self.event is not None:
            document["event"] = self.event
        if self.deadline is not None:
            document["deadline"] = self.deadline
        if self.on_timeout is not None:
            document["on_timeout"] = self.on_timeout
        if self.is_join:
            document["children"] = self.children
        return document


@dataclass(frozen=True)
class Origin:
    """A child machine's link to the state that spawned it (and whose join awaits it)."""

    #: Name of the state whose tick returned ``Spawn``.
    parent: str
    #: Position among that state's children, from 0.
    index: int

    def as_dict(self) -> JSONDict:
        return {"parent": self.parent, "index": self.index}


@dataclass(frozen=True)
class State:
    """One state file's content and identity.

    ``name`` is the file name in the store (``countdown.state-2``); ``state`` the
    handler name; ``parent`` the name of the state whose tick produced it, None for
    a submitted root.
    """

    name: str
    state: str
    payload: JSONDict
    #: Name of the state this one succeeds; None for a root.
    parent: str | None = None
    #: The machine (lineage root) this state belongs to; None for a root (its own name).
    machine: str | None = None
    #: Set on a waiting entry: what it waits for.
    wait: WaitFor | None = None
    #: Set on every state of a child machine: the state that spawned it.
    origin: Origin | None = None

    @property
    def machine_name(self) -> str:
        """The machine's name: the root of the lineage (what ``doves send`` addresses)."""
        return self.machine or self.name


@dataclass(frozen=True)
class Claim:
    """A worker's exclusive, leased right to run one state's tick and commit it.

    ``token`` fences the commit: once another worker takes the claim over, a commit
    carrying the old token is refused with ``ClaimLost``.
    """

    state: State
    token: str
    worker: str
    #: Attempts that already failed (0 on the first run).
    attempts: int = 0
    #: Error summaries of the failed attempts, oldest first.
    errors: tuple[str, ...] = ()
    #: Retries the handler asked for (``raise Retry(...)``); they are not failed attempts.
    retries: int = 0
    #: When the state became runnable (submitted, written, or due after a timer or a retry's
    #: backoff), epoch seconds; None where the store cannot tell (its queue wait is not measured).
    due_at: float | None = None

    @property
    def name(self) -> str:
        return self.state.name


@dataclass(frozen=True)
class Child:
    """A child machine a ``Spawn`` starts: its first state and payload."""

    state: str
    payload: JSONDict


class Successor(NamedTuple):
    """What a tick leads to, as the worker hands it to ``Store.commit``.

    A plain ``(state, payload)`` pair still reads as one (``successor[0]``, ``successor[1]``).
    """

    state: str
    payload: JSONDict
    #: Epoch seconds before which the successor must not run (a timer); None: at once.
    not_before: float | None = None
    #: Set when the successor is a waiting entry (``Wait``, ``Spawn``).
    wait: WaitFor | None = None
    #: Child machines to start with the successor (``Spawn``); the successor joins them.
    children: tuple[Child, ...] = ()


@dataclass(frozen=True)
class MachineEvent:
    """An event sent to a machine (``doves send``), as a waiting entry receives it."""

    name: str
    #: What was sent (any JSON value).
    data: Any
    #: When it was sent, epoch seconds.
    sent_at: float

    def as_payload(self) -> JSONDict:
        """The ``"event"`` field of the payload the waiting machine's next state gets."""
        return {"name": self.name, "data": self.data}


@dataclass(frozen=True)
class ChildOutcome:
    """How a child machine ended, as its parent's join receives it (``payload["children"]``)."""

    #: The child machine's name (its root state's name).
    name: str
    #: The last state the child ran.
    state: str
    #: ``done`` (the machine ended) or ``failed``.
    status: Status
    #: The payload of that last state.
    payload: JSONDict
    #: Why it failed (``code``, ``message``), when it did.
    error: JSONDict | None = None

    def as_dict(self) -> JSONDict:
        """The child's entry in its parent's ``payload["children"]`` (``error`` only when it failed)."""
        entry: JSONDict = {"name": self.name, "status": self.status.value, "payload": self.payload}
        if self.error is not None:
            entry["error"] = self.error
        return entry


@dataclass(frozen=True)
class Failure:
    """Why a state failed, as written to its machine-readable reason."""

    code: str
    message: str
    traceback: str | None = None
    attempts: int = 0
    errors: tuple[str, ...] = ()

    def as_dict(self) -> JSONDict:
        return {
            "code": self.code,
            "message": self.message,
            "traceback": self.traceback,
            "attempts": self.attempts,
            "errors": list(self.errors),
        }


@dataclass(frozen=True)
class WorkerClaim:
    """A state a worker holds now (its claim), as ``doves status`` shows it."""

    #: The state file's name.
    name: str
    #: Its state name (the machine that runs it); ``?`` when the state file cannot be read.
    state: str
    #: When the worker claimed it, epoch seconds; None if the store does not know.
    since: float | None = None

    def as_dict(self) -> JSONDict:
        return {"name": self.name, "state": self.state, "since": self.since}


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker as a store sees it: liveness, what it runs, what it holds now."""

    name: str
    host: str
    pid: int
    #: Its last heartbeat (or registration), epoch seconds.
    last_seen: float
    #: Heartbeats arrive within its lease and nobody has said it died.
    alive: bool
    #: When it registered (its uptime counts from here), epoch seconds; None if the store does not know.
    started_at: float | None = None
    #: The state names it registered with (``register_worker(worker, states)``); None: every state.
    machines: tuple[str, ...] | None = None
    #: The states it holds now, oldest claim first.
    claims: tuple[WorkerClaim, ...] = ()
    #: States it brought to an outcome (done or failed) that the store still records as its own;
    #: None when the store cannot count them cheaply.
    processed: int | None = None
    #: Of ``processed``, how many failed.
    failed: int | None = None
    #: Why it is known dead before its lease ran out (its supervisor saw its process end:
    #: ``killed by signal 9``); None otherwise. Such a worker is not ``alive``.
    ended: str | None = None

    def uptime_seconds(self, now: float) -> float | None:
        """Seconds since it started (to its last heartbeat once it is dead); None if unknown."""
        if self.started_at is None:
            return None
        return max(0.0, (now if self.alive else self.last_seen) - self.started_at)

    def as_dict(self) -> JSONDict:
        """The worker in ``status --json``: the five fields of old, then the rest."""
        return {
            "name": self.name, "host": self.host, "pid": self.pid, "last_seen": self.last_seen, "alive": self.alive,
            "started_at": self.started_at, "machines": None if self.machines is None else list(self.machines),
            "claims": [claim.as_dict() for claim in self.claims], "processed": self.processed,
            "failed": self.failed, "ended": self.ended,
        }


@dataclass(frozen=True)
class StatusReport:
    """Counts and health of a store, for ``doves status``."""

    pending: int
    in_progress: int
    done: int
    failed: int
    workers: list[WorkerInfo] = field(default_factory=list)
    #: Submission time (epoch seconds) of the oldest pending state, if any.
    oldest_pending_at: float | None = None
    #: Up to a few recent failures: (name, code, message).
    recent_failures: list[tuple[str, str, str]] = field(default_factory=list)
    #: Store-specific extras (mode, phase, location).
    details: JSONDict = field(default_factory=dict)
    #: States due later: timers (``Next(after=...)``) and retries waiting out their backoff.
    scheduled: int = 0
    #: Waiting entries: machines waiting for an event or for their children.
    waiting: int = 0

    @property
    def finished(self) -> bool:
        """Nothing to run now or later (machines waiting for events do not count)."""
        return self.pending == 0 and self.in_progress == 0 and self.scheduled == 0

    def as_dict(self) -> JSONDict:
        return {
            "pending": self.pending,
            "scheduled": self.scheduled,
            "waiting": self.waiting,
            "in_progress": self.in_progress,
            "done": self.done,
            "failed": self.failed,
            "workers": [w.as_dict() for w in self.workers],
            "oldest_pending_at": self.oldest_pending_at,
            "recent_failures": [
                {"name": n, "code": c, "message": m} for n, c, m in self.recent_failures
            ],
            **self.details,
        }


@dataclass(frozen=True)
class StateRecord:
    """Everything a store knows of one state: ``doves show``, a row of ``list``, a step of ``history``.

    The first fields are those of ``HistoryEntry`` (its old name, kept as an alias), in
    the same order; the rest default, so a store fills what it can.
    """

    name: str
    #: The state name (the machine that runs it); ``?`` when the state file cannot be read.
    state: str
    status: Status
    #: None when the state file cannot be read (it failed with a reason saying why).
    payload: JSONDict | None = None
    #: The worker that holds it now, or that last held it (committed or failed it).
    worker: str | None = None
    #: When the tick was committed (or the state failed), epoch seconds.
    finished_at: float | None = None
    #: Attempts that failed (a worker lost counts): 0 for a state done at its first try.
    attempts: int = 0
    #: Why it failed, one line (``code: message``); None unless failed.
    reason: str | None = None
    #: When a scheduled state may run (a timer or a retry's backoff), epoch seconds.
    not_before: float | None = None
    #: On a waiting entry: what it waits for.
    wait: WaitFor | None = None
    #: On a waiting entry that received its event: the event.
    event: MachineEvent | None = None
    #: On a state of a child machine: the state that spawned it.
    origin: Origin | None = None
    #: The child machines this state's tick started (``Spawn``), by name.
    children: tuple[str, ...] = ()
    #: The state whose tick wrote this one; None for a submitted root.
    parent: str | None = None
    #: The machine (lineage root) it belongs to; None for a root (its own name, see ``machine_name``).
    machine: str | None = None
    #: When it was submitted or written by its parent's tick, epoch seconds.
    submitted_at: float | None = None
    #: When its last claim was taken, epoch seconds.
    claimed_at: float | None = None
    #: Retries the handler asked for (``raise Retry``), apart from failed attempts.
    retries: int = 0
    #: Each failed attempt's error, oldest first (the newest ``MAX_KEPT_ERRORS``).
    errors: tuple[str, ...] = ()
    #: The failure (code, message, traceback) of a failed state.
    failure: Failure | None = None

    @property
    def machine_name(self) -> str:
        """The machine's name: the root of its lineage."""
        return self.machine or self.name

    @property
    def duration_seconds(self) -> float | None:
        """Its last claim to its outcome (the tick, commit included), seconds; None until it has one."""
        if self.claimed_at is None or self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.claimed_at)

    @property
    def updated_at(self) -> float | None:
        """Its latest known change (written, claimed, finished), epoch seconds: what ``list`` sorts by."""
        return max((t for t in (self.submitted_at, self.claimed_at, self.finished_at) if t is not None),
                   default=None)

    def as_dict(self) -> JSONDict:
        """The record as JSON (``show --json``, ``list --json``, ``history --json``)."""
        return {
            "name": self.name, "state": self.state, "status": self.status.value, "payload": self.payload,
            "worker": self.worker, "parent": self.parent, "machine": self.machine_name,
            "submitted_at": self.submitted_at, "claimed_at": self.claimed_at, "finished_at": self.finished_at,
            "duration_seconds": self.duration_seconds, "not_before": self.not_before, "attempts": self.attempts,
            "retries": self.retries, "errors": list(self.errors), "reason": self.reason,
            "failure": None if self.failure is None else {
                "code": self.failure.code, "message": self.failure.message, "traceback": self.failure.traceback},
            "wait": None if self.wait is None else self.wait.as_dict(),
            "event": None if self.event is None else {**self.event.as_payload(), "sent_at": self.event.sent_at},
            "origin": None if self.origin is None else self.origin.as_dict(),
            "children": list(self.children),
        }


#: The name ``history`` has always used for its records.
HistoryEntry = StateRecord


@dataclass(frozen=True)
class StateQuery:
    """Which states ``find`` returns: every filter given must match; newest first (``updated_at``).

    Statuses are as ``status`` reports them: a timer not yet due is ``SCHEDULED``, not ``PENDING``.
    """

    status: Status | None = None
    #: The state name (the machine), exactly.
    state: str | None = None
    #: The failure code (``tick_failed``, ``invalid_json`` ...): failed states only.
    code: str | None = None
    #: Changed at or after this time (``updated_at``), epoch seconds.
    since: float | None = None
    #: Found, ignoring case, in the name, the state name, the failure's code or message, or the payload's JSON.
    text: str | None = None
    #: At most this many records; None: all (only for commands that act on every match).
    limit: int | None = 100
    #: Skip this many matches first (paging).
    offset: int = 0

    def matches(self, record: StateRecord) -> bool:
        """Whether ``record`` passes every filter (``limit`` and ``offset`` aside)."""
        if self.status is not None and record.status is not self.status:
            return False
        if self.state is not None and record.state != self.state:
            return False
        if self.code is not None and (record.failure is None or record.failure.code != self.code):
            return False
        if self.since is not None and (record.updated_at is None or record.updated_at < self.since):
            return False
        return self.text is None or self.text.casefold() in searchable_text(record)

    def page(self, records: Iterable[StateRecord]) -> list[StateRecord]:
        """The records that match, newest first, from ``offset`` on, at most ``limit``."""
        found = sorted((r for r in records if self.matches(r)), key=lambda r: (r.updated_at or 0.0, r.name),
                       reverse=True)
        return found[self.offset:] if self.limit is None else found[self.offset:self.offset + self.limit]


def searchable_text(record: StateRecord) -> str:
    """What ``StateQuery.text`` is looked for in, casefolded: names, failure and payload."""
    failure = record.failure
    parts = [record.name, record.state, record.reason or "", failure.code if failure else "",
             failure.message if failure else "", json.dumps(record.payload, ensure_ascii=False, default=str)]
    return "\n".join(parts).casefold()
