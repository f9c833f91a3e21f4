"""Directory store, semaphore mode: the seed's temporal semaphore, kept and fixed.

Time is cut into cycles of phases derived from ``time % cycle`` (seed defaults:
assignment 3 s, commitment 3 s, update 3 s, with 1 s buffers between them)::

    0 ─ assignment ─ 3 ─ buffer ─ 4 ─ commitment ─ 7 ─ buffer ─ 8 ─ update ─ 11 ─ buffer ─ 12

- **Update**: a worker with nothing queued and a thread free (one that last asked
  for work and got none) stamps its registration ``workers/NAME``. That is the only
  moment registrations change, so in the next cycle every worker reads the same set
  of *available* workers: those stamped during the previous cycle. A worker whose
  every thread is inside a long tick (the seed's slow-countdown) is left out until a
  thread is free, so new states never wait behind its tick.
- **Assignment**: each worker lists the hints in ``pending/`` stamped before the
  cycle began and computes, with rendezvous hashing over the available workers, which
  are its own. Every worker computes the same owner for a state from the same frozen
  registrations, whatever else it saw, so the assignment needs no messages.
- **Commitment**: each worker claims its share with the lease mode's atomic
  ``rename`` and works through it, for as many cycles as it takes; leases are kept
  alive by heartbeats, so a slow tick keeps its claim and a dead worker's claims are
  taken over when they expire.

Successors a worker commits while following a lineage are claimed at once (never
offered to the cycle), new and released hints wait for the next cycle's listing, and
files copied in mid-cycle are admitted as new hints, so views never split.

The protocol is safe while clock skew plus filesystem propagation delay stays below
the buffer: a worker measures its skew against the shared filesystem's own
timestamps every cycle and refuses to take part while it exceeds ``max_skew_seconds``
(half a buffer by default). Beyond the bound, the atomic claim still prevents a
state from running twice; what breaks is only the semaphore's promise that workers
never contend (counted in ``contended``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from martian_doves.clock import Clock, SystemClock
from martian_doves.config import Phase, SemaphoreOptions
from martian_doves.model import (
    INTERNAL_STATES,
    Claim,
    Failure,
    HistoryEntry,
    State,
    StatusReport,
)
from martian_doves.stores.base import SubmitResult, Successor
from martian_doves.stores.directory import fsops
from martian_doves.stores.directory.engine import PHASE_POINTS, LeaseEngine, open_folder
from martian_doves.stores.directory.inspection import FolderInspection, FolderMachineModel
from martian_doves.stores.directory.outage import rides_out_outages
from martian_doves.stores.directory.records import Registration
from martian_doves.stores.directory.watch import Watcher

log = logging.getLogger(__name__)

#: States a worker takes in its first cycle; afterwards as many as it works through in about
#: ``SHARE_CYCLES`` cycles at its measured rate, between ``SHARE_MIN`` and ``SHARE_MAX``.
SHARE_START = 256
SHARE_MIN = 16
SHARE_MAX = 20_000
#: How many cycles of work one assignment gives a worker: a little more than one, so its queue
#: lasts until the claims of the next cycle arrive.
SHARE_CYCLES = 1.25


def rendezvous_owner(state_name: str, workers: Sequence[str]) -> str | None:
    """The worker that owns ``state_name``: highest hash of (worker, state).

    Balanced (each worker gets about 1/N), deterministic, and independent of which
    other states a worker happened to list; when a worker leaves, only its own states
    move.
    """
    best: tuple[bytes, str] | None = None
    for worker in workers:
        score = hashlib.blake2b(f"{worker}\x00{state_name}".encode(), digest_size=8).digest()
        if best is None or score > best[0]:
            best = (score, worker)
    return None if best is None else best[1]


def available_workers(registrations: dict[str, float], cycle_start: float, cycle_seconds: float) -> list[str]:
    """Workers stamped during the cycle before ``cycle_start``, sorted."""
    return sorted(name for name, stamp in registrations.items()
                  if cycle_start - cycle_seconds <= stamp < cycle_start)


@dataclass(frozen=True)
class SkewReading:
    """One measurement of this host's clock against the shared filesystem's."""

    #: Filesystem time minus local time, seconds.
    skew_seconds: float
    #: Half the time the measurement took: the skew is known only to within this.
    uncertainty_seconds: float

    def within(self, limit_seconds: float) -> bool:
        return abs(self.skew_seconds) + self.uncertainty_seconds <= limit_seconds


def read_skew(local_time: Callable[[], float], filesystem_time: Callable[[], float]) -> SkewReading:
    """Measure skew: local time before and after asking the filesystem for its time."""
    before = local_time()
    remote = filesystem_time()
    after = local_time()
    return SkewReading(remote - (before + after) / 2, (after - before) / 2)


@rides_out_outages
class SemaphoreStore(FolderMachineModel, FolderInspection):
    """The temporal semaphore over the lease protocol's files. See the module docstring.

    Args:
        root: the store's folder (created if missing).
        options: the store's options and phases (the seed's if None).
        clock: this host's clock (phases are derived from it).
        filesystem_time: the shared filesystem's clock; by default read from a probe file.
        read_only: open it to be read: create, clean up and probe nothing (``status`` then
            reports no skew); a folder that holds no store is refused.

    Raises:
        ConfigError: ``root`` is unusable, or an option is out of range.
    """

    mode = "semaphore"
    #: Where it reads and writes, timed by ``doves run --phase-timings``.
    phase_points = PHASE_POINTS

    def __init__(self, root: str | os.PathLike[str], options: SemaphoreOptions | None = None,
                 clock: Clock | None = None, filesystem_time: Callable[[], float] | None = None, *,
                 read_only: bool = False) -> None:
        self.options = (options or SemaphoreOptions()).validate()
        self.clock = clock or SystemClock()
        self.phases = self.options.phases
        self.files = open_folder(root, self.options, read_only=read_only)
        self.description = self.files.root
        self._read_only = read_only
        # Only files copied into the root wake anything: hints are looked at once a cycle.
        self._watcher = Watcher() if read_only else Watcher(written=[self.files.root], own=[self.files.tmp.path])
        self.leases = LeaseEngine(self.files, self.options, self.clock, filesystem_time or self.files.filesystem_time,
                                  self._watcher, mode=self.mode, liveness_seconds=3 * self.phases.cycle_seconds,
                                  stamp_every_hint=True, read_only=read_only)
        self.admission = self.leases.admission
        self._lock = threading.RLock()
        #: Claims taken for this worker in a commitment phase, not yet handed out.
        self._queue: deque[Claim] = deque()
        self._assignment: list[str] = []
        self._assigned_cycle = -1
        self._claimed_cycle = -1
        self._stamped_cycle = -1
        self._worker: str | None = None
        #: Threads that have asked this store for work, and those whose last ask got none.
        self._claimers: set[int] = set()
        self._idle_claimers: set[int] = set()
        #: Whether the last skew reading was beyond the limit (not taking part).
        self.refusing = False
        self.last_skew: SkewReading | None = None
        #: Assigned states another worker had claimed first: 0 while the protocol holds.
        self.contended = 0
        #: How many of its own states this worker takes from one cycle's listing (see ``_next_share``).
        self.share = SHARE_START
        #: Its rate (claims handed out per second while it had a queue); None until measured.
        self.rate: float | None = None
        #: Claims handed out since the last assignment was claimed, and when (monotonic) that was.
        self._handed = 0
        self._claimed_at: float | None = None
        #: Whether a thread found nothing to do since then (the share was too small).
        self._ran_dry = False

    @property
    def lease_seconds(self) -> float:
        return self.options.lease_seconds

    # -- time ----------------------------------------------------------------------------

    def check_skew(self) -> bool:
        """Measure skew now; log when this worker stops or resumes taking part."""
        reading = read_skew(self.clock.time, self.leases.filesystem_time)
        self.last_skew = reading
        limit = self.options.skew_limit_seconds
        refusing = not reading.within(limit)
        if refusing and not self.refusing:
            log.error("clock skew %+.3f s (±%.3f) against the shared filesystem exceeds the %.3f s "
                      "the buffers absorb; not taking part until it is fixed (sync this host's clock)",
                      reading.skew_seconds, reading.uncertainty_seconds, limit,
                      extra={"action": "skew_refused", "skew_seconds": reading.skew_seconds})
        elif not refusing and self.refusing:
            log.warning("clock skew back to %+.3f s; taking part again", reading.skew_seconds,
                        extra={"action": "skew_ok", "skew_seconds": reading.skew_seconds})
        self.refusing = refusing
        return not refusing

    # -- registration --------------------------------------------------------------------

    def _registrations(self) -> dict[str, Registration]:
        """The registrations of semaphore-mode workers, by name."""
        return {found.name: found for found in self.files.registrations() if found.mode == self.mode}

    def register_worker(self, worker: str, states: Collection[str] | None = None) -> None:
        """Wait for the update phase (as the seed does), then register."""
        self._watcher.start_in_background()  # a worker's first claims need not wait for it
        self._worker = worker
        while True:
            now = self.clock.time()
            cycle, phase, _ = self.phases.at(now)
            if phase is Phase.UPDATE:
                break
            self.clock.sleep(max(0.001, self.phases.next_boundary(now) - now))
        self.leases.register(worker, states)
        with self._lock:
            self._stamp_registration(worker, cycle)

    def _stamp_registration(self, worker: str, cycle: int) -> None:
        self._stamped_cycle = cycle
        if not self.check_skew():
            self._stamp_unavailable(worker)
            return
        if not self._free_by_next_commitment(cycle):
            # Not available for the next cycle. Left unset, _stamped_cycle makes the
            # next call in this update phase look again: a thread may come free.
            self._stamped_cycle = -1
            self._stamp_unavailable(worker)
            return
        if not self.files.has_registration(worker):
            self.leases.register(worker)
        self.files.stamp_registration(worker, self.clock.time())

    def _free_by_next_commitment(self, cycle: int) -> bool:
        """Whether this worker can take a share in the next cycle: nothing queued and a thread free,
        or a queue it works off at its measured rate before the next cycle's claims (so it is never
        idle between two shares on a large backlog)."""
        if not self._queue:
            return not self._every_thread_busy()
        rate = self._current_rate()
        if rate is None:
            return False
        phases = self.phases
        next_commitment = phases.cycle_start(cycle + 1) + phases.assignment_seconds + phases.buffer_seconds
        return len(self._queue) / rate <= next_commitment - self.clock.time()

    def _current_rate(self) -> float | None:
        """Claims handed out per second: since the last share was claimed, else as last measured."""
        if self._claimed_at is not None and self._handed:
            elapsed = self.clock.monotonic() - self._claimed_at
            if elapsed > 0 and not self._ran_dry:
                return self._handed / elapsed
        return self.rate

    def _next_share(self) -> int:
        """How many of its own states this worker takes in this cycle (its queue lasts about
        ``SHARE_CYCLES`` cycles at its rate; doubled when a thread found nothing to do)."""
        if self._claimed_at is not None and self._handed:
            elapsed = self.clock.monotonic() - self._claimed_at
            if elapsed > 0:
                rate = self._handed / elapsed
                # A worker that ran dry measured its idle time too: its rate is at least this.
                self.rate = rate if not self._ran_dry else max(rate, self.rate or 0.0)
                wanted = int(self.rate * self.phases.cycle_seconds * SHARE_CYCLES)
                self.share = max(wanted, self.share * 2) if self._ran_dry else wanted
        self.share = max(SHARE_MIN, min(SHARE_MAX, self.share))
        return self.share

    def _every_thread_busy(self) -> bool:
        """Whether every thread that asks for work is inside a tick (none waits for work)."""
        return bool(self._claimers) and not self._idle_claimers

    def _stamp_unavailable(self, worker: str) -> None:
        """Keep this worker's registration out of the next cycle's assignment.

        For a worker that refuses (skew) or is busy. Its registration may carry a
        stamp that would make it available in the next cycle (creating it stamps the
        filesystem's time): its share would then wait unclaimed. Backdated two cycles
        (by the filesystem's clock, in case ours is off), it is older than any cycle's
        window, yet still listed as alive.
        """
        skew = self.last_skew.skew_seconds if self.last_skew is not None else 0.0
        self.files.stamp_registration(worker, self.clock.time() + skew - 2 * self.phases.cycle_seconds)

    def unregister_worker(self, worker: str) -> None:
        with self._lock:
            if self._worker == worker:
                self._worker = None  # a last heartbeat must not register it again
            while self._queue:
                claim = self._queue.popleft()
                self.leases.release(claim)
            self.leases.unregister(worker)

    # -- the cycle -----------------------------------------------------------------------

    def _on_phase(self, worker: str) -> None:
        """Do what the current phase asks of this worker, once per cycle."""
        if self._worker != worker:
            return  # not registered through this store (yet, or any more)
        now = self.clock.time()
        cycle, phase, _ = self.phases.at(now)
        if phase is Phase.UPDATE and self._stamped_cycle != cycle:
            # Timers and deadlines due by now become hints stamped before the next cycle: its
            # assignment lists them, on every worker alike.
            self.leases.machines.promote_due(now)
            self._stamp_registration(worker, cycle)
        elif phase in (Phase.ASSIGNMENT, Phase.COMMITMENT) and self._assigned_cycle != cycle:
            self._assigned_cycle = cycle
            # And those due since: a worker that lists before another promoted them leaves its
            # share of them to the next cycle (the claim is atomic either way).
            self.leases.machines.promote_due(self.phases.cycle_start(cycle))
            self._assignment = self._assign(worker, cycle) if self.check_skew() else []
        if phase is Phase.COMMITMENT and self._claimed_cycle != cycle and self._assigned_cycle == cycle:
            self._claimed_cycle = cycle
            if not self.refusing:
                self._queue.extend(self._claim_assignment(worker))

    def _assign(self, worker: str, cycle: int) -> list[str]:
        """This worker's share of the hints stamped before ``cycle`` began."""
        start = self.phases.cycle_start(cycle)
        registrations = self._registrations()
        workers = available_workers({name: found.seen_at for name, found in registrations.items()}, start,
                                    self.phases.cycle_seconds)
        if worker not in workers:
            return []
        machines = {name: registrations[name].machines for name in workers}
        mixed = any(found is not None for found in machines.values())
        share = self._next_share()
        mine: list[str] = []
        # A window of the listing, not all of it: a worker stops once it has its share, so a cycle
        # costs the same whatever the backlog (ownership is each state's own, so workers that stop
        # at different places still never share a state; the rest waits for later cycles).
        for name, stamp in fsops.stamped_entries(self.files.pending):
            if len(mine) >= share:
                break
            if stamp >= start:
                continue
            able = workers
            state = self.leases.state_name(name) if mixed else None
            if state is not None and state not in INTERNAL_STATES:
                # Only to a worker that has the state's machine; none: it waits for one.
                able = [w for w in workers if (found := machines[w]) is None or state in found]
            if rendezvous_owner(name, able) == worker:
                mine.append(name)
        return sorted(mine)

    def _claim_assignment(self, worker: str) -> list[Claim]:
        claims = []
        for name in self._assignment:
            if not self.files.has_hint(name):
                continue  # committed or claimed meanwhile, e.g. by a lease-mode worker
            claim = self.leases.claim_hint(name, worker)
            if claim is not None:
                claims.append(claim)
            elif not self.files.is_settled(name):
                self.contended += 1
        self._handed, self._claimed_at, self._ran_dry = 0, self.clock.monotonic(), False
        if claims:
            log.info("claimed %d state(s) in cycle %d", len(claims), self._claimed_cycle,
                     extra={"action": "assign", "count": len(claims)})
        self._assignment = []
        return claims

    def claim(self, worker: str, limit: int, states: Collection[str] | None = None) -> list[Claim]:
        with self._lock:
            # The calling thread is free now (it asks for work): that counts when the
            # update phase decides whether this worker is available.
            thread = threading.get_ident()
            self._claimers.add(thread)
            self._idle_claimers.add(thread)
            self._on_phase(worker)
            claims: list[Claim] = []
            wanted = None if states is None else frozenset(states)
            if not self.refusing:
                claims = [claim for claim in self.leases.takeovers(worker, limit) if self.leases.wants(claim, wanted)]
                self.admission.maintain(busy=bool(self._queue))
            while self._queue and len(claims) < limit:
                claim = self._queue.popleft()
                if self.leases.wants(claim, wanted):
                    claims.append(claim)
            if claims:
                self._idle_claimers.discard(thread)
                self._handed += len(claims)
            elif self._claimed_at is not None:
                self._ran_dry = True
            return claims

    def wait_for_work(self, timeout_seconds: float) -> None:
        if self._queue:
            return
        now = self.clock.time()
        self.clock.sleep(max(0.0, min(timeout_seconds, self.phases.next_boundary(now) - now + 0.001)))

    def heartbeat(self, worker: str, claims: Sequence[Claim]) -> list[Claim]:
        # Registrations change only in the update phase (see _on_phase): no stamp here.
        with self._lock:
            queued = list(self._queue)
        lost = self.leases.renew([*claims, *queued])
        with self._lock:
            if lost:
                gone = {claim.name for claim in lost}
                self._queue = deque(c for c in self._queue if c.name not in gone)
            self._on_phase(worker)
        return [claim for claim in lost if claim not in queued]

    # -- as in lease mode ------------------------------------------------------------------

    def submit(self, states: Sequence[State]) -> list[SubmitResult]:
        return self.leases.submit(states)

    def commit(self, claim: Claim, successor: Successor | None, *, keep: bool = False) -> Claim | None:
        return self.leases.commit(claim, successor, keep=keep)

    def retry_later(self, claim: Claim, delay_seconds: float, error: str, *, requested: bool = False) -> None:
        self.leases.retry_later(claim, delay_seconds, error, requested=requested)

    def release(self, claim: Claim) -> None:
        self.leases.release(claim)

    def fail(self, claim: Claim, failure: Failure) -> None:
        self.leases.fail(claim, failure)

    def history(self, name: str) -> list[HistoryEntry]:
        return self.leases.history(name)

    def machine_names(self, limit: int | None = None) -> list[str]:
        return self.leases.machine_names(limit)

    def reset(self, *, successors: bool) -> int:
        return self.leases.reset(successors=successors)

    def retry_failed(self, names: Sequence[str] | None = None) -> int:
        return self.leases.retry_failed(names)

    def is_finished(self, states: Collection[str] | None = None) -> bool:
        return not self._queue and self.leases.is_finished(states)

    def status(self) -> StatusReport:
        report = self.leases.status()
        cycle, phase, _ = self.phases.at(self.clock.time())
        details = {
            **report.details,
            "cycle": cycle,
            "phase": phase.value,
            "cycle_seconds": self.phases.cycle_seconds,
            "max_skew_seconds": self.options.skew_limit_seconds,
        }
        if not self._read_only:  # reading the filesystem's clock writes a probe file
            details["skew_seconds"] = round(read_skew(self.clock.time, self.leases.filesystem_time).skew_seconds, 4)
        return dataclasses.replace(report, details=details)

    def close(self) -> None:
        self._watcher.close()
        self.files.close()
