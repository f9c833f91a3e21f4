"""Records shared by every layer: states, claims, outcomes, statuses."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

JSONDict = dict[str, Any]


class Status(enum.StrEnum):
    """Where a state is in its life. String values are what ``status --json`` prints."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"


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

    @property
    def name(self) -> str:
        return self.state.name


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
class WorkerInfo:
    """A registered worker as a store sees it."""

    name: str
    host: str
    pid: int
    last_seen: float
    alive: bool


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

    @property
    def finished(self) -> bool:
        return self.pending == 0 and self.in_progress == 0

    def as_dict(self) -> JSONDict:
        return {
            "pending": self.pending,
            "in_progress": self.in_progress,
            "done": self.done,
            "failed": self.failed,
            "workers": [w.__dict__ for w in self.workers],
            "oldest_pending_at": self.oldest_pending_at,
            "recent_failures": [
                {"name": n, "code": c, "message": m} for n, c, m in self.recent_failures
            ],
            **self.details,
        }


@dataclass(frozen=True)
class HistoryEntry:
    """One state of a machine's lineage, for ``doves history``."""

    name: str
    state: str
    status: Status
    payload: JSONDict | None = None
    worker: str | None = None
    #: When the tick was committed (or failed), epoch seconds.
    finished_at: float | None = None
    #: Attempts that failed (a worker lost counts): 0 for a state done at its first try.
    attempts: int = 0
    reason: str | None = None
