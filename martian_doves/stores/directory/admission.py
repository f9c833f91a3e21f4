"""How state files that arrive in a store's root without ``doves submit`` become runnable.

Files copied in by hand (the seed's ``docker cp``), moved in, or orphaned by a
crashed commit have no hint. A root scan (on start, on inotify events, every
``scan_seconds``) admits each once it is old enough that its writer is done (a file
inotify saw moved in is complete: it is admitted at once), and quarantines entries
that can never run.

Nothing here grows with the store's history. A scan is a pass over a lazy listing of
the root, a few thousand entries per call, so claiming goes on while a large root is
listed. A process's first pass looks at every file; later passes look only at files
whose ctime (set by the filesystem when a file is created, renamed or linked in) is
recent enough that an earlier pass may have missed them or deferred them:
``RECHECK_SLACK_SECONDS`` beyond the lease (a stuck admission ticket is taken back
after a lease) before the previous pass began. Exactly one worker admits a file: the one
that hard-links it into ``.doves-admitted/``. Both directory modes use it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Collection, Iterable, Iterator

from martian_doves import codec
from martian_doves.clock import Clock
from martian_doves.config import DirectoryOptions
from martian_doves.errors import StoreError, UnsafeName
from martian_doves.stores.directory import fsops
from martian_doves.stores.directory.layout import QUARANTINED_PREFIX, STORE_FOLDERS, Layout
from martian_doves.stores.directory.watch import Watcher

log = logging.getLogger(__name__)

#: Root entries one call of ``maintain`` looks at while a pass is under way: a few
#: times the work of a batch of claims, no more.
ENTRIES_PER_CALL = 500
#: How much older than the start of the previous pass (plus a lease) a file may look and
#: still be looked at again: shared filesystems show new names late (NFS caches listings).
RECHECK_SLACK_SECONDS = 60.0
#: A pass starts at most this many times its own duration after the previous one ended,
#: so a huge root costs a bounded share of a worker's time.
PASS_SPACING = 10.0
#: While a worker has work, the next part of a pass waits this many times as long as the
#: part before took: a process's first pass, over a root of a million state files, costs a
#: busy worker a tenth of its time instead of stalling its claims for seconds.
PART_SPACING = 10.0


def _safe_failed_name(name: str) -> str:
    try:
        codec.check_name(name)
        return name
    except UnsafeName:
        cleaned = "".join(ch if ch.isprintable() and ch not in "/\\" else "_" for ch in name).lstrip(".")
        # Derived from the name, not random: two workers racing to quarantine the same
        # entry then write the same reason (exclusively), not one each.
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        return f"{QUARANTINED_PREFIX}{digest}-{cleaned[:80]}"


class Admission:
    """Admission and quarantine of what arrives in a directory store's root.

    A worker's threads share one store, so everything here runs one at a time.

    Args:
        files: the store's layout.
        options: ``admission_grace_seconds``, ``scan_seconds`` and ``lease_seconds`` (how
            old an admitter's ticket must be before it counts as abandoned).
        clock: this host's clock (scan timing, reasons' times).
        filesystem_time: the shared filesystem's clock, by which a file's age is judged.
        watcher: reports files written in the root (``files.root`` among its ``written``).
        mark_runnable: creates the hint for an admitted state the way the store's mode
            stamps hints; False if one exists already.
    """

    def __init__(self, files: Layout, options: DirectoryOptions, clock: Clock,
                 filesystem_time: Callable[[], float], watcher: Watcher,
                 mark_runnable: Callable[[str], bool]) -> None:
        self.files = files
        self.options = options
        self.clock = clock
        self._filesystem_time = filesystem_time
        self._watcher = watcher
        self._mark_runnable = mark_runnable
        self._lock = threading.RLock()
        #: Root entries seen but too young to admit yet (arrived within the grace).
        self._deferred: set[str] = set()
        #: Root entries whose marker was removed: looked at again by the next call.
        self._recheck: set[str] = set()
        #: The pass under way: what is left of its listing, and when it began (filesystem time).
        self._pass: Iterator[tuple[str, os.stat_result]] | None = None
        self._pass_began = 0.0
        self._pass_began_mono = 0.0
        #: Files with a ctime before this were looked at by a complete pass (None: none yet).
        self._checked_before: float | None = None
        self._next_root_scan = 0.0
        self._next_deferred_check = 0.0
        #: When (monotonic) a busy worker goes on with the pass under way.
        self._next_part = 0.0

    # -- what this process knows ---------------------------------------------------------

    def forget(self, name: str) -> None:
        """Look at ``name`` again soon (its marker was removed)."""
        with self._lock:
            self._recheck.add(name)

    def forget_all(self) -> None:
        """Look at every file again (markers were removed wholesale)."""
        with self._lock:
            self._checked_before = None

    @property
    def waiting(self) -> bool:
        """Whether some file seen in the root is too young to be admitted yet (it is work)."""
        return bool(self._deferred)

    @property
    def scan_due(self) -> bool:
        """Whether the periodic root scan is due."""
        return self._pass is not None or self.clock.monotonic() >= self._next_root_scan

    # -- admitting ---------------------------------------------------------------------------

    def _admit(self, names: Iterable[str], complete: Collection[str] = ()) -> int:
        """Create hints for root files that have none (copied in by hand, or orphaned).

        Args:
            complete: names known to be whole already (moved in): admitted however young.
        """
        files = self.files
        now = self._filesystem_time()  # a file's age by the clock that stamped it
        admitted = 0
        for name in names:
            if name.startswith(".") or not codec.is_state_file_name(name) or files.is_done(name) \
                    or files.has_hint(name):
                # Settled or runnable meanwhile (most of a large root is, and two looks answer
                # for it): no longer waiting for admission, or is_finished never is.
                self._deferred.discard(name)
                continue
            info = fsops.lstat_quiet(files.state_at(name))
            if info is None:
                self._deferred.discard(name)
                continue
            young = name not in complete and 0 <= now - info.st_mtime < self.options.admission_grace_seconds
            if young and not files.has_marker(name):
                self._deferred.add(name)  # its writer may still be busy, or mid-commit
                continue
            self._deferred.discard(name)
            if not young and not files.has_marker(name):
                try:
                    codec.check_name(name)
                except UnsafeName as e:
                    self.quarantine(name, e.code, e.message)
                    continue
                if self._awaits_its_parent(name):
                    self._deferred.add(name)
                    continue
                if self._take_admission(name, now) and self._mark_runnable(name):
                    admitted += 1
            elif not young and files.has_failed_state(name):
                # A failed state's file is in failed/, so this is a new copy (a fixed file?):
                # it never runs by itself, and silence would leave the user guessing.
                log.warning("%s is in the folder again, but a state of that name failed: `doves retry STORE %s` "
                            "runs this new file", name, name, extra={"action": "admit", "state_name": name})
        if admitted:
            log.info("admitted %d state file(s) found in %s", admitted, files.root, extra={"action": "admit"})
        return admitted

    def _awaits_its_parent(self, name: str) -> bool:
        """Whether ``name`` is named as the successor, or a child, of a state here that has not run yet.

        The seed wrote a successor before it marked the parent done: in a folder its
        interrupted run left, the parent runs again, and its commit adopts the file if it
        holds what the tick produced (or branches around it if not; the file is admitted
        as a root of its own once the parent is settled). Admitted now, it would run as a
        second root of the same lineage. A spawner's commit writes each child's file before
        its hint: admitted in between, the child would run twice.
        """
        parent = codec.first_parent_name(name) or codec.spawner_name(name)
        return parent is not None and self.files.has_state(parent) and not self.files.is_settled(parent)

    def _take_admission(self, name: str, now: float) -> bool:
        """Become the one worker that admits ``name``: hard-link it into ``.doves-admitted/``.

        Checking for markers and then creating a hint is not enough on its own: between
        the two, another worker may admit the file and a third claim it, and the hint
        would make it run twice. The link succeeds for one worker only. A ticket whose
        admitter died before creating the hint (old, and still no marker) is taken back.
        """
        ticket = self.files.ticket_at(name)
        for _ in range(2):
            try:
                if fsops.link(self.files.state_at(name), ticket):
                    return True
                found = fsops.lstat_quiet(ticket)
                if found is None:
                    continue
                age = now - found.st_ctime
                if age > self.options.lease_seconds and not self.files.has_marker(name):
                    fsops.unlink_quiet(ticket)
                    continue
                return False
            except FileNotFoundError:
                return False  # the file went away meanwhile
            except OSError:
                return True  # cannot be linked (a directory): its claim will quarantine it
        return False

    def scan_root(self) -> None:
        """Finish the pass under way (or make a whole one) now; the next periodic one is due later.

        Raises:
            StoreError: the store or one of its folders was moved, removed or replaced since it
                was opened (its worker stops; a new one opens the store as it now is, or says why not).
        """
        with self._lock:
            if self._pass is None:
                self._begin_pass()
            self._continue_pass(None)

    def _begin_pass(self) -> None:
        displaced = self.files.displaced()
        if displaced:
            raise StoreError(f"{', '.join(displaced)} in {self.files.root} moved, removed or replaced "
                             "while the store was open")
        self._pass = fsops.stat_entries(self.files.top)
        self._pass_began = self._filesystem_time()
        self._pass_began_mono = self.clock.monotonic()

    def _continue_pass(self, budget: int | None) -> None:
        """Look at the next ``budget`` entries of the pass under way (all if None); end it if none are left."""
        assert self._pass is not None
        cutoff = None if self._checked_before is None else \
            self._checked_before - self.options.lease_seconds - RECHECK_SLACK_SECONDS
        batch = []
        for name, info in self._pass:
            if cutoff is None or info.st_ctime >= cutoff:
                batch.append(name)
            if budget is not None:
                budget -= 1
                if budget <= 0:
                    self._admit(batch)
                    return
        self._admit(batch)
        # Every file listed was looked at: those older than the pass's start need not be again.
        self._pass = None
        self._checked_before = self._pass_began
        mono = self.clock.monotonic()
        self._next_root_scan = mono + max(self.options.scan_seconds, PASS_SPACING * (mono - self._pass_began_mono))

    def maintain(self, *, busy: bool = False) -> None:
        """Admit what the watcher saw arrive, and go on with the periodic pass over the root.

        Args:
            busy: the worker has work (its last claim found some): the pass goes on at a pace
                that leaves it most of its time (``PART_SPACING``); an idle worker goes on at once.
        """
        with self._lock:
            mono = self.clock.monotonic()
            if self._watcher.take_events(self.files.root):
                arrived = self._watcher.names(self.files.root)
                self._admit(arrived, [name for name, moved in arrived.items() if moved])
            if self._recheck:
                recheck, self._recheck = self._recheck, set()
                self._admit(recheck)
            if self._pass is None and mono >= self._next_root_scan:
                self._begin_pass()
            if self._pass is not None and (not busy or mono >= self._next_part):
                self._continue_pass(ENTRIES_PER_CALL)
                after = self.clock.monotonic()
                self._next_part = after + PART_SPACING * (after - mono)
            elif self._deferred and mono >= self._next_deferred_check:
                # Young files are looked at again only once they may have come of age.
                self._next_deferred_check = mono + max(0.05, self.options.admission_grace_seconds / 2)
                self._admit(list(self._deferred))

    # -- quarantine ------------------------------------------------------------------------

    def quarantine(self, name: str, code: str, message: str) -> None:
        """Move an unusable root entry into failed/ with a reason; never read it again.

        Only an entry named as a state file is moved (whatever it is: a link, FIFO or
        folder moves as itself, within the store); any other is only never read.
        """
        if name in STORE_FOLDERS or not codec.is_state_file_name(name):
            # Not the store's kind of entry (a hint named like a store folder, notes.txt):
            # whatever the root holds under that name is not ours to move.
            fsops.unlink_quiet(self.files.hint_at(name))
            log.warning("ignored %r: %s", name, message, extra={"action": "quarantine", "code": code})
            return
        failed_name = _safe_failed_name(name)
        self.files.write_reason(failed_name, {
            "name": name, "code": code, "message": message, "traceback": None,
            "attempts": 0, "errors": [], "failed_at": self.clock.time(),
        })
        # Never over a failed state of that name (a file copied in again after it failed).
        try:
            fsops.move_noreplace(self.files.state_at(name), self.files.failed_state_at(failed_name))
        except FileNotFoundError:
            pass
        fsops.unlink_quiet(self.files.hint_at(name))
        log.warning("quarantined %r: %s", name, message, extra={"action": "quarantine", "code": code})
