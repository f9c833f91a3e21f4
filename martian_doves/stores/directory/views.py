"""Reading a directory store for people: ``status``, ``history``, ``find``, ``show``, counts by state.
No coordination here, and nothing is written.

Both directory modes share it; it only reads what ``layout.Layout`` reads and writes. A
state's status comes from its markers (done marker, failure reason, claim, hint), listed
folder by folder in the direction states move (pending → in_progress → done, failed),
so a state that moves while they are listed is still seen once.

State files never change once written, nor do done markers and reasons: a ``Reader``
keeps what it read of them (a file's state name, an outcome's worker) by name and identity,
so a view refreshed every few seconds (``status --watch``, the dashboard) reads each
file once, not at every refresh.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from martian_doves import codec
from martian_doves.clock import SystemClock
from martian_doves.errors import CodecError, StoreUnavailable, UnsafeName
from martian_doves.model import (
    JOIN_STATE,
    RESERVED_PREFIX,
    Failure,
    JSONDict,
    State,
    StateQuery,
    StateRecord,
    Status,
    StatusReport,
    WorkerClaim,
    WorkerInfo,
)
from martian_doves.stores.directory import fsops
from martian_doves.stores.directory.layout import REASON_SUFFIX, Layout
from martian_doves.stores.directory.machines import Machines
from martian_doves.stores.directory.records import Registration, as_count, as_time, claim_record, split_claim

#: How many of the latest failures ``status`` lists.
RECENT_FAILURES = 5
#: Most files whose contents a ``Reader`` keeps (about 100 bytes each); beyond, they are read again.
MEMO_ENTRIES = 200_000
#: Most done markers and reasons one ``status`` reads to count each worker's outcomes; until all
#: are read (over a few refreshes of a large store), the counts are not given.
OUTCOMES_PER_STATUS = 5000
#: How much older than ``StateQuery.since`` a marker may look and still be read (hosts' clocks differ).
SINCE_SLACK_SECONDS = 60.0
#: Most pending states whose state files one ``status`` reads to tell which no live worker can run.
NO_WORKER_READS = 20_000
#: Most hints one ``status`` looks at (one ``stat`` each) for the oldest pending; the rest are counted by name.
HINTS_LOOKED_AT = 5_000
#: Longest lineage walked up to find a state's machine.
MAX_LINEAGE_STEPS = 100_000
#: The state name shown for a state file that cannot be read.
UNREADABLE = "?"
#: A file's identity while it exists: (inode number, ctime in ns).
Identity = tuple[int, int]


class _Memo:
    """What was read of files that never change, keyed by name and identity (``fsops.identified_entries``);
    bounded."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, Identity], str | None] = {}

    def get(self, key: tuple[str, Identity], read: Callable[[], str | None]) -> str | None:
        if key in self._known:
            return self._known[key]
        value = read()
        if len(self._known) < MEMO_ENTRIES:
            self._known[key] = value
        return value

    def __contains__(self, key: tuple[str, Identity]) -> bool:
        return key in self._known


