"""Directory store, lease mode (the default): leaderless atomic claims on a folder.

A worker walks ``pending/`` (what is pending, never the whole history) as a lazy
listing, a batch at a time, tries the due hints of each batch in its own random
order and claims each by one atomic rename (the protocol is in ``engine.py``); a
worker that loses a race jumps ahead in the listing, away from the one that won. It
wakes on new hints through inotify, or at the next due retry, or after a poll.
Files copied into the folder by hand are admitted by a root scan that runs on
start, on inotify events and every ``scan_seconds``.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence

from martian_doves.clock import Clock, SystemClock
from martian_doves.config import DirectoryOptions
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
from martian_doves.stores.directory.engine import NAME_CACHE_ENTRIES, PHASE_POINTS, LeaseEngine, open_folder
from martian_doves.stores.directory.inspection import FolderInspection, FolderMachineModel
from martian_doves.stores.directory.outage import rides_out_outages
from martian_doves.stores.directory.watch import Watcher

#: Longest a worker goes without looking for due timers (the timers of other workers included).
PROMOTE_SECONDS = 0.5
#: Hints taken from the walk through ``pending/`` at a time.
WALK_BATCH = 256
#: After a lost race for a hint, the walk jumps ahead by up to this many entries.
SKIP_ON_RACE = 1024


@rides_out_outages
class LeaseStore(FolderMachineModel, FolderInspection):
    """Directory store with lease-based claims. See the module docstring for the protocol.

    Args:
        root: the store's folder (created if missing).
        options: the store's options (defaults if None).
        clock: this host's clock.
        filesystem_time: the shared filesystem's clock; by default read from a probe file.
        read_only: open it to be read: create, clean up and probe nothing; a folder that
            holds no store is refused.

    Raises:
        ConfigError: ``root`` is unusable, or an option is out of range.
    """

    mode = "lease"
    #: Where it reads and writes, timed by ``doves run --phase-timings``.
    phase_points = PHASE_POINTS

    def __init__(self, root: str | os.PathLike[str], options: DirectoryOptions | None = None,
                 clock: Clock | None = None, filesystem_time: Callable[[], float] | None = None, *,
                 read_only: bool = False) -> None:
        self.options = (options or DirectoryOptions()).validate()
        self.clock = clock or SystemClock()
        self.files = open_folder(root, self.options, read_only=read_only)
        # The location only: a folder does not record its mode, and commands such as
        # submit open it in the default mode whatever mode its workers run in.
        self.description = self.files.root
        self._watcher = Watcher() if read_only else Watcher(arrivals=[self.files.pending.path],
                                                            written=[self.files.root], own=[self.files.tmp.path])
        self.leases = LeaseEngine(self.files, self.options, self.clock, filesystem_time or self.files.filesystem_time,
                                  self._watcher, mode=self.mode, liveness_seconds=self.options.lease_seconds,
                                  stamp_every_hint=False, read_only=read_only)
        self.admission = self.leases.admission
        #: Hints listed and not yet tried (a batch of the walk), in this worker's own (random) order.
        self._candidates: deque[str] = deque()
        #: The walk through ``pending/`` under way: what is left of its listing.
        self._walk: Iterator[str] | None = None
        self._walk_lock = threading.Lock()
        #: When the earliest hint claimed before it was due (and left in place) becomes due (wakes ``wait_for_work``).
        self._next_due: float | None = None
        #: When to look for due timers and deadlines again (``scheduled/``, ``waiting/``).
        self._next_promote = 0.0
        #: Hints this worker has met before (only their state files are read to filter claims).
        self._looked_at: set[str] = set()
        #: Whether the last claim found work (the root pass then goes on at a pace).
        self._busy = False

    @property
    def lease_seconds(self) -> float:
        return self.options.lease_seconds

    def submit(self, states: Sequence[State]) -> list[SubmitResult]:
        return self.leases.submit(states)

    # -- claiming ------------------------------------------------------------------------------

    def _refill(self) -> None:
        """Take the next batch of hints from the walk through ``pending/`` (a new walk if none is under way).

        The walk is a lazy listing of names: the first claims need not wait for a large
        ``pending/`` to be listed, and a worker never holds more of it than a batch. Nothing
        is looked at one by one: ``pending/`` holds what may run now, and a claim checks its
        hint's due time after taking it (``_still_due``).
        """
        with self._walk_lock:
            if self._walk is None:
                self._walk = fsops.entry_names(self.files.pending)
                self._next_due = None
            entries = list(itertools.islice(self._walk, WALK_BATCH))
            if len(entries) < WALK_BATCH:
                self._walk = None  # every hint was met: the next refill walks afresh
        # Each worker walks the hints in its own order so they rarely race for one.
        random.shuffle(entries)
        self._candidates.extend(entries)

    def _skip(self) -> None:
        """Lost a race for a hint: another worker walks the same stretch of the listing, so jump ahead."""
        with self._walk_lock:
            if self._walk is not None:
                for _ in zip(range(random.randrange(SKIP_ON_RACE)), self._walk, strict=False):
                    pass

    def claim(self, worker: str, limit: int, states: Collection[str] | None = None) -> list[Claim]:
        wanted = None if states is None else frozenset(states)
        leases = self.leases
        claims = [claim for claim in leases.takeovers(worker, limit) if leases.wants(claim, wanted)]
        self.admission.maintain(busy=self._busy)
        now = self.clock.time()
        if now >= self._next_promote:
            due = self.leases.machines.promote_due(now)
            self._next_promote = now + PROMOTE_SECONDS if due is None else min(due, now + PROMOTE_SECONDS)
        walked = False
        while len(claims) < limit:
            try:
                name = self._candidates.popleft()
            except IndexError:  # the batch is used up (perhaps by another thread)
                if walked and self._walk is None:
                    break  # one whole walk per call at most
                self._refill()
                walked = True
                continue
            if wanted is not None and self._foreign(name, wanted):
                continue  # another worker's machine: left for it, never claimed
            token = leases.take_hint(name)
            if token is None:
                self._skip()
                continue
            if not self._still_due(name, token, now):
                continue
            claim = leases.open_claim(name, token, worker)
            if claim is not None and leases.wants(claim, wanted):
                claims.append(claim)
        self._busy = bool(claims)
        return claims

    def _foreign(self, name: str, wanted: frozenset[str]) -> bool:
        """Whether ``name`` is known (from an earlier look) to be a state this worker has no machine for."""
        known = self.leases.state_name(name) if name in self._looked_at else None
        self._looked_at.add(name)
        if len(self._looked_at) > NAME_CACHE_ENTRIES:
            self._looked_at.clear()
        return known is not None and known not in wanted and known not in INTERNAL_STATES

    def _still_due(self, name: str, token: str, now: float) -> bool:
        """Whether the hint just claimed is due; if not, put it back untouched.

        Our candidate list may be older than the hint: since we listed it, another worker
        may have claimed the state and given it back with a retry delay. The hint's mtime
        (kept by rename) is checked after the rename, so the check cannot race. A hint due
        later written by an earlier version (``pending/`` now holds what may run) is then
        moved aside as a timer.
        """
        claim = self.files.claim_at(name, token)
        found = fsops.lstat_quiet(claim)
        if found is None:
            return False
        due = found.st_mtime
        if due <= now:
            return True
        fsops.link(claim, self.files.hint_at(name))  # same inode: contents and mtime kept
        fsops.unlink_quiet(claim)
        if not self.leases.machines.defer_hint(name, due):
            self._next_due = due if self._next_due is None else min(self._next_due, due)
        return False

    def wait_for_work(self, timeout_seconds: float) -> None:
        if self._candidates or self._walk is not None:
            return
        now = self.clock.time()
        if self._next_due is not None:
            timeout_seconds = min(timeout_seconds, max(0.0, self._next_due - now))
        timeout_seconds = min(timeout_seconds, max(0.0, self._next_promote - now))
        self._watcher.wait(timeout_seconds)

    # -- leases ----------------------------------------------------------------------------------

    def register_worker(self, worker: str, states: Collection[str] | None = None) -> None:
        self._watcher.start_in_background()  # a worker's first claims need not wait for it
        self.leases.register(worker, states)

    def unregister_worker(self, worker: str) -> None:
        self.leases.unregister(worker)

    def heartbeat(self, worker: str, claims: Sequence[Claim]) -> list[Claim]:
        self.leases.touch(worker)
        return self.leases.renew(claims)

    # -- outcomes --------------------------------------------------------------------------------

    def commit(self, claim: Claim, successor: Successor | None, *, keep: bool = False) -> Claim | None:
        return self.leases.commit(claim, successor, keep=keep)

    def retry_later(self, claim: Claim, delay_seconds: float, error: str, *, requested: bool = False) -> None:
        self.leases.retry_later(claim, delay_seconds, error, requested=requested)
        # Parked as a timer: look for it when it is due, not only at the next round.
        self._next_promote = min(self._next_promote, self.clock.time() + delay_seconds)

    def release(self, claim: Claim) -> None:
        self.leases.release(claim)

    def fail(self, claim: Claim, failure: Failure) -> None:
        self.leases.fail(claim, failure)

    # -- reporting and maintenance -------------------------------------------------------------

    def status(self) -> StatusReport:
        return self.leases.status()

    def history(self, name: str) -> list[HistoryEntry]:
        return self.leases.history(name)

    def machine_names(self, limit: int | None = None) -> list[str]:
        return self.leases.machine_names(limit)

    def is_finished(self, states: Collection[str] | None = None) -> bool:
        return self.leases.is_finished(states)

    def reset(self, *, successors: bool) -> int:
        kept = self.leases.reset(successors=successors)
        self._candidates.clear()
        with self._walk_lock:
            self._walk = None
        return kept

    def retry_failed(self, names: Sequence[str] | None = None) -> int:
        return self.leases.retry_failed(names)

    def close(self) -> None:
        self._watcher.close()
        self.files.close()
