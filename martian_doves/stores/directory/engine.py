"""The lease protocol on a folder: what both directory modes do the same way.

The folders and files are described in ``layout.py``. The protocol, one atomic
operation per step:

- claim: ``rename(pending/x, in_progress/x@T)``: one worker wins, the others get ENOENT.
- heartbeat: ``utime(in_progress/x@T)``; ENOENT means the claim was taken over.
- takeover: ``rename(in_progress/x@T, in_progress/x@T2)`` once ctime is older than
  the lease; the old owner's next heartbeat or commit then fails.
- commit: link the successor under its deterministic name (never overwriting; if the
  name already holds *our* successor an earlier attempt wrote it), then
  ``link(in_progress/x@T, done/x)`` - the fencing point: it fails if T was taken over.

Which hints a worker claims, and when, is the mode's: ``lease.py`` claims whatever is
due, ``semaphore.py`` what the cycle assigns it. Files copied into the folder by hand
are admitted by a root scan (``admission.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import stat
from collections.abc import Callable, Collection, Sequence

from martian_doves import codec
from martian_doves.clock import Clock
from martian_doves.config import DirectoryOptions
from martian_doves.errors import ClaimLost, CodecError, ConfigError, NameTaken, UnsafeName, workers_alive_error
from martian_doves.model import (
    INTERNAL_STATES,
    JOIN_STATE,
    Claim,
    Failure,
    HistoryEntry,
    State,
    StatusReport,
    WorkerInfo,
    with_error,
)
from martian_doves.stores.base import SubmitResult, Successor
from martian_doves.stores.directory import fsops, views
from martian_doves.stores.directory.admission import Admission
from martian_doves.stores.directory.folders import Entry
from martian_doves.stores.directory.layout import Layout
from martian_doves.stores.directory.machines import Machines
from martian_doves.stores.directory.outage import FolderOutages
from martian_doves.stores.directory.outage import describe as describe_outage
from martian_doves.stores.directory.records import ClaimRecord, new_token, split_claim
from martian_doves.stores.directory.watch import Watcher

log = logging.getLogger(__name__)

#: How long a hint whose state file is missing may be waiting for that file (its writer is
#: between making the hint and publishing the file); an older one lost its file by hand.
UNPUBLISHED_GRACE_SECONDS = 5.0

#: Most state names a worker keeps of what it read or met (a few MB at most): more would make a
#: long-running worker's memory grow with the store, fewer costs only a file read again.
NAME_CACHE_ENTRIES = 10_000

#: Where a directory store reads a claimed state and writes a successor, for ``phases``.
PHASE_POINTS = (("leases.files", "read_state", "read"), ("leases", "write_successor", "write"))


def open_folder(root: str | os.PathLike[str], options: DirectoryOptions, *, read_only: bool = False) -> Layout:
    """The layout of the store at ``root``, its folders created if missing.

    Args:
        read_only: create nothing; the folder must hold a store (state files or store folders).

    Raises:
        ConfigError: ``root`` is a file, cannot be created, or a store folder in it is
            a link, not a folder, or not the store's; with ``read_only``, ``root`` holds
            no store.
    """
    path = os.path.abspath(os.fspath(root))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"store {path} exists and is not a directory")
    try:
        files = Layout(path, create=not read_only, durable=options.durable, max_state_bytes=options.max_state_bytes,
                       max_join_bytes=options.max_join_bytes)
    except OSError as e:
        raise ConfigError(f"cannot use {path} as a store: {e.strerror}") from e
    if read_only and not files.is_store():
        files.close()
        raise ConfigError(f"not a store (no state files and no store folders): {path}")
    return files


class LeaseEngine:
    """The lease protocol on a folder: everything both directory modes do the same way.

    Submitting, claiming a given hint, taking over expired claims, heartbeats, commits,
    retries, failures, registrations, reports and maintenance. Which hints a worker
    claims when is the mode's business (``LeaseStore``, ``SemaphoreStore``).

    Args:
        files: the store's layout.
        options: the store's options.
        clock: this host's clock.
        filesystem_time: the shared filesystem's clock (which stamps claims).
        watcher: reports files written in the root, for admission.
        mode: the mode written into registrations and reported by ``status``.
        liveness_seconds: how recently a worker of this mode must have been stamped to
            count as alive (written into its registration).
        stamp_every_hint: stamp every hint with this host's clock (the semaphore's
            cycles list hints by their stamps); otherwise a plain hint gets the
            filesystem's own timestamp and only a delayed one is stamped explicitly.
        read_only: the store was opened to be read: no cleanup of stale temporary files.
    """

    def __init__(self, files: Layout, options: DirectoryOptions, clock: Clock, filesystem_time: Callable[[], float],
                 watcher: Watcher, *, mode: str, liveness_seconds: float, stamp_every_hint: bool,
                 read_only: bool = False) -> None:
        self.files = files
        self.options = options
        self.clock = clock
        #: The shared filesystem's clock, read by touching a probe file.
        self.filesystem_time = filesystem_time
        self.mode = mode
        self.liveness_seconds = liveness_seconds
        self._stamp_every_hint = stamp_every_hint
        self.admission = Admission(files, options, clock, filesystem_time, watcher, self.create_hint)
        #: Timers, waits, events and children.
        self.machines = Machines(files, clock, self.create_hint)
        #: Reads the folder for people (status, history, find ...), keeping what never changes.
        self.reader = views.Reader(files)
        #: This process's outages of the store (a full disk ...), logged once each.
        self.outages = FolderOutages(files)
        self._next_takeover = 0.0
        #: The states each worker registered through this handle has machines for.
        self._registered_states: dict[str, frozenset[str]] = {}
        #: State names of state files read for claims' filters (files never change; bounded).
        self._state_names: dict[str, str] = {}
        if not read_only:
            self.remove_stale_tmp()

    # -- submitting ------------------------------------------------------------------------

    def create_hint(self, name: str, *, attempts: int = 0, errors: Sequence[str] = (),
                    delay_seconds: float = 0.0, retries: int = 0) -> bool:
        """Mark ``name`` runnable after ``delay_seconds``; False if a hint already exists.

        The hint's mtime is the earliest time it may be claimed; it carries the state's
        failed ``attempts`` and their ``errors`` to the next claim.
        """
        if not self._stamp_every_hint and not attempts and not retries and delay_seconds <= 0:
            return self.files.write_hint(name)
        return self.files.write_hint(name, not_before=self.clock.time() + delay_seconds, attempts=attempts,
                                     errors=errors, retries=retries)

    def submit(self, states: Sequence[State]) -> list[SubmitResult]:
        files = self.files
        results = []
        for state in states:
            try:
                codec.check_state_file_name(state.name)
                data = codec.encode(State(state.name, state.state, state.payload), self.options.max_state_bytes)
            except CodecError as e:
                results.append(SubmitResult(state.name, False, e.message))
                continue
            if files.has_failed_state(state.name) or not files.write_new(files.state_at(state.name), data):
                results.append(SubmitResult(state.name, False, NameTaken.__doc__))
                continue
            self.create_hint(state.name)
            results.append(SubmitResult(state.name, True))
        return results

    # -- claiming ----------------------------------------------------------------------------

    def take_hint(self, name: str) -> str | None:
        """Claim ``name`` by renaming its hint; the claim's token, or None if another worker got there first.

        The claim is not usable before ``open_claim``.
        """
        token = new_token()
        try:
            fsops.rename(self.files.hint_at(name), self.files.claim_at(name, token))
        except FileNotFoundError:
            return None
        return token

    def claim_hint(self, name: str, worker: str) -> Claim | None:
        """Claim ``name`` for ``worker`` if its hint is still there (whatever its due time)."""
        token = self.take_hint(name)
        return None if token is None else self.open_claim(name, token, worker)

    def open_claim(self, name: str, token: str, worker: str, *, taken_over: bool = False,
                   lost_because: str = "stopped renewing its lease") -> Claim | None:
        """Load the claimed state; settle stale claims and quarantine unreadable files.

        Args:
            taken_over: the claim was taken from another worker: one failed attempt is
                counted, and its error says the worker ``lost_because``.
        """
        files = self.files
        if not self._is_ours(name, token):
            return None
        if files.is_settled(name):
            files.remove_claim(name, token)  # a stale hint: the state is already settled
            return None
        found = files.read_claim(name, token)
        # The claim keeps its hint's mtime until it is rewritten below: when the state was due.
        due_at = None if taken_over else files.claim_stamp(name, token)
        attempts = found.attempts + (1 if taken_over else 0)
        errors = with_error(found.errors, f"worker {found.worker} {lost_because}") if taken_over \
            else found.errors
        try:
            state = files.read_state(name)
        except FileNotFoundError:
            stamp = files.claim_stamp(name, token)
            if stamp is not None and self.clock.time() - stamp < UNPUBLISHED_GRACE_SECONDS:
                # A successor's hint is made a moment before its file appears (write_successor,
                # so no admission scan ever finds the file unmarked): a worker woken by the hint
                # can be that moment early. Give the hint back; it runs once the file is there.
                self._return_hint(name, token)
                return None
            # A hint without a file for longer: the file was removed by hand. Nothing to run.
            files.remove_claim(name, token)
            return None
        except CodecError as e:
            self.admission.quarantine(name, e.code, e.message)
            files.remove_claim(name, token)
            return None
        except OSError:
            self._return_hint(name, token)  # an I/O error: see below
            raise
        try:
            files.rewrite_claim(name, token, ClaimRecord(worker, attempts, errors, token, self.clock.time(),
                                                         found.retries))
        except OSError:
            # Not run yet, and the record unchanged (a full disk): give the state back as it
            # was (a rename needs no space) for whoever claims it once the store can be written.
            self._return_hint(name, token)
            raise
        return Claim(state, token, worker, attempts, errors, found.retries, due_at)

    def _is_ours(self, name: str, token: str) -> bool:
        """Whether the claim just taken is a plain file named as a state: what the store writes.

        Whatever else was planted in ``pending/`` or ``in_progress/`` (a link, FIFO, device,
        folder, or a name such as ``notes.txt`` or ``done``) is removed if it can be, else
        left, and logged; it is never opened, written or followed.
        """
        claim = self.files.claim_at(name, token)
        found = fsops.lstat_quiet(claim)
        if found is None:
            return False
        if codec.is_state_file_name(name) and stat.S_ISREG(found.st_mode):
            return True
        why = "not a state file's name" if not codec.is_state_file_name(name) else "not a plain file"
        if fsops.remove_planted(claim):
            log.warning("removed %r from pending/: %s", name, why, extra={"action": "quarantine", "code": "not_a_hint"})
        else:
            log.warning("ignoring %r from pending/: %s, and a folder that is not empty (left in in_progress/, "
                        "never looked into)", name, why, extra={"action": "quarantine", "code": "not_a_hint"})
        return False

    def _return_hint(self, name: str, token: str) -> None:
        """Turn the claim ``NAME@TOKEN`` back into the hint it was made of, as it is (best effort:
        on a read-only store it stays a claim, and is taken over when its lease runs out)."""
        claim = self.files.claim_at(name, token)
        with contextlib.suppress(OSError):
            if not fsops.move_noreplace(claim, self.files.hint_at(name)):
                fsops.unlink_quiet(claim)  # a hint is there already

    def takeovers(self, worker: str, limit: int) -> list[Claim]:
        """Take over the claims whose lease expired (at most every quarter lease); ``limit`` of them for ``worker``.

        Expired claims beyond ``limit`` are given back as hints for anyone.
        """
        mono = self.clock.monotonic()
        if mono < self._next_takeover:
            return []
        self._next_takeover = mono + max(0.05, self.options.lease_seconds / 4)
        # Claim ctimes are stamped by the filesystem's clock, so their age is judged by that
        # clock too: a host whose own clock runs ahead never takes a live claim early.
        now = self.filesystem_time()
        expired = []
        for entry, info in fsops.stat_entries(self.files.in_progress):
            if now - info.st_ctime <= self.options.lease_seconds:
                continue
            if stat.S_ISREG(info.st_mode):
                expired.append(entry)
            elif fsops.remove_planted(self.files.claim_entry_at(entry)):
                # Only plain files are claims: a link, FIFO or device planted here goes, unopened
                # (a planted folder with entries stays, and is never looked into).
                log.warning("removed %r from in_progress/: not a plain file", entry,
                            extra={"action": "quarantine", "code": "not_a_claim"})
        claims: list[Claim] = []
        for expired_entry in expired:
            name, old_token = split_claim(expired_entry)
            if not old_token:
                # A seed-era flag (in_progress/x.state) from an interrupted run: drop it,
                # the state is admitted again by the root scan.
                fsops.unlink_quiet(self.files.claim_entry_at(expired_entry))
                self.admission.forget(name)
                continue
            token = new_token()
            try:
                fsops.rename(self.files.claim_entry_at(expired_entry), self.files.claim_at(name, token))
            except FileNotFoundError:
                continue
            log.warning("took over %s from a worker whose lease expired", name, extra={"action": "takeover"})
            if len(claims) >= limit:
                self._give_back(name, token, fenced=False)
                continue
            claim = self.open_claim(name, token, worker, taken_over=True)
            if claim is not None:
                claims.append(claim)
        self.remove_stale_tmp()
        self.machines.sweep_joins()
        return claims

    def remove_stale_tmp(self) -> None:
        self.files.remove_tmp_before(self.clock.time() - max(60.0, 2 * self.options.lease_seconds))

    # -- workers and leases ------------------------------------------------------------------

    def register(self, worker: str, states: Collection[str] | None = None) -> None:
        """Write ``worker``'s registration afresh and prune those of long-dead workers.

        Args:
            states: the state names it has machines for (None: all), published with it.
        """
        codec.check_name(worker)
        if states is not None:
            self._registered_states[worker] = frozenset(states)
        # Its own liveness window goes with it: whoever reads the registration (status,
        # reset) may have opened the store with other options than this worker's.
        self.files.write_registration(worker, mode=self.mode, started_at=self.clock.time(),
                                      liveness_seconds=self.liveness_seconds,
                                      machines=self._registered_states.get(worker))
        self.files.remove_registrations_before(self.clock.time() - 10 * self.options.lease_seconds)
        # A worker that died between committing and waking a waiting machine left it parked.
        self.machines.sweep_mailboxes()
        self.machines.sweep_joins()

    def unregister(self, worker: str) -> None:
        self.files.remove_registration(worker)

    def worker_exited(self, worker: str, reason: str) -> int:
        """``worker`` is dead (its supervisor saw it exit): say so, and give back every claim it holds.

        Each claim is taken over as after an expired lease (renamed to a new token, so the
        dead worker's token is fenced out), then given back as a hint, one failed attempt
        counted; see ``SupervisedStore.worker_exited``.
        """
        self.files.mark_registration_ended(worker, reason)
        given = 0
        for name, (entry, _) in views.Markers.read(self.files).claims.items():
            if self.files.read_claim_entry(entry).worker != worker:
                continue
            token = new_token()
            try:
                fsops.rename(self.files.claim_entry_at(entry), self.files.claim_at(name, token))
            except FileNotFoundError:
                continue  # committed, given back or taken over meanwhile
            claim = self.open_claim(name, token, worker, taken_over=True, lost_because=reason)
            if claim is not None:
                self.release(claim)
                given += 1
        return given

    def touch(self, worker: str) -> None:
        """Stamp ``worker``'s registration (its heartbeat); register it again if it was removed."""
        if not self.files.stamp_registration(worker):
            self.register(worker)

    def renew(self, claims: Sequence[Claim]) -> list[Claim]:
        """Renew the leases of ``claims``; the claims that were taken over."""
        return [claim for claim in claims if not self.files.touch_claim(claim.name, claim.token)]

    # -- outcomes ------------------------------------------------------------------------------

    def write_successor(self, parent: Claim, successor: Successor, keep: bool) -> tuple[str, Claim | None, bool]:
        """Write the successor under its deterministic name, exactly once across attempts.

        Its hint (or, with ``keep``, this worker's claim on it) is created *before* the
        name appears, so no admission scan on any host, whatever its clock says about
        the file's age, ever finds the new file without a marker and admits it twice.

        Returns:
            The successor's name, the chained claim on it (or None), and whether this call
            created it (False: an earlier attempt of the same tick had, so it may be
            pending, claimed or settled already).
        """
        files = self.files
        successor = Successor(*successor)  # a plain (state, payload) pair reads as one
        # Too large, it would only be quarantined unread: fail the tick that made it instead.
        limit, join = codec.successor_limit(parent.state, self.options.max_state_bytes, self.options.max_join_bytes)
        data = codec.encode(self._successor_state(parent, f"successor of {parent.name}", successor),
                            limit, not_before=self._timer_due(successor), join=join)
        tmp = files.write_tmp(data)
        try:
            for name in codec.successor_names(parent.name):
                # A successor already processed and failed lives in failed/, not the root.
                owner = files.parent_in(name, failed=True)
                if owner is None:
                    owner = files.parent_in(name)
                if owner is None:
                    marker, child = self._mark_successor(parent, name, successor, keep)
                    if files.publish_state(tmp, name):
                        return name, child, True
                    # Taken between the look and the move (a submit of that very name):
                    # withdraw the marker and look at the newcomer.
                    if marker is None:
                        self.machines.unpark(name, self._successor_state(parent, name, successor),
                                             self._timer_due(successor))
                    else:
                        fsops.unlink_quiet(marker)
                    owner = files.parent_in(name)
                if owner == parent.name:
                    return name, None, False  # an earlier attempt of this tick already wrote it
                if owner == "" and self._holds(name, data, successor):
                    # A file that names no parent holds exactly what this tick produced: the
                    # successor the seed wrote before its run was interrupted. It is this tick's:
                    # adopted, not branched around, and the done marker will say so (history).
                    record = files.read_claim(parent.name, parent.token)
                    files.rewrite_claim(parent.name, parent.token, dataclasses.replace(record, adopted=name))
                    return name, None, False
                log.warning("successor name %s is taken by another machine; trying the next branch",
                            name, extra={"action": "branch"})
        finally:
            fsops.unlink_quiet(tmp)
        raise UnsafeName(f"no free successor name for {parent.name}")

    def _successor_state(self, parent: Claim, name: str, successor: Successor) -> State:
        """The successor's state: of the parent's machine (and child machine), waiting if it waits."""
        return State(name, successor.state, successor.payload, parent.name, self.machines.machine_of(parent.state),
                     successor.wait, parent.state.origin)

    def _timer_due(self, successor: Successor) -> float | None:
        """When a timer's successor is due; None for a successor runnable at once (or a waiting entry)."""
        due = successor.not_before
        return due if due is not None and successor.wait is None and due > self.clock.time() else None

    def _holds(self, name: str, data: bytes, successor: Successor) -> bool:
        """Whether the state file ``name`` holds the state and payload encoded in ``data``,
        whatever its formatting (key order, spacing), and ``successor`` is a plain one (the
        seed knew no timers or waits)."""
        if successor.wait is not None or self._timer_due(successor) is not None:
            return False
        try:
            found = self.files.read_state(name)
        except (OSError, CodecError):
            return False
        ours = codec.decode(data, name)
        return (found.state, found.payload) == (ours.state, ours.payload)

    def _mark_successor(self, parent: Claim, name: str, successor: Successor,
                        keep: bool) -> tuple[Entry | None, Claim | None]:
        """Create the hint for a new successor, its timer or wait, or this worker's claim on it; return
        that entry (None: a parked marker)."""
        due = self._timer_due(successor)
        if successor.wait is not None or due is not None:
            self.machines.park(name, self._successor_state(parent, name, successor), due)
            return None, None
        if not keep:
            self.create_hint(name)
            return self.files.hint_at(name), None
        token = new_token()
        claim = self.files.create_claim(name, token, ClaimRecord(parent.worker, 0, (), token, self.clock.time()))
        return claim, Claim(self._successor_state(parent, name, successor), token, parent.worker)

    def commit(self, claim: Claim, successor: Successor | None, *, keep: bool = False) -> Claim | None:
        successor = None if successor is None else Successor(*successor)  # a plain pair reads as one
        files = self.files
        if not files.has_claim(claim.name, claim.token):
            raise ClaimLost(f"claim on {claim.name} was taken over")
        origin = claim.state.origin
        child: Claim | None = None
        child_name: str | None = None
        if successor is not None and successor.wait is not None and successor.wait.is_join:
            self.machines.create_children(claim.name, successor.children, self.options.max_state_bytes)
        if successor is None and origin is not None:
            self.machines.record_end(origin)  # before the end is committed: a count never short
        if successor is not None:
            child_name, child, created = self.write_successor(claim, successor, keep)
            if not created and not files.has_marker(child_name):
                # Written by an earlier run of this tick (a crash, a reset) whose marker is
                # gone: it may have been claimed meanwhile, so only a missing marker is added.
                self._mark_again(claim, child_name, successor)
        try:
            # The fencing point: the claim file moves to done/ only if it is still ours.
            committed = fsops.move_noreplace(files.claim_at(claim.name, claim.token), files.done_at(claim.name))
        except FileNotFoundError:
            if child is not None:  # hand the successor to whoever took the parent over
                self._give_back(child.name, child.token, fenced=False)
            raise ClaimLost(f"claim on {claim.name} was taken over before commit") from None
        if not committed:
            files.remove_claim(claim.name, claim.token)  # committed already by an attempt we lost track of
        files.sync(files.done)
        self._after_commit(claim, successor, child_name)
        return child

    def _mark_again(self, parent: Claim, name: str, successor: Successor) -> None:
        due = self._timer_due(successor)
        if successor.wait is not None or due is not None:
            self.machines.park(name, self._successor_state(parent, name, successor), due)
        else:
            self.create_hint(name)

    def _after_commit(self, claim: Claim, successor: Successor | None, written: str | None) -> None:
        """Wake-ups a commit owes: a wait whose event is in, a join whose children ended, a parent's join."""
        if claim.state.state == JOIN_STATE:
            self.machines.joined(claim.state)
        if successor is None:
            if claim.state.origin is not None:
                self.machines.wake_join(claim.state.origin.parent)
            return
        if successor.wait is not None and written is not None:
            self.machines.wake_if_ready(written, self._successor_state(claim, written, successor))

    def _give_back(self, name: str, token: str, *, fenced: bool, attempts: int = 0, errors: Sequence[str] = (),
                   delay_seconds: float = 0.0, retries: int = 0) -> None:
        """Turn a claim back into a hint (due after ``delay_seconds``).

        Raises:
            ClaimLost: ``fenced`` and the claim was taken over (nothing is changed).
        """
        if fenced and not self.files.has_claim(name, token):
            raise ClaimLost(f"claim on {name} was taken over")
        if delay_seconds > 0:
            # Due later: a timer until then (``promote_due`` wakes it), so pending/ holds only
            # what may run now and a backlog is counted without a look at each hint.
            self.machines.park_retry(name, self.clock.time() + delay_seconds, attempts=attempts, errors=errors,
                                     retries=retries)
        else:
            self.create_hint(name, attempts=attempts, errors=errors, retries=retries)
        self.files.remove_claim(name, token)

    def retry_later(self, claim: Claim, delay_seconds: float, error: str, *, requested: bool = False) -> None:
        if requested:
            self._give_back(claim.name, claim.token, fenced=True, attempts=claim.attempts, errors=claim.errors,
                            delay_seconds=delay_seconds, retries=claim.retries + 1)
            return
        self._give_back(claim.name, claim.token, fenced=True, attempts=claim.attempts + 1,
                        errors=with_error(claim.errors, error), delay_seconds=delay_seconds, retries=claim.retries)

    def release(self, claim: Claim) -> None:
        if claim.state.wait is None:
            self._give_back(claim.name, claim.token, fenced=True, attempts=claim.attempts, errors=claim.errors,
                            retries=claim.retries)
            return
        # A waiting entry given back waits again; parked first, then looked at, so an event or
        # a child's end that arrived meanwhile wakes it.
        if not self.files.has_claim(claim.name, claim.token):
            raise ClaimLost(f"claim on {claim.name} was taken over")
        self.machines.park(claim.name, claim.state, None, attempts=claim.attempts, errors=claim.errors,
                           retries=claim.retries)
        self.files.remove_claim(claim.name, claim.token)
        self.machines.wake_if_ready(claim.name, claim.state)

    def fail(self, claim: Claim, failure: Failure) -> None:
        files = self.files
        if not files.has_claim(claim.name, claim.token):
            raise ClaimLost(f"claim on {claim.name} was taken over")
        origin = claim.state.origin
        if origin is not None:
            self.machines.record_end(origin)  # before the end is committed: a count never short
        claimed_at = files.read_claim(claim.name, claim.token).claimed_at  # for the tick's duration
        files.write_reason(claim.name, {"name": claim.name, "worker": claim.worker, "claimed_at": claimed_at,
                                        "failed_at": self.clock.time(), **failure.as_dict()})
        try:
            fsops.rename(files.state_at(claim.name), files.failed_state_at(claim.name))
        except FileNotFoundError:
            pass
        except OSError as e:
            # Something planted in failed/ under its name (a folder): the state stays in the
            # root, failed all the same (its reason says so).
            log.warning("%s failed but stays in the folder: failed/%s is in the way (%s)", claim.name, claim.name,
                        e.strerror, extra={"action": "fail", "state_name": claim.name})
        files.remove_claim(claim.name, claim.token)
        if origin is not None:
            self.machines.wake_join(origin.parent)
        if claim.state.state == JOIN_STATE:
            self.machines.joined(claim.state)

    # -- reporting ---------------------------------------------------------------------------

    def workers(self) -> list[WorkerInfo]:
        return views.workers(self.files, self.clock.time(), self.liveness_seconds)

    def status(self) -> StatusReport:
        now = self.clock.time()
        report = self.reader.status(now, self.mode, self.liveness_seconds)
        outage = describe_outage(self.files, now)
        if outage is None:
            return report
        return dataclasses.replace(report, details={**report.details, "outage": outage})

    def history(self, name: str) -> list[HistoryEntry]:
        return self.reader.history(name, self.clock.time())

    def machine_names(self, limit: int | None = None) -> list[str]:
        return views.machine_names(self.files, limit)

    def is_finished(self, states: Collection[str] | None = None) -> bool:
        """Nothing pending, due later, claimed or waiting for admission (files copied in count).

        Args:
            states: only states of these names (and the worker's own steps) count.
        """
        if not self._looks_finished(states):
            return False  # work is left whatever the root holds: no pass over it (a million files) now
        # Files moved or copied in on another host (NFS) raise no wake-up here and wait for the slow
        # scan: before saying nothing is left, look at the root once more.
        self.admission.scan_root()
        return self._looks_finished(states)

    def _looks_finished(self, states: Collection[str] | None) -> bool:
        if self.admission.waiting:
            return False
        if states is None:
            return not self.files.has_work() and not self.machines.has_timers()
        if self.machines.has_timers(deadlines_only=True):
            return False  # a wait's deadline is the worker's own step, whatever machines it has
        wanted = frozenset(states) | INTERNAL_STATES
        files = self.files
        claimed = (split_claim(entry)[0] for entry in fsops.listdir_quiet(files.in_progress))
        names = itertools.chain(fsops.listdir_quiet(files.pending), claimed, self.machines.timer_names())
        return not any(self.state_name(name) in wanted for name in names)

    def state_name(self, name: str) -> str | None:
        """The state name in the state file ``name``; None if it cannot be read."""
        found = self._state_names.get(name)
        if found is None:
            state = self.machines.read_anywhere(name)
            if state is None:
                return None
            if len(self._state_names) >= NAME_CACHE_ENTRIES:
                self._state_names.clear()
            found = self._state_names[name] = state.state
        return found

    def wants(self, claim: Claim, states: frozenset[str] | None) -> bool:
        """Whether a worker that runs ``states`` (None: all) may keep ``claim``; if not, it is given back."""
        if states is None or claim.state.state in states or claim.state.state in INTERNAL_STATES:
            return True
        self._give_back(claim.name, claim.token, fenced=False, attempts=claim.attempts, errors=claim.errors,
                        retries=claim.retries)
        return False

    # -- maintenance ---------------------------------------------------------------------------

    def reset(self, *, successors: bool) -> int:
        live = [w.name for w in self.workers() if w.alive]
        if live:
            raise workers_alive_error(live)
        files = self.files
        files.forget_outcomes()
        names = files.state_names()
        # Decided before anything is deleted: a successor's parent must still be there.
        doomed = {name for name in names if self._is_successor(name)} if successors else set()
        kept = 0
        for name in names:
            if name in doomed:
                fsops.unlink_quiet(files.state_at(name))
                continue
            self.create_hint(name)
            kept += 1
        self.admission.forget_all()
        return kept

    def _is_successor(self, name: str) -> bool:
        """Whether ``name`` was written by a tick: it names its parent, its name derives from
        the parent's, and the parent is here.

        Never guessed from the name alone: ``x.state-1`` submitted as a machine of its
        own is a root, and reset must not delete what a user submitted. (The seed's own
        successors carried no parent field: reset keeps them, as roots.) Nor from the
        ``parent`` field alone: a file copied in with any parent is still a root.
        """
        parent = self.files.parent_of(name)
        if not parent or not codec.is_successor_name(name, parent):  # None (no such file) or "" (a root)
            return False
        return self.files.has_state(parent)

    def retry_failed(self, names: Sequence[str] | None = None) -> int:
        files = self.files
        count = 0
        for name in names if names is not None else files.failed_names():
            if not files.has_reason(name):
                continue
            if files.has_failed_state(name):
                fsops.move_noreplace(files.failed_state_at(name), files.state_at(name))
            files.remove_reason(name)
            self.create_hint(name)
            self.admission.forget(name)
            count += 1
        return count
