"""In-process reference store: the contract with nothing in the way.

Used by unit tests and by users who want to try machines without a folder; also
the executable specification the conformance suite checks the real stores against.
"""

from __future__ import annotations

import heapq
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from martian_doves import codec
from martian_doves.clock import Clock, SystemClock
from martian_doves.codec import successor_names
from martian_doves.config import StoreOptions
from martian_doves.errors import ClaimLost, CodecError
from martian_doves.model import (
    Claim,
    Failure,
    HistoryEntry,
    State,
    Status,
    StatusReport,
    WorkerInfo,
)
from martian_doves.stores.base import SubmitResult, Successor


@dataclass
class _Record:
    state: State
    status: Status
    submitted_at: float
    not_before: float = 0.0
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    token: str | None = None
    worker: str | None = None
    lease_expires: float = 0.0
    finished_at: float | None = None
    failure: Failure | None = None


class MemoryStore:
    """Thread-safe store kept in a dict; lost when the process exits."""

    mode = "memory"

    def __init__(self, clock: Clock | None = None, lease_seconds: float = StoreOptions.lease_seconds) -> None:
        self.clock = clock or SystemClock()
        self.lease_seconds = lease_seconds
        self.description = "memory"
        self._records: dict[str, _Record] = {}
        self._ready: list[tuple[float, int, str]] = []  # heap of (not_before, seq, name)
        self._seq = 0
        self._workers: dict[str, float] = {}
        self._lock = threading.Condition()

    # -- helpers -------------------------------------------------------------------

    def _push(self, record: _Record) -> None:
        self._seq += 1
        heapq.heappush(self._ready, (record.not_before, self._seq, record.state.name))

    def _owned(self, claim: Claim) -> _Record:
        record = self._records.get(claim.name)
        if record is None or record.status is not Status.IN_PROGRESS or record.token != claim.token:
            raise ClaimLost(f"claim on {claim.name} was taken over")
        return record

    def _new_claim(self, record: _Record, worker: str) -> Claim:
        record.status = Status.IN_PROGRESS
        record.token = uuid.uuid4().hex
        record.worker = worker
        record.lease_expires = self.clock.time() + self.lease_seconds
        # The handler gets its own copy: a tick that changes its payload in place and then
        # raises must be retried with the stored payload, as it would be from a file.
        return Claim(_detached(record.state), record.token, worker, record.attempts, tuple(record.errors))

    # -- Store ---------------------------------------------------------------------

    def submit(self, states: Sequence[State]) -> list[SubmitResult]:
        results = []
        with self._lock:
            for state in states:
                if state.name in self._records:
                    results.append(SubmitResult(state.name, False, "a state with this name exists"))
                    continue
                try:
                    # Held to the same rules as a directory store: names that could be files,
                    # payloads that are JSON.
                    codec.check_state_file_name(state.name)
                    state = _detached(State(state.name, state.state, state.payload))
                except CodecError as e:
                    results.append(SubmitResult(state.name, False, e.message))
                    continue
                record = _Record(state, Status.PENDING, self.clock.time())
                self._records[state.name] = record
                self._push(record)
                results.append(SubmitResult(state.name, True))
            self._lock.notify_all()
        return results

    def register_worker(self, worker: str) -> None:
        with self._lock:
            self._workers[worker] = self.clock.time()

    def unregister_worker(self, worker: str) -> None:
        with self._lock:
            self._workers.pop(worker, None)

    def _recover_expired(self, now: float) -> None:
        for record in self._records.values():
            if record.status is Status.IN_PROGRESS and record.lease_expires < now:
                record.status = Status.PENDING
                record.attempts += 1
                record.errors.append(f"worker {record.worker} lost its lease")
                record.token = None
                record.not_before = now
                self._push(record)

    def claim(self, worker: str, limit: int) -> list[Claim]:
        claims: list[Claim] = []
        with self._lock:
            now = self.clock.time()
            self._recover_expired(now)
            while self._ready and len(claims) < limit and self._ready[0][0] <= now:
                _, _, name = heapq.heappop(self._ready)
                record = self._records.get(name)
                if record is None or record.status is not Status.PENDING or record.not_before > now:
                    continue  # a stale heap entry
                claims.append(self._new_claim(record, worker))
        return claims

    def wait_for_work(self, timeout_seconds: float) -> None:
        with self._lock:
            if self._ready:
                timeout_seconds = min(timeout_seconds, max(0.0, self._ready[0][0] - self.clock.time()))
            if timeout_seconds > 0:
                self._lock.wait(timeout_seconds)

    def heartbeat(self, worker: str, claims: Sequence[Claim]) -> list[Claim]:
        lost = []
        with self._lock:
            self._workers[worker] = self.clock.time()
            for claim in claims:
                try:
                    self._owned(claim).lease_expires = self.clock.time() + self.lease_seconds
                except ClaimLost:
                    lost.append(claim)
        return lost

    def commit(self, claim: Claim, successor: Successor | None, *, keep: bool = False) -> Claim | None:
        # Checked before anything changes: a payload no file could hold is the handler's fault.
        state = None if successor is None else _detached(State(claim.name, successor[0], successor[1], claim.name))
        with self._lock:
            record = self._owned(claim)
            record.status = Status.DONE
            record.finished_at = self.clock.time()
            record.token = None
            if state is None:
                self._lock.notify_all()
                return None
            for name in successor_names(claim.name):
                existing = self._records.get(name)
                if existing is None:
                    break
                if existing.state.parent == claim.name:
                    # Written by an earlier run of this tick (e.g. before a reset): exactly once.
                    if keep and existing.status is Status.PENDING and existing.not_before <= self.clock.time():
                        return self._new_claim(existing, claim.worker)
                    self._lock.notify_all()
                    return None
            child = _Record(State(name, state.state, state.payload, parent=claim.name), Status.PENDING,
                            self.clock.time())
            self._records[name] = child
            if keep:
                return self._new_claim(child, claim.worker)
            self._push(child)
            self._lock.notify_all()
            return None

    def retry_later(self, claim: Claim, delay_seconds: float, error: str) -> None:
        with self._lock:
            record = self._owned(claim)
            record.status = Status.PENDING
            record.attempts += 1
            record.errors.append(error)
            record.token = None
            record.not_before = self.clock.time() + delay_seconds
            self._push(record)
            self._lock.notify_all()

    def fail(self, claim: Claim, failure: Failure) -> None:
        with self._lock:
            record = self._owned(claim)
            record.status = Status.FAILED
            record.failure = failure
            record.finished_at = self.clock.time()
            record.token = None

    def release(self, claim: Claim) -> None:
        with self._lock:
            record = self._owned(claim)
            record.status = Status.PENDING
            record.token = None
            record.not_before = self.clock.time()
            self._push(record)
            self._lock.notify_all()

    def status(self) -> StatusReport:
        with self._lock:
            counts = {status: 0 for status in Status}
            oldest: float | None = None
            failures = []
            for record in self._records.values():
                counts[record.status] += 1
                if record.status is Status.PENDING:
                    oldest = record.submitted_at if oldest is None else min(oldest, record.submitted_at)
                if record.failure is not None and record.status is Status.FAILED:
                    failures.append((record.state.name, record.failure.code, record.failure.message))
            now = self.clock.time()
            workers = [
                WorkerInfo(name, "localhost", 0, seen, now - seen < self.lease_seconds)
                for name, seen in sorted(self._workers.items())
            ]
            return StatusReport(
                counts[Status.PENDING], counts[Status.IN_PROGRESS], counts[Status.DONE],
                counts[Status.FAILED], workers, oldest, failures[-10:], {"store": "memory"},
            )

    def history(self, name: str) -> list[HistoryEntry]:
        with self._lock:
            record = self._records.get(name)
            if record is None:
                return []
            while record.state.parent is not None and record.state.parent in self._records:
                record = self._records[record.state.parent]
            entries = []
            while True:
                failure = record.failure if record.status is Status.FAILED else None
                entries.append(HistoryEntry(
                    record.state.name, record.state.state, record.status, record.state.payload,
                    record.worker, record.finished_at, failure.attempts if failure else record.attempts,
                    failure.message if failure else None,
                ))
                child = next((r for r in self._records.values() if r.state.parent == record.state.name), None)
                if child is None:
                    return entries
                record = child

    def is_finished(self) -> bool:
        with self._lock:
            return all(r.status in (Status.DONE, Status.FAILED) for r in self._records.values())

    def reset(self, *, successors: bool) -> int:
        with self._lock:
            if successors:
                self._records = {n: r for n, r in self._records.items() if r.state.parent is None}
            self._ready = []
            for record in self._records.values():
                self._reset_record(record)
            return len(self._records)

    def _reset_record(self, record: _Record) -> None:
        fresh = _Record(record.state, Status.PENDING, record.submitted_at)
        self._records[record.state.name] = fresh
        self._push(fresh)

    def retry_failed(self, names: Sequence[str] | None = None) -> int:
        with self._lock:
            chosen = [
                r for r in self._records.values()
                if r.status is Status.FAILED and (names is None or r.state.name in names)
            ]
            for record in chosen:
                self._reset_record(record)
            self._lock.notify_all()
            return len(chosen)

    def close(self) -> None:
        pass


def _detached(state: State) -> State:
    """A copy of ``state`` sharing nothing with the caller, its payload checked to be JSON.

    Raises:
        InvalidDocument: the payload cannot be written as a state file.
    """
    return codec.decode(codec.encode(state, codec.DEFAULT_MAX_STATE_BYTES), state.name)


def expire_all(store: MemoryStore) -> None:
    """Test helper: make every lease look expired (as if its worker died)."""
    with store._lock:
        for record in store._records.values():
            record.lease_expires = 0.0


__all__ = ["MemoryStore", "expire_all"]