@dataclass(frozen=True)
class Markers:
    """Every marker of the store, one listing per folder: what status each state is in."""

    #: Hints: name → mtime (when it may run).
    hints: dict[str, float]
    #: Claims: name → (entry in ``in_progress/``, mtime).
    claims: dict[str, tuple[str, float]]
    #: Done markers: name → ctime (when it was committed).
    done: dict[str, float]
    #: Failure reasons: name → mtime (when it failed).
    failed: dict[str, float]
    #: Timers (``scheduled/``): name → when due.
    timers: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Waiting entries (``waiting/``): name → deadline (or when it began waiting).
    waits: dict[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def read(cls, files: Layout) -> Markers:
        # Parked first: a timer or a waiting entry moves on to pending/, then as any state.
        parked = Machines(files, SystemClock(), _never)
        timers, waits = parked.parked(timers=True), parked.parked(timers=False)
        hints = dict(fsops.stamped_entries(files.pending))
        claims = {split_claim(entry)[0]: (entry, mtime) for entry, mtime in fsops.stamped_files(files.in_progress)}
        done = dict(fsops.stamped_entries(files.done, changed=True))
        failed = {entry[: -len(REASON_SUFFIX)]: mtime for entry, mtime in fsops.stamped_entries(files.failed)
                  if entry.endswith(REASON_SUFFIX)}
        return cls(hints, claims, done, failed, timers, waits)

    def status_of(self, name: str, now: float) -> Status:
        """Where ``name`` stands (a state file with no marker yet waits for admission: pending)."""
        if name in self.done:
            return Status.DONE
        if name in self.failed:
            return Status.FAILED
        if name in self.claims:
            return Status.IN_PROGRESS
        if name in self.hints:
            return Status.SCHEDULED if self.hints[name] > now else Status.PENDING
        if name in self.timers:
            return Status.SCHEDULED
        if name in self.waits:
            return Status.WAITING
        return Status.PENDING

    def time_of(self, name: str, default: float = 0.0) -> float:
        """When ``name`` last moved, as its markers tell (``default`` for a state file with none)."""
        for found in (self.done, self.failed):
            if name in found:
                return found[name]
        if name in self.claims:
            return self.claims[name][1]
        for parked in (self.hints, self.timers, self.waits):
            if name in parked:
                return parked[name]
        return default


def _never(name: str) -> bool:
    """Makes no hint: readers never write."""
    return False


def _registered(files: Layout, now: float, liveness_seconds: float) -> list[tuple[WorkerInfo, Registration]]:
    found = []
    for registration in files.registrations():
        # A registration carries its worker's own liveness window: the reader may have
        # opened the store with other options than that worker.
        liveness = registration.liveness_seconds or liveness_seconds
        alive = registration.ended is None and now - registration.seen_at < liveness
        machines = None if registration.machines is None else tuple(sorted(registration.machines))
        found.append((WorkerInfo(registration.name, registration.host, registration.pid, registration.seen_at, alive,
                                 registration.started_at, machines, ended=registration.ended), registration))
    return found


def workers(files: Layout, now: float, liveness_seconds: float) -> list[WorkerInfo]:
    """The registrations in ``workers/`` (without their claims and outcomes).

    Args:
        now: this host's time, epoch seconds.
        liveness_seconds: how recently a worker must have been stamped to count as alive,
            for registrations that do not say.
    """
    return [worker for worker, _ in _registered(files, now, liveness_seconds)]


def machine_names(files: Layout, limit: int | None) -> list[str]:
    """Lineage roots by their names (``x.state``, children's ``x.state-1+0.state``), in the root or
    failed, newest file first."""
    stamped = {name: mtime for folder in (files.failed, files.top) for name, mtime in fsops.stamped_entries(folder)
               if codec.is_root_name(name)}
    return [name for _, name in sorted(((m, n) for n, m in stamped.items()), reverse=True)[:limit]]


def _is_safe_name(name: str) -> bool:
    try:
        codec.check_name(name)
    except UnsafeName:
        return False
    return True


class Reader:
    """Reads one folder store for people, keeping what it read of files that never change.

    Args:
        files: the store's layout.
    """

    def __init__(self, files: Layout) -> None:
        self.files = files
        #: State names of state files, by (name, identity); failed/ files under ``failed/NAME``.
        self._state_names = _Memo()
        #: The worker of each outcome (done marker, or reason under ``failed/NAME``), by (name, identity).
        self._outcomes = _Memo()
        #: Reads mailboxes and children (never writes: it has no hints to make).
        self.machines = Machines(files, SystemClock(), _never)

    # -- single states -----------------------------------------------------------------------

    def state_name(self, name: str, identity: Identity, *, failed: bool = False) -> str:
        """The state name in the state file ``name`` (``UNREADABLE`` if it cannot be read)."""
        def read() -> str:
            try:
                return self.files.read_state(name, failed=failed).state
            except (OSError, CodecError):
                return UNREADABLE

        key = (f"failed/{name}" if failed else name, identity)
        return self._state_names.get(key, read) or UNREADABLE

    def record(self, name: str, now: float, markers: Markers | None = None,
               roots: dict[str, str] | None = None) -> StateRecord | None:
        """Everything the folder says of the state ``name``; None if it has neither file nor reason.

        Args:
            markers: a listing of the markers to judge its status by (read now if None).
            roots: a memo of machines found for other states (``find`` shares one).
        """
        files = self.files
        if not _is_safe_name(name):
            return None
        markers = markers or Markers.read(files)
        in_failed = not files.has_state(name)
        state: State | None
        try:
            state = files.read_state(name, failed=in_failed)
        except FileNotFoundError:
            if name not in markers.failed and not files.has_reason(name):
                return None
            state = None
        except (OSError, CodecError):
            state = None  # quarantined, or about to be: its reason says why
        written = files.state_stat(name, failed=in_failed)
        record = StateRecord(
            name, state.state if state else UNREADABLE, Status.PENDING, state.payload if state else None,
            parent=state.parent if state else None, machine=self._machine(state, roots) if state else None,
            wait=state.wait if state else None, origin=state.origin if state else None,
            submitted_at=written.st_mtime if written else None)
        return self._with_markers(record, markers, now)

    def _with_markers(self, record: StateRecord, markers: Markers, now: float) -> StateRecord:
        files, name = self.files, record.name
        status = markers.status_of(name, now)
        if status is Status.DONE:
            done = files.read_done(name)
            info, committed_at = done if done is not None else ({}, markers.done[name])
            claim = claim_record(info)
            return dataclasses.replace(record, status=status, worker=claim.worker, finished_at=committed_at,
                                       attempts=claim.attempts, errors=claim.errors, claimed_at=claim.claimed_at,
                                       retries=claim.retries)
        if status is Status.FAILED:
            return dataclasses.replace(record, status=status, **_failure_fields(files.read_reason(name)))
        if status is Status.IN_PROGRESS:
            claim = files.read_claim_entry(markers.claims[name][0])
            return dataclasses.replace(record, status=status, worker=claim.worker, attempts=claim.attempts,
                                       errors=claim.errors, claimed_at=claim.claimed_at, retries=claim.retries)
        if name in markers.hints:
            hint = files.read_hint(name)
            record = dataclasses.replace(record, status=status, attempts=hint.attempts, errors=hint.errors,
                                         retries=hint.retries)
            if status is Status.SCHEDULED:
                record = dataclasses.replace(record, not_before=markers.hints[name])
        elif status is Status.SCHEDULED:
            due = markers.timers[name]
            timer = files.read_timer(name, due)  # a retry's timer carries its attempts, as a hint does
            record = dataclasses.replace(record, status=status, not_before=due, attempts=timer.attempts,
                                         errors=timer.errors, retries=timer.retries)
        elif status is Status.WAITING:
            record = dataclasses.replace(record, status=status)
        return record

    def show(self, name: str, now: float) -> StateRecord | None:
        """``InspectableStore.show``: the record of ``name`` with the event its wait took and the
        children its tick started."""
        record = self.record(name, now)
        if record is None or not codec.is_state_file_name(name):
            return record
        following = self.machines.successor_of(name)
        return self._with_machine_model(record, None if following is None else self.machines.read_anywhere(following))

    def _with_machine_model(self, record: StateRecord, following: StateRecord | State | None) -> StateRecord:
        """``record`` with the event its wait took, and the children its tick started (``following``:
        its successor)."""
        if record.wait is not None and not record.wait.is_join:
            record = dataclasses.replace(record, event=self.machines.taken_event(record.machine_name, record.name))
        if following is not None and following.state == JOIN_STATE and following.wait is not None:
            children = self.machines.child_names_of(record.name, following.wait.children)
            record = dataclasses.replace(record, children=tuple(children or ()))
        return record

    def _machine(self, state: State, roots: dict[str, str] | None) -> str | None:
        """The machine (lineage root) of ``state``: as its file says, or found up its recorded parents."""
        if state.machine is not None or state.parent is None:
            return state.machine
        roots = {} if roots is None else roots
        walked: list[str] = []
        current, parent = state.name, state.parent
        while parent and len(walked) < MAX_LINEAGE_STEPS and codec.is_successor_name(current, parent):
            if parent in roots:
                current = roots[parent]
                break
            walked.append(current)
            found = self.files.parent_of(parent)
            if found is None:  # the parent is gone (forgotten): the lineage starts after it
                break
            current, parent = parent, found
        for name in walked:
            roots[name] = current
        return None if current == state.name else current

    # -- many states ---------------------------------------------------------------------------

    def find(self, query: StateQuery, now: float) -> list[StateRecord]:
        """``InspectableStore.find``: candidates from the listings, newest first, then read one by one."""
        markers = Markers.read(self.files)
        times: dict[str, float] = {}
        wanted = query.status
        if wanted in (None, Status.PENDING):
            # State files no marker knows yet (copied in, waiting for admission) are pending too.
            for name, mtime in fsops.stamped_entries(self.files.top):
                if codec.is_state_file_name(name):
                    times[name] = mtime
        for name in (*markers.hints, *markers.claims, *markers.done, *markers.failed):
            times[name] = 0.0
        candidates = sorted(((markers.time_of(name, default), name) for name, default in times.items()
                             if wanted is None or markers.status_of(name, now) is wanted), reverse=True)
        found: list[StateRecord] = []
        skip = query.offset
        roots: dict[str, str] = {}
        for moved_at, name in candidates:
            if query.since is not None and moved_at < query.since - SINCE_SLACK_SECONDS:
                break
            record = self.record(name, now, markers, roots)
            if record is None or not query.matches(record):
                continue
            if skip:
                skip -= 1
                continue
            found.append(record)
            if query.limit is not None and len(found) >= query.limit:
                break
        return found

    def counts_by_state(self, now: float) -> dict[str, dict[Status, int]]:
        """``InspectableStore.counts_by_state``: each state file counted once, by its markers."""
        markers = Markers.read(self.files)
        counts: dict[str, Counter[Status]] = {}
        seen: set[str] = set()
        for failed in (False, True):
            for name, identity in self._state_files(failed=failed):
                status = markers.status_of(name, now)
                if name in seen or (failed and status is not Status.FAILED):
                    continue
                seen.add(name)
                counts.setdefault(self.state_name(name, identity, failed=failed), Counter())[status] += 1
        gone = len(markers.failed.keys() - seen)  # reasons whose file is gone: quarantined, unreadable
        if gone:
            counts.setdefault(UNREADABLE, Counter())[Status.FAILED] += gone
        return {state: dict(found) for state, found in sorted(counts.items())}

    def _state_files(self, *, failed: bool) -> Iterator[tuple[str, Identity]]:
        for name, identity in fsops.identified_entries(self.files.failed if failed else self.files.top):
            if codec.is_state_file_name(name) and not name.endswith(REASON_SUFFIX):
                yield name, identity

    # -- status --------------------------------------------------------------------------------

    def status(self, now: float, mode: str, liveness_seconds: float) -> StatusReport:
        """Counts from the folders, the oldest pending hint, the last few failures, the workers.

        Raises:
            StoreUnavailable: the store's folders are gone (unmounted, removed).

        Args:
            mode: the mode to report when no live worker says which it runs in.
            now, liveness_seconds: as for ``workers``.
        """
        files = self.files
        # The store or folders that were there when it was opened, gone (a volume unmounted, the
        # store moved or removed): an outage to report, not an empty store.
        missing = files.displaced()
        if missing:
            raise StoreUnavailable(f"{files.root} cannot be read: {', '.join(missing)} moved, removed or "
                                   "replaced (the store was removed or its volume unmounted?)")
        registered = _registered(files, now, liveness_seconds)
        alive = [worker for worker, _ in registered if worker.alive]
        timers, waits = self.machines.parked(timers=True), self.machines.parked(timers=False)
        hints = fsops.listdir_quiet(files.pending)
        due, later, gone, looked = self._due_hints(hints, now)
        claimed = list(fsops.stamped_files(files.in_progress))
        # Counted, not listed: done/ holds one marker per transition ever made, and a
        # supervisor samples this while its fleet runs for weeks.
        done = fsops.count_entries(files.done)
        failed = files.failed_names()
        # A live worker admits a state file copied or moved into the root at once (inotify; one
        # written on another host of a shared volume, within --scan-seconds): the root, which
        # holds every state ever written, is listed only when no worker runs.
        arrived = [] if alive else self._arrived(hints, claimed, done, failed, timers, waits)
        stamps = [*due.values(), *arrived]
        recent = []
        for failed_name in failed[-RECENT_FAILURES:]:
            reason = files.read_reason(failed_name) or {}
            recent.append((failed_name, str(reason.get("code")), str(reason.get("message"))))
        # Both modes share these folders: report the mode the live workers run in.
        modes = sorted({mode if registration.mode is None else registration.mode
                        for worker, registration in registered if worker.alive}) or [mode]
        details: JSONDict = {"store": files.root, "mode": ", ".join(modes)}
        if looked < len(hints):
            details["oldest_pending_of"] = f"{looked} hints looked at, of {len(hints)}"
        unrunnable = self._no_worker_for(alive, due)
        if unrunnable:
            details["no_worker_for"] = unrunnable
        return StatusReport(
            pending=len(hints) - later - gone + len(arrived),
            scheduled=later + len(timers),
            waiting=len(waits),
            in_progress=len(claimed),
            done=done,
            failed=len(failed),
            workers=self._worker_details([worker for worker, _ in registered], [entry for entry, _ in claimed],
                                         done + len(failed)),
            oldest_pending_at=min(stamps, default=None),
            recent_failures=recent,
            details=details,
        )

    def _arrived(self, hints: list[str], claimed: list[tuple[str, float]], done: int, failed: list[str],
                 timers: Collection[str], waits: Collection[str]) -> list[float]:
        """The mtimes of the state files in the root that no marker knows (copied in and not admitted
        yet, in a store never run perhaps): pending too. One set, the root's names, less the markers'
        (C loops: a million names take a fraction of a second); only those left are looked at one by one."""
        files = self.files
        root = fsops.listdir_quiet(files.top)
        folders = sum(folder.exists for folder in files.folders.values())
        if len(root) - folders == len(hints) + len(claimed) + done + len(timers) + len(waits):
            # One entry for each marker (every state file's is in the root, a failed one's in
            # failed/): the usual store, with nothing unannounced, counted without a set.
            return []
        unknown = set(root).difference(
            hints, (split_claim(entry)[0] for entry, _ in claimed), fsops.entry_names(files.done), failed, timers,
            waits)
        return [found.st_mtime for found in (fsops.lstat_quiet(files.state_at(name)) for name in unknown
                                             if codec.is_state_file_name(name))
                if found is not None]

    def _due_hints(self, hints: list[str], now: float) -> tuple[dict[str, float], int, int, int]:
        """Which of ``hints`` (names in ``pending/``) are due: the due ones looked at (name → mtime), how
        many are due later, how many were gone (claimed since listed), and how many were looked at.

        ``pending/`` holds what may run now (a delayed retry or a timer waits in ``scheduled/``),
        so beyond ``HINTS_LOOKED_AT`` the rest are counted as due by their names alone, and the
        oldest pending is the oldest of those looked at: the listing's order has nothing to do
        with age, so it is among the oldest few of the whole backlog. Hints due later written by
        an earlier version (a lease worker moves them aside as it meets them) are still
        counted exactly: once one is seen, every hint is looked at.
        """
        due: dict[str, float] = {}
        later = gone = 0
        looked = min(len(hints), HINTS_LOOKED_AT)
        for index, name in enumerate(hints):
            if index >= looked:
                if not later:
                    break
                looked = len(hints)
            found = fsops.lstat_quiet(self.files.hint_at(name))
            if found is None:
                gone += 1  # claimed since it was listed: the listing of in_progress/ counts it
            elif found.st_mtime <= now:
                due[name] = found.st_mtime
            else:
                later += 1
        return due, later, gone, looked

    def _no_worker_for(self, alive: list[WorkerInfo], due: dict[str, float]) -> list[JSONDict]:
        """The runnable states no live worker has a machine for: ``{"state", "count", "oldest_pending_at"}``
        per state name (the first ``NO_WORKER_READS`` hints are read; a fleet of workers that run
        every state has none)."""
        if not alive or any(worker.machines is None for worker in alive):
            return []
        runnable = frozenset(machine for worker in alive for machine in worker.machines or ())
        found: dict[str, tuple[int, float]] = {}
        for name, mtime in list(due.items())[:NO_WORKER_READS]:
            written = self.files.state_stat(name)
            if written is None:
                continue
            state = self.state_name(name, (written.st_ino, written.st_ctime_ns))
            if state in runnable or state == UNREADABLE or state.startswith(RESERVED_PREFIX):
                continue
            count, oldest = found.get(state, (0, mtime))
            found[state] = (count + 1, min(oldest, mtime))
        return [{"state": state, "count": count, "oldest_pending_at": oldest}
                for state, (count, oldest) in sorted(found.items())]

    def _worker_details(self, found: list[WorkerInfo], claimed: list[str], outcomes: int) -> list[WorkerInfo]:
        """``found`` with each worker's claims and outcomes (of ``outcomes`` done markers and reasons in all:
        more than a reader keeps are not counted, as they would be read again at every call)."""
        if not found:
            return found
        claims: dict[str, list[WorkerClaim]] = {}
        for entry in claimed:
            name = split_claim(entry)[0]
            claim = self.files.read_claim_entry(entry)
            written = self.files.state_stat(name)
            state = self.state_name(name, (written.st_ino, written.st_ctime_ns)) if written else UNREADABLE
            claims.setdefault(claim.worker or "?", []).append(WorkerClaim(name, state, claim.claimed_at))
        counted = self._outcome_counts() if outcomes <= MEMO_ENTRIES else None
        details = []
        for worker in found:
            mine = tuple(sorted(claims.get(worker.name, ()), key=lambda c: (c.since or 0.0, c.name)))
            processed, failed = (None, None) if counted is None else (
                counted[(worker.name, False)] + counted[(worker.name, True)], counted[(worker.name, True)])
            details.append(dataclasses.replace(worker, claims=mine, processed=processed, failed=failed))
        return details

    def _outcome_counts(self) -> Counter[tuple[str, bool]] | None:
        """(worker, failed?) → how many outcomes its done markers and reasons record; None until every
        marker was read (``OUTCOMES_PER_STATUS`` new ones per call)."""
        files = self.files
        budget = OUTCOMES_PER_STATUS
        counts: Counter[tuple[str, bool]] = Counter()
        listings = ((False, fsops.identified_entries(files.done)),
                    (True, ((entry[: -len(REASON_SUFFIX)], identity)
                            for entry, identity in fsops.identified_entries(files.failed)
                            if entry.endswith(REASON_SUFFIX))))
        for failed, listing in listings:
            for name, identity in listing:
                key = (f"failed/{name}" if failed else name, identity)
                if key not in self._outcomes:
                    if budget <= 0:
                        return None
                    budget -= 1
                worker = self._outcomes.get(key, functools.partial(self._outcome_worker, name, failed))
                counts[(worker or "?", failed)] += 1
        return counts

    def _outcome_worker(self, name: str, failed: bool) -> str | None:
        if failed:
            worker = (self.files.read_reason(name) or {}).get("worker")
            return None if worker is None else str(worker)
        done = self.files.read_done(name)
        return None if done is None else claim_record(done[0]).worker

    # -- lineages ------------------------------------------------------------------------------

    def history(self, name: str, now: float) -> list[StateRecord]:
        """The lineage containing ``name``: up through recorded parents, then down by successor names."""
        files = self.files
        markers = Markers.read(files)
        first = self.record(name, now, markers)
        if first is None or not codec.is_state_file_name(name):
            return [] if first is None else [first]  # a quarantined entry is a lineage of its own
        seen = {name}
        root = name
        while True:  # walk up to the root through recorded parents (names, never paths: see codec)
            parent = files.parent_of(root) or files.adopter_of(root)
            if not parent or parent in seen or not codec.is_successor_name(root, parent) \
                    or self.record(parent, now, markers) is None:
                break
            seen.add(parent)
            root = parent
        entries: list[StateRecord] = []
        current: str | None = root
        while current is not None:
            found = self.record(current, now, markers)
            if found is None:
                break
            entries.append(found)
            current = self.machines.successor_of(current)
        return [self._with_machine_model(entry, entries[index + 1] if index + 1 < len(entries) else None)
                for index, entry in enumerate(entries)]


def _failure_fields(reason: JSONDict | None) -> JSONDict:
    """The ``StateRecord`` fields a failure reason fills (an unreadable one still says it failed)."""
    reason = reason or {"code": "?", "message": "its reason file is unreadable"}
    errors = reason.get("errors")
    errors = tuple(str(e) for e in errors) if isinstance(errors, list) else ()
    traceback = reason.get("traceback")
    failure = Failure(str(reason.get("code")), str(reason.get("message")),
                      None if traceback is None else str(traceback), as_count(reason.get("attempts")), errors)
    worker = reason.get("worker")
    return {"worker": None if worker is None else str(worker), "finished_at": as_time(reason.get("failed_at")),
            "claimed_at": as_time(reason.get("claimed_at")), "attempts": failure.attempts, "errors": errors,
            "reason": f"{failure.code}: {failure.message}", "failure": failure}
