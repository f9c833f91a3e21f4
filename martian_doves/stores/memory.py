"""In-process reference store: the contract with nothing in the way.

Used by unit tests and by users who want to try machines without a folder; also
the executable specification the conformance suite checks the real stores against.
"""

from __future__ import annotations

import heapq
import threading
import uuid
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from martian_doves import codec
from martian_doves.clock import Clock, SystemClock
from martian_doves.codec import child_names, successor_names
from martian_doves.config import StoreOptions
from martian_doves.errors import ClaimLost, CodecError, InvalidDocument, MachineEnded, NoSuchMachine
from martian_doves.model import (
    INTERNAL_STATES,
    ChildOutcome,
    Claim,
    Failure,
    HistoryEntry,
    MachineEvent,
    Origin,
    State,
    StateQuery,
    StateRecord,
    Status,
    StatusReport,
    Successor,
    with_error,
)
from martian_doves.stores.base import SubmitResult
from martian_doves.stores.memory_records import NEVER, reported, state_record, worker_infos
from martian_doves.stores.memory_records import Mail as _Mail
from martian_doves.stores.memory_records import Record as _Record
from martian_doves.stores.memory_records import WorkerEntry as _Worker


class MemoryStore:
    """Thread-safe store kept in a dict; lost when the process exits."""

    mode = "memory"

    def __init__(self, clock: Clock | None = None, lease_seconds: float = StoreOptions.lease_seconds, *,
                 max_state_bytes: int = StoreOptions.max_state_bytes,
                 max_join_bytes: int = StoreOptions.max_join_bytes) -> None:
        self.clock = clock or SystemClock()
        self.lease_seconds = lease_seconds
        #: What a file store would refuse, refused here too: a state over this (a join's: ``max_join_bytes``).
        self.max_state_bytes = max_state_bytes
        self.max_join_bytes = max_join_bytes
        self.description = "memory"
        self._records: dict[str, _Record] = {}
        self._ready: list[tuple[float, int, str]] = []  # heap of (not_before, seq, name)
        self._seq = 0
        self._workers: dict[str, _Worker] = {}
        self._mail: dict[str, list[_Mail]] = {}
        self._lock = threading.Condition()

    # -- helpers -------------------------------------------------------------------

    def _push(self, record: _Record) -> None:
        if record.not_before < NEVER:
            self._seq += 1
            heapq.heappush(self._ready, (record.not_before, self._seq, record.state.name))

    def _owned(self, claim: Claim) -> _Record:
        record = self._records.get(claim.name)
        if record is None or record.status is not Status.IN_PROGRESS or record.token != claim.token:
            raise ClaimLost(f"claim on {claim.name} was taken over")
        return record

    def _new_claim(self, record: _Record, worker: str) -> Claim:
        now = self.clock.time()
        due_at = max(record.submitted_at, record.not_before)
        record.status = Status.IN_PROGRESS
        record.token = uuid.uuid4().hex
        record.worker = worker
        record.claimed_at = now
        record.lease_expires = now + self.lease_seconds
        # The handler gets its own copy: a tick that changes its payload in place and then
        # raises must be retried with the stored payload, as it would be from a file.
        return Claim(_detached(record.state, None), record.token, worker, record.attempts, tuple(record.errors),
                     record.retries, due_at=min(due_at, now))

    def _machine(self, root: str) -> Iterator[_Record]:
        return (r for r in self._records.values() if r.state.machine_name == root)

    def _has_ended(self, root: str) -> bool:
        return all(r.status in (Status.DONE, Status.FAILED) for r in self._machine(root))

    def _untaken(self, root: str, event: str | None) -> _Mail | None:
        return next((m for m in self._mail.get(root, ()) if m.taken_by is None and m.event.name == event), None)

    def _children_ended(self, spawner: str) -> bool:
        record = self._records.get(spawner)
        return record is not None and all(self._has_ended(child) for child in record.children)

    def _settle_wait(self, record: _Record, now: float | None = None) -> None:
        """Make a waiting entry wait again, or runnable at once (``now``) if what it waits for is there."""
        wait = record.state.wait
        assert wait is not None
        record.status, record.token = Status.WAITING, None
        if wait.is_join:
            ready = self._children_ended(record.state.parent or "")
        else:
            root = record.state.machine_name
            ready = any(m.taken_by == record.state.name for m in self._mail.get(root, ())) \
                or self._untaken(root, wait.event) is not None
        now = self.clock.time() if now is None else now
        record.not_before = now if ready else (NEVER if wait.deadline is None else wait.deadline)
        self._push(record)

    def _machine_ended(self, record: _Record) -> None:
        """A child machine ended: its parent's join may run now."""
        origin = record.state.origin
        if origin is None or not self._children_ended(origin.parent):
            return
        join = next((r for r in self._records.values()
                     if r.state.parent == origin.parent and r.state.wait is not None and r.status is Status.WAITING),
                    None)
        if join is not None:
            self._settle_wait(join)

    def _claimable(self, record: _Record, states: frozenset[str] | None, now: float) -> bool:
        return (record.status in (Status.PENDING, Status.WAITING) and record.not_before <= now
                and (states is None or record.state.state in states or record.state.state in INTERNAL_STATES))

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
                    state = _detached(State(state.name, state.state, state.payload), self.max_state_bytes)
                except CodecError as e:
                    results.append(SubmitResult(state.name, False, e.message))
                    continue
                record = _Record(state, Status.PENDING, self.clock.time())
                self._records[state.name] = record
                self._push(record)
                results.append(SubmitResult(state.name, True))
            self._lock.notify_all()
        return results

    def register_worker(self, worker: str, states: Collection[str] | None = None) -> None:
        with self._lock:
            now = self.clock.time()
            self._workers[worker] = _Worker(now, None if states is None else frozenset(states), now)

    def unregister_worker(self, worker: str) -> None:
        with self._lock:
            self._workers.pop(worker, None)

    def _recover_expired(self, now: float) -> None:
        for record in self._records.values():
            if record.status is Status.IN_PROGRESS and record.lease_expires < now:
                self._take_back(record, now, f"worker {record.worker} lost its lease")

    def _take_back(self, record: _Record, now: float, error: str) -> None:
        """Give a claimed state back from a worker that is gone: one failed attempt, ``error`` recorded."""
        record.attempts += 1
        record.errors = list(with_error(record.errors, error))
        if record.state.wait is not None:
            self._settle_wait(record, now)
            return
        record.status, record.token, record.not_before = Status.PENDING, None, now
        self._push(record)

    def claim(self, worker: str, limit: int, states: Collection[str] | None = None) -> list[Claim]:
        claims: list[Claim] = []
        wanted = None if states is None else frozenset(states)
        with self._lock:
            now = self.clock.time()
            self._recover_expired(now)
            skipped = []
            while self._ready and len(claims) < limit and self._ready[0][0] <= now:
                entry = heapq.heappop(self._ready)
                record = self._records.get(entry[2])
                if record is None or record.not_before != entry[0] or not self._claimable(record, None, now):
                    continue  # a stale heap entry
                if not self._claimable(record, wanted, now):
                    skipped.append(entry)  # another worker has its machine
                    continue
                claims.append(self._new_claim(record, worker))
            for entry in skipped:
                heapq.heappush(self._ready, entry)
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
            if worker in self._workers:
                self._workers[worker].seen = self.clock.time()
            for claim in claims:
                try:
                    self._owned(claim).lease_expires = self.clock.time() + self.lease_seconds
                except ClaimLost:
                    lost.append(claim)
        return lost

    def _child(self, spawner: str, index: int, state: State) -> str:
        """Create child ``index`` of ``spawner`` once; its name (an earlier attempt's child is reused)."""
        origin = Origin(spawner, index)
        for name in child_names(spawner, index):
            existing = self._records.get(name)
            if existing is None:
                child = State(name, state.state, state.payload, origin=origin)
                record = _Record(child, Status.PENDING, self.clock.time(), not_before=self.clock.time())
                self._records[name] = record
                self._push(record)
                return name
            if existing.state.origin == origin:
                return name
        raise AssertionError("unreachable: child_names raises when it runs out")

    def commit(self, claim: Claim, successor: Successor | None, *, keep: bool = False) -> Claim | None:
        successor = None if successor is None else Successor(*successor)  # a plain pair reads as one
        # Checked before anything changes: a payload no file could hold is the handler's fault.
        children = [] if successor is None else [_detached(State(claim.name, c.state, c.payload),
                                                           self.max_state_bytes) for c in successor.children]
        with self._lock:
            record = self._owned(claim)
            now = self.clock.time()
            if successor is None:
                record.status, record.finished_at, record.token, record.ended = Status.DONE, now, None, True
                self._machine_ended(record)
                self._lock.notify_all()
                return None
            for index in range(len(children)):  # every name usable before any child is created
                codec.check_name(next(child_names(claim.name, index)))
            names = tuple(self._child(claim.name, index, child) for index, child in enumerate(children))
            parent = claim.state
            limit, join = codec.successor_limit(parent, self.max_state_bytes, self.max_join_bytes)
            state = _detached(State(f"successor of {claim.name}", successor.state, successor.payload, claim.name,
                                    parent.machine_name, successor.wait, parent.origin), limit, join=join)
            for name in successor_names(claim.name):
                existing = self._records.get(name)
                if existing is None:
                    break
                if existing.state.parent == claim.name:
                    # Written by an earlier run of this tick (e.g. before a reset): exactly once.
                    record.status, record.finished_at, record.token, record.children = Status.DONE, now, None, names
                    runnable = existing.status is Status.PENDING and existing.not_before <= now
                    if keep and runnable:
                        return self._new_claim(existing, claim.worker)
                    self._lock.notify_all()
                    return None
            record.status, record.finished_at, record.token, record.children = Status.DONE, now, None, names
            child = _Record(State(name, state.state, state.payload, state.parent, state.machine, state.wait,
                                  state.origin), Status.PENDING, now, not_before=successor.not_before or now)
            self._records[name] = child
            if child.state.wait is not None:
                self._settle_wait(child)
            elif keep and child.not_before <= now:
                return self._new_claim(child, claim.worker)
            else:
                self._push(child)
            self._lock.notify_all()
            return None

    def retry_later(self, claim: Claim, delay_seconds: float, error: str, *, requested: bool = False) -> None:
        with self._lock:
            record = self._owned(claim)
            if requested:
                record.retries += 1
            else:
                record.attempts += 1
                record.errors = list(with_error(record.errors, error))
            record.status, record.token = Status.PENDING, None
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
            self._machine_ended(record)
            self._lock.notify_all()

    def release(self, claim: Claim) -> None:
        with self._lock:
            record = self._owned(claim)
            if record.state.wait is not None:
                self._settle_wait(record)
            else:
                record.status, record.token, record.not_before = Status.PENDING, None, self.clock.time()
                self._push(record)
            self._lock.notify_all()

    def send(self, machine: str, event: str, data: Any) -> None:
        try:
            codec.check_payload({"data": data})
        except InvalidDocument as e:
            raise InvalidDocument(f"event data: {e.message}") from e
        with self._lock:
            record = self._records.get(machine)
            if record is None:
                raise NoSuchMachine(f"no machine named {machine} in {self.description}")
            root = record.state.machine_name
            if self._has_ended(root):
                raise MachineEnded(f"machine {root} has ended; it will not wait for {event!r} again")
            self._mail.setdefault(root, []).append(
                _Mail(MachineEvent(event, _detached_value(data), self.clock.time())))
            for waiting in self._machine(root):
                wait = waiting.state.wait
                if waiting.status is Status.WAITING and wait is not None and wait.event == event:
                    self._settle_wait(waiting)
            self._lock.notify_all()

    def take_event(self, claim: Claim) -> MachineEvent | None:
        wait = claim.state.wait
        if wait is None or wait.is_join:
            return None
        with self._lock:
            mailbox = self._mail.get(claim.state.machine_name, [])
            taken = next((m for m in mailbox if m.taken_by == claim.name), None)
            if taken is None:
                taken = self._untaken(claim.state.machine_name, wait.event)
                if taken is None:
                    return None
                taken.taken_by = claim.name
            return taken.event

    def _outcome(self, child: str) -> ChildOutcome | None:
        last = next((r for r in self._machine(child)
                     if r.status is Status.FAILED or (r.status is Status.DONE and r.ended)), None)
        if last is None or not self._has_ended(child):
            return None
        error = None
        if last.failure is not None:
            error = {"code": last.failure.code, "message": last.failure.message}
        return ChildOutcome(child, last.state.state, last.status, last.state.payload, error)

    def children(self, claim: Claim) -> list[ChildOutcome] | None:
        with self._lock:
            spawner = self._records.get(claim.state.parent or "")
            if spawner is None:
                return None
            outcomes = [self._outcome(child) for child in spawner.children]
            found = [outcome for outcome in outcomes if outcome is not None]
            return found if len(found) == len(outcomes) else None

    def _counts(self, now: float) -> dict[Status, int]:
        counts = {status: 0 for status in Status}
        for record in self._records.values():
            counts[reported(record, now)] += 1
        return counts

    def status(self) -> StatusReport:
        with self._lock:
            now = self.clock.time()
            counts = self._counts(now)
            oldest = min((r.submitted_at for r in self._records.values()
                          if r.status is Status.PENDING and r.not_before <= now), default=None)
            failures = [(r.state.name, r.failure.code, r.failure.message) for r in self._records.values()
                        if r.failure is not None and r.status is Status.FAILED]
            return StatusReport(
                counts[Status.PENDING], counts[Status.IN_PROGRESS], counts[Status.DONE],
                counts[Status.FAILED], worker_infos(self._records.values(), self._workers, now, self.lease_seconds),
                oldest, failures[-10:], {"store": "memory"},
                scheduled=counts[Status.SCHEDULED], waiting=counts[Status.WAITING],
            )

    def history(self, name: str) -> list[HistoryEntry]:
        with self._lock:
            record = self._records.get(name)
            if record is None:
                return []
            while record.state.parent is not None and record.state.parent in self._records:
                record = self._records[record.state.parent]
            entries = []
            now = self.clock.time()
            while True:
                entries.append(state_record(record, self._mail, now))
                child = next((r for r in self._records.values() if r.state.parent == record.state.name), None)
                if child is None:
                    return entries
                record = child

    def machine_names(self, limit: int | None = None) -> list[str]:
        """Lineage roots (submitted states and child machines), newest first."""
        with self._lock:
            roots = sorted(((r.submitted_at, r.state.name) for r in self._records.values() if r.state.parent is None),
                           reverse=True)
        return [name for _, name in roots[:limit]]

    def is_finished(self, states: Collection[str] | None = None) -> bool:
        wanted = None if states is None else frozenset(states) | INTERNAL_STATES
        with self._lock:
            return all(r.status in (Status.DONE, Status.FAILED)
                       or (r.status is Status.WAITING and r.not_before == NEVER)
                       or (wanted is not None and r.state.state not in wanted) for r in self._records.values())

    def reset(self, *, successors: bool) -> int:
        with self._lock:
            if successors:
                self._records = {n: r for n, r in self._records.items()
                                 if r.state.parent is None and r.state.origin is None}
                self._mail.clear()
            self._ready = []
            for record in self._records.values():
                self._reset_record(record)
            return len(self._records)

    def _reset_record(self, record: _Record) -> None:
        fresh = _Record(record.state, Status.PENDING, record.submitted_at)
        self._records[record.state.name] = fresh
        if record.state.wait is not None:
            self._settle_wait(fresh)
        else:
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

    # -- inspection (InspectableStore, SupervisedStore) -------------------------------

    def find(self, query: StateQuery) -> list[StateRecord]:
        with self._lock:
            now = self.clock.time()
            return query.page(state_record(record, self._mail, now) for record in self._records.values())

    def show(self, name: str) -> StateRecord | None:
        with self._lock:
            record = self._records.get(name)
            return None if record is None else state_record(record, self._mail, self.clock.time())

    def counts_by_state(self) -> dict[str, dict[Status, int]]:
        counts: dict[str, Counter[Status]] = {}
        with self._lock:
            now = self.clock.time()
            for record in self._records.values():
                counts.setdefault(record.state.state, Counter())[reported(record, now)] += 1
        return {state: dict(found) for state, found in sorted(counts.items())}

    def forget(self, names: Sequence[str]) -> int:
        removed = 0
        with self._lock:
            roots = dict.fromkeys(self._records[n].state.machine_name for n in names if n in self._records)
            for root in roots:
                members = [r for r in self._records.values() if r.state.machine_name == root]
                if not self._may_forget(members):
                    continue
                for record in members:
                    del self._records[record.state.name]
                removed += len(members)
                self._mail.pop(root, None)
        return removed

    def _may_forget(self, members: Sequence[_Record]) -> bool:
        """Whether a machine (all its records) has ended, and no running parent's join waits for it."""
        if not all(r.status in (Status.DONE, Status.FAILED) for r in members):
            return False
        origin = members[0].state.origin if members else None
        spawner = None if origin is None else self._records.get(origin.parent)
        return spawner is None or self._has_ended(spawner.state.machine_name)

    def worker_exited(self, worker: str, reason: str) -> int:
        given = 0
        with self._lock:
            now = self.clock.time()
            if worker in self._workers:
                self._workers[worker].ended = reason
            for record in self._records.values():
                if record.status is Status.IN_PROGRESS and record.worker == worker:
                    self._take_back(record, now, f"worker {worker} {reason}")
                    given += 1
            self._lock.notify_all()
        return given

    def close(self) -> None:
        pass


def _detached(state: State, max_bytes: int | None = codec.DEFAULT_MAX_STATE_BYTES, *, join: bool = False) -> State:
    """A copy of ``state`` sharing nothing with the caller, its payload checked to be JSON.

    Raises:
        InvalidDocument: the payload cannot be written as a state file.
        FileTooLarge: a file of it would be over ``max_bytes``.
    """
    return codec.decode(codec.encode(state, max_bytes, join=join), state.name)


def _detached_value(value: Any) -> Any:
    """A copy of any JSON value (event data), sharing nothing with the caller."""
    return _detached(State("event.state", "event", {"data": value})).payload["data"]


def expire_all(store: MemoryStore) -> None:
    """Test helper: make every lease look expired (as if its worker died)."""
    with store._lock:
        for record in store._records.values():
            record.lease_expires = 0.0


__all__ = ["MemoryStore", "expire_all"]
