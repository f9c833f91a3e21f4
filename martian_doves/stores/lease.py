"""Directory store, lease mode (the default): leaderless atomic claims on a folder.

Layout (all plain folders, readable with ``ls``)::

    STORE/x.state, x.state-1 ...   state files, immutable once written (the lineage)
    STORE/pending/x.state          a hint that x.state may run; mtime = not before
    STORE/in_progress/x.state@T    a claim with fencing token T; ctime = last heartbeat
    STORE/done/x.state             committed (who ran it inside; ctime = when)
    STORE/failed/x.state           a failed state, next to x.state.reason.json
    STORE/workers/NAME             a live worker; mtime = last heartbeat

The protocol, one atomic operation per step:

- claim: ``rename(pending/x, in_progress/x@T)``: one worker wins, the others get ENOENT.
- heartbeat: ``utime(in_progress/x@T)``; ENOENT means the claim was taken over.
- takeover: ``rename(in_progress/x@T, in_progress/x@T2)`` once ctime is older than
  the lease; the old owner's next heartbeat or commit then fails.
- commit: link the successor under its deterministic name (never overwriting; if the
  name already holds *our* successor an earlier attempt wrote it), then
  ``link(in_progress/x@T, done/x)`` - the fencing point: it fails if T was taken over.

Finding work lists ``pending/`` only (what is pending), never the whole history;
files copied into the folder by hand are admitted by a root scan that runs on start,
on inotify events and every ``scan_seconds``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import socket
import threading
from collections import deque
from collections.abc import Callable, Sequence

from martian_doves import codec
from martian_doves.clock import Clock, SystemClock
from martian_doves.config import DirectoryOptions
from martian_doves.errors import (
    ClaimLost,
    CodecError,
    ConfigError,
    NameTaken,
    UnsafeName,
    workers_alive_error,
)
from martian_doves.model import (
    Claim,
    Failure,
    HistoryEntry,
    JSONDict,
    State,
    StatusReport,
    WorkerInfo,
)
from martian_doves.stores import dirview, fsops
from martian_doves.stores.admission import RootAdmission
from martian_doves.stores.base import SubmitResult, Successor
from martian_doves.stores.fsops import REASON_SUFFIX, TOKEN_SEP
from martian_doves.stores.watch import Watcher

log = logging.getLogger(__name__)



def _read_claim_info(path: str) -> tuple[str, int, tuple[str, ...]]:
    """(worker, attempts, errors) from a hint or claim file; defaults for what is unreadable."""
    info = fsops.read_json_object(path) or {}
    attempts, errors = info.get("attempts", 0), info.get("errors", [])
    return (str(info.get("worker", "?")),
            attempts if isinstance(attempts, int) and not isinstance(attempts, bool) and attempts >= 0 else 0,
            tuple(str(e) for e in errors) if isinstance(errors, list) else ())


def _claim_path(layout: fsops.Layout, name: str, token: str) -> str:
    return os.path.join(layout.in_progress, f"{name}{TOKEN_SEP}{token}")


class LeaseStore(RootAdmission):
    """Directory store with lease-based claims. See the module docstring for the protocol."""

    mode = "lease"

    def __init__(self, root: str | os.PathLike[str], options: DirectoryOptions | None = None,
                 clock: Clock | None = None, filesystem_time: Callable[[], float] | None = None) -> None:
        self.options = (options or DirectoryOptions()).validate()
        self.clock = clock or SystemClock()
        #: The shared filesystem's clock (which stamps claims), read by touching a probe file.
        self._filesystem_time = filesystem_time or self._probe_filesystem_time
        self.layout = fsops.Layout(os.path.abspath(os.fspath(root)))
        if os.path.exists(self.layout.root) and not os.path.isdir(self.layout.root):
            raise ConfigError(f"store {self.layout.root} exists and is not a directory")
        try:
            self.layout.create()
        except OSError as e:
            raise ConfigError(f"cannot use {self.layout.root} as a store: {e.strerror}") from e
        # The location only: a folder does not record its mode, and commands such as
        # submit open it in the default mode whatever mode its workers run in.
        self.description = str(self.layout.root)
        self._candidates: deque[str] = deque()
        #: A worker's threads share one store: admission (its sets, the watcher) runs one at a time.
        self._admission_lock = threading.RLock()
        #: Root entries already admitted or quarantined by this process.
        self._known: set[str] = set()
        #: Root entries seen but too young to admit yet.
        self._deferred: set[str] = set()
        self._next_root_scan = 0.0
        self._next_deferred_check = 0.0
        self._next_takeover = 0.0
        self._next_due: float | None = None
        self._watcher = Watcher([self.layout.pending, self.layout.root])
        self._remove_stale_tmp()

    # -- submitting and admitting -------------------------------------------------------

    def submit(self, states: Sequence[State]) -> list[SubmitResult]:
        results = []
        for state in states:
            try:
                codec.check_state_file_name(state.name)
                data = codec.encode(State(state.name, state.state, state.payload), self.options.max_state_bytes)
            except CodecError as e:
                results.append(SubmitResult(state.name, False, e.message))
                continue
            if os.path.lexists(os.path.join(self.layout.failed, state.name)) or not fsops.write_new(
                self.layout, self._state_path(state.name), data, durable=self.options.durable
            ):
                results.append(SubmitResult(state.name, False, NameTaken.__doc__))
                continue
            self._create_hint(state.name)
            self._known.add(state.name)
            results.append(SubmitResult(state.name, True))
        return results

    def _create_hint(self, name: str, data: bytes = b"", delay_seconds: float = 0.0) -> bool:
        """Mark ``name`` runnable after ``delay_seconds``; False if a hint already exists.

        The hint's mtime is the earliest time it may be claimed. A plain hint gets the
        filesystem's own timestamp; only a delayed one is stamped explicitly.
        """
        if not data and delay_seconds <= 0:
            return fsops.create_empty(self._hint_path(name))
        return fsops.write_new(self.layout, self._hint_path(name), data, durable=self.options.durable,
                               mtime=self.clock.time() + delay_seconds)

    # -- claiming ---------------------------------------------------------------------------

    def _eligible(self, mtime: float, now: float) -> bool:
        """Whether a hint with this mtime may be claimed now (overridden by semaphore mode)."""
        return mtime <= now

    def _refill(self, now: float) -> None:
        entries = []
        self._next_due = None
        for name, mtime in fsops.stamped_entries(self.layout.pending):
            if self._eligible(mtime, now):
                entries.append(name)
            elif self._next_due is None or mtime < self._next_due:
                self._next_due = mtime
        # Each worker walks the hints in its own order so they rarely race for one.
        random.shuffle(entries)
        self._candidates.extend(entries)

    def claim(self, worker: str, limit: int) -> list[Claim]:
        claims = self._takeovers(worker, limit)
        self._maintain()
        now = self.clock.time()
        if not self._candidates:
            self._refill(now)
        while self._candidates and len(claims) < limit:
            claim = self._claim_hint(self._candidates.popleft(), worker, now)
            if claim is not None:
                claims.append(claim)
        return claims

    def _claim_hint(self, name: str, worker: str, now: float | None = None) -> Claim | None:
        """Claim ``name`` by renaming its hint; with ``now``, only if the hint is due by then."""
        token = secrets.token_hex(8)
        claim_path = _claim_path(self.layout, name, token)
        try:
            os.rename(self._hint_path(name), claim_path)
        except FileNotFoundError:
            return None  # another worker got there first
        if now is not None and not self._still_due(name, claim_path, now):
            return None
        return self._open_claim(name, token, claim_path, worker)

    def _still_due(self, name: str, claim_path: str, now: float) -> bool:
        """Whether the hint just claimed is due; if not, put it back untouched.

        Our candidate list may be older than the hint: since we listed it, another worker
        may have claimed the state and given it back with a retry delay. The hint's mtime
        (kept by rename) is checked after the rename, so the check cannot race.
        """
        try:
            due = os.lstat(claim_path).st_mtime
        except FileNotFoundError:
            return False
        if self._eligible(due, now):
            return True
        try:
            os.link(claim_path, self._hint_path(name))  # same inode: contents and mtime kept
        except FileExistsError:
            pass
        fsops.unlink_quiet(claim_path)
        self._next_due = due if self._next_due is None else min(self._next_due, due)
        return False

    def _open_claim(self, name: str, token: str, claim_path: str, worker: str,
                    taken_over: bool = False) -> Claim | None:
        """Load the claimed state; settle stale claims and quarantine unreadable files."""
        if os.path.lexists(self._done_path(name)) or os.path.lexists(self._reason_path(name)):
            fsops.unlink_quiet(claim_path)  # a stale hint: the state is already settled
            return None
        info = _read_claim_info(claim_path)
        attempts = info[1] + (1 if taken_over else 0)
        errors = info[2] + ((f"worker {info[0]} stopped renewing its lease",) if taken_over else ())
        try:
            state = codec.decode(fsops.read_regular(self._state_path(name), self.options.max_state_bytes), name)
        except FileNotFoundError:
            # A hint without a file: the file was removed by hand. Nothing to run.
            fsops.unlink_quiet(claim_path)
            return None
        except CodecError as e:
            self._quarantine(name, e.code, e.message)
            fsops.unlink_quiet(claim_path)
            return None
        self._write_claim_info(claim_path, worker, token, attempts, errors)
        return Claim(state, token, worker, attempts, errors)

    def _write_claim_info(self, claim_path: str, worker: str, token: str, attempts: int,
                          errors: tuple[str, ...]) -> None:
        # Written in place: the claim file is ours, and a taker rewrites its own copy.
        try:
            with open(claim_path, "w") as handle:
                json.dump({"worker": worker, "token": token, "attempts": attempts,
                           "errors": list(errors), "claimed_at": self.clock.time()}, handle)
        except FileNotFoundError:
            pass

    def _probe_filesystem_time(self) -> float:
        # The filesystem (the NFS server, for a shared volume) stamps the probe with its
        # own clock; reading the stamp back tells us that clock.
        path = os.path.join(self.layout.tmp, f"clock-probe-{socket.gethostname()}-{os.getpid()}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
        os.utime(path)
        return os.stat(path).st_mtime

    def _takeovers(self, worker: str, limit: int) -> list[Claim]:
        mono = self.clock.monotonic()
        if mono < self._next_takeover:
            return []
        self._next_takeover = mono + max(0.05, self.options.lease_seconds / 4)
        # Claim ctimes are stamped by the filesystem's clock, so their age is judged by that
        # clock too: a host whose own clock runs ahead never takes a live claim early.
        now = self._filesystem_time()
        claims: list[Claim] = []
        try:
            with os.scandir(self.layout.in_progress) as listing:
                expired = []
                for entry in listing:
                    try:
                        changed = entry.stat(follow_symlinks=False).st_ctime
                    except FileNotFoundError:
                        continue
                    if now - changed > self.options.lease_seconds:
                        expired.append(entry.name)
        except FileNotFoundError:
            return []
        for expired_entry in expired:
            name, old_token = fsops.split_claim(expired_entry)
            if not old_token:
                # A seed-era flag (in_progress/x.state) from an interrupted run: drop it,
                # the state is admitted again by the root scan.
                fsops.unlink_quiet(os.path.join(self.layout.in_progress, expired_entry))
                self._known.discard(name)
                continue
            token = secrets.token_hex(8)
            claim_path = _claim_path(self.layout, name, token)
            try:
                os.rename(os.path.join(self.layout.in_progress, expired_entry), claim_path)
            except FileNotFoundError:
                continue
            log.warning("took over %s from a worker whose lease expired", name, extra={"action": "takeover"})
            if len(claims) >= limit:
                self._give_back(name, claim_path, None, 0.0, None)
                continue
            claim = self._open_claim(name, token, claim_path, worker, taken_over=True)
            if claim is not None:
                claims.append(claim)
        self._remove_stale_tmp()
        return claims

    def _remove_stale_tmp(self) -> None:
        fsops.remove_older_than(self.layout.tmp, self.clock.time() - max(60.0, 2 * self.options.lease_seconds))

    def wait_for_work(self, timeout_seconds: float) -> None:
        if self._candidates:
            return
        if self._next_due is not None:
            timeout_seconds = min(timeout_seconds, max(0.0, self._next_due - self.clock.time()))
        self._watcher.wait(timeout_seconds)

    # -- leases --------------------------------------------------------------------------

    def _worker_path(self, worker: str) -> str:
        return os.path.join(self.layout.workers, worker)

    def register_worker(self, worker: str) -> None:
        codec.check_name(worker)
        # Its own liveness window goes with it: whoever reads the registration (status,
        # reset) may have opened the store with other options than this worker's.
        info = {"host": socket.gethostname(), "pid": os.getpid(), "mode": self.mode,
                "started_at": self.clock.time(), "liveness_seconds": self._liveness_seconds()}
        path = self._worker_path(worker)
        fsops.unlink_quiet(path)
        fsops.write_new(self.layout, path, json.dumps(info).encode(), durable=False)
        self._prune_dead_workers()

    def _prune_dead_workers(self) -> None:
        fsops.remove_older_than(self.layout.workers, self.clock.time() - 10 * self.options.lease_seconds)

    def unregister_worker(self, worker: str) -> None:
        fsops.unlink_quiet(self._worker_path(worker))

    def _touch_worker(self, worker: str) -> None:
        try:
            os.utime(self._worker_path(worker))
        except FileNotFoundError:
            self.register_worker(worker)

    def heartbeat(self, worker: str, claims: Sequence[Claim]) -> list[Claim]:
        self._touch_worker(worker)
        lost = []
        for claim in claims:
            try:
                os.utime(_claim_path(self.layout, claim.name, claim.token))
            except FileNotFoundError:
                lost.append(claim)
        return lost

    # -- outcomes --------------------------------------------------------------------------

    def _write_successor(self, parent: Claim, successor: Successor, keep: bool) -> tuple[str, Claim | None, bool]:
        """Write the successor under its deterministic name, exactly once across attempts.

        Its hint (or, with ``keep``, this worker's claim on it) is created *before* the
        name appears, so no admission scan on any host, whatever its clock says about
        the file's age, ever finds the new file without a marker and admits it twice.

        Returns:
            The successor's name, the chained claim on it (or None), and whether this call
            created it (False: an earlier attempt of the same tick had, so it may be
            pending, claimed or settled already).
        """
        # Too large, it would only be quarantined unread: fail the tick that made it instead.
        data = codec.encode(State(f"successor of {parent.name}", successor[0], successor[1], parent=parent.name),
                            self.options.max_state_bytes)
        tmp = fsops.write_tmp(self.layout, data, durable=self.options.durable)
        try:
            for name in codec.successor_names(parent.name):
                # A successor already processed and failed lives in failed/, not the root.
                owner = self._parent_in(self.layout.failed, name)
                if owner is None:
                    owner = self._parent_in(self.layout.root, name)
                if owner is None:
                    marker, child = self._mark_successor(parent, name, successor, keep)
                    if fsops.move_noreplace(tmp, self._state_path(name)):
                        if self.options.durable:
                            fsops.fsync_dir(self.layout.root)
                        return name, child, True
                    # Taken between the look and the move (a submit of that very name):
                    # withdraw the marker and look at the newcomer.
                    fsops.unlink_quiet(marker)
                    owner = self._parent_in(self.layout.root, name)
                if owner == parent.name:
                    return name, None, False  # an earlier attempt of this tick already wrote it
                log.warning("successor name %s is taken by another machine; trying the next branch",
                            name, extra={"action": "branch"})
        finally:
            fsops.unlink_quiet(tmp)
        raise UnsafeName(f"no free successor name for {parent.name}")

    def _mark_successor(self, parent: Claim, name: str, successor: Successor, keep: bool) -> tuple[str, Claim | None]:
        """Create the hint for a new successor, or this worker's claim on it; return its path."""
        if not keep:
            self._create_hint(name)
            return self._hint_path(name), None
        token = secrets.token_hex(8)
        path = _claim_path(self.layout, name, token)
        info = {"worker": parent.worker, "token": token, "attempts": 0, "errors": [], "claimed_at": self.clock.time()}
        fsops.create_with(path, json.dumps(info).encode())
        return path, Claim(State(name, successor[0], successor[1], parent.name), token, parent.worker)

    def _parent_in(self, folder: str, name: str) -> str | None:
        """The parent recorded in ``folder/name``: '' for a root or unreadable file, None if absent."""
        try:
            raw = fsops.read_regular(os.path.join(folder, name), self.options.max_state_bytes)
            return codec.decode(raw, name).parent or ""
        except FileNotFoundError:
            return None
        except CodecError:
            return ""

    def _parent_of(self, name: str) -> str | None:
        """The parent recorded in the state file ``name`` wherever it is; None if none exists."""
        owner = self._parent_in(self.layout.root, name)
        return owner if owner is not None else self._parent_in(self.layout.failed, name)

    def commit(self, claim: Claim, successor: Successor | None, *, keep: bool = False) -> Claim | None:
        claim_path = _claim_path(self.layout, claim.name, claim.token)
        if not os.path.lexists(claim_path):
            raise ClaimLost(f"claim on {claim.name} was taken over")
        child: Claim | None = None
        if successor is not None:
            child_name, child, created = self._write_successor(claim, successor, keep)
            self._known.add(child_name)  # ours: the root scan need not look at it
            if not created and not self._marker_exists(child_name):
                # Written by an earlier run of this tick (a crash, a reset) whose marker is
                # gone: it may have been claimed meanwhile, so only a missing hint is added.
                self._create_hint(child_name)
        try:
            # The fencing point: the claim file moves to done/ only if it is still ours.
            committed = fsops.move_noreplace(claim_path, self._done_path(claim.name))
        except FileNotFoundError:
            if child is not None:  # hand the successor to whoever took the parent over
                self._give_back(child.name, _claim_path(self.layout, child.name, child.token), None, 0.0, None)
            raise ClaimLost(f"claim on {claim.name} was taken over before commit") from None
        if not committed:
            fsops.unlink_quiet(claim_path)  # committed already by an attempt we lost track of
        if self.options.durable:
            fsops.fsync_dir(self.layout.done)
        return child

    def _give_back(self, name: str, claim_path: str, attempts_info: JSONDict | None, delay_seconds: float,
                   claim: Claim | None) -> None:
        """Turn a claim back into a hint (due after ``delay_seconds``); fenced by the claim."""
        if claim is not None and not os.path.lexists(claim_path):
            raise ClaimLost(f"claim on {name} was taken over")
        self._create_hint(name, json.dumps(attempts_info).encode() if attempts_info else b"", delay_seconds)
        fsops.unlink_quiet(claim_path)

    def retry_later(self, claim: Claim, delay_seconds: float, error: str) -> None:
        info = {"attempts": claim.attempts + 1, "errors": [*claim.errors, error]}
        self._give_back(claim.name, _claim_path(self.layout, claim.name, claim.token), info,
                        delay_seconds, claim)

    def release(self, claim: Claim) -> None:
        info = {"attempts": claim.attempts, "errors": list(claim.errors)} if claim.attempts else None
        self._give_back(claim.name, _claim_path(self.layout, claim.name, claim.token), info, 0.0, claim)

    def fail(self, claim: Claim, failure: Failure) -> None:
        claim_path = _claim_path(self.layout, claim.name, claim.token)
        if not os.path.lexists(claim_path):
            raise ClaimLost(f"claim on {claim.name} was taken over")
        self._write_reason(claim.name, {"name": claim.name, "worker": claim.worker,
                                        "failed_at": self.clock.time(), **failure.as_dict()})
        try:
            os.rename(self._state_path(claim.name), os.path.join(self.layout.failed, claim.name))
        except FileNotFoundError:
            pass
        fsops.unlink_quiet(claim_path)

    @property
    def lease_seconds(self) -> float:
        return self.options.lease_seconds

    # -- reporting -------------------------------------------------------------------------

    def _liveness_seconds(self) -> float:
        """How recently a worker must have been seen to count as alive in ``status``."""
        return self.options.lease_seconds

    def _reason(self, name: str) -> JSONDict | None:
        return fsops.read_json_object(self._reason_path(name), 1 << 22)

    def _workers(self) -> list[WorkerInfo]:
        return dirview.workers(self)

    def status(self) -> StatusReport:
        return dirview.status(self)

    def history(self, name: str) -> list[HistoryEntry]:
        return dirview.history(self, name)

    def is_finished(self) -> bool:
        if self.clock.monotonic() >= self._next_root_scan:
            self._scan_root()
        elif self._looks_finished():
            # Files moved into the root (mv, rsync) raise no wake-up and wait for the slow
            # scan: before saying nothing is left, look at the root once more.
            self._scan_root()
        return self._looks_finished()

    def _looks_finished(self) -> bool:
        if self._deferred:
            return False
        for folder in (self.layout.pending, self.layout.in_progress):
            with os.scandir(folder) as listing:
                if next(listing, None) is not None:
                    return False
        return True

    # -- maintenance -----------------------------------------------------------------------

    def reset(self, *, successors: bool) -> int:
        live = [w.name for w in self._workers() if w.alive]
        if live:
            raise workers_alive_error(live)
        for folder in (self.layout.in_progress, self.layout.done, self.layout.pending, self.layout.workers,
                       self.layout.admitted):
            for entry in fsops.listdir_quiet(folder):
                fsops.unlink_quiet(os.path.join(folder, entry))
        for entry in fsops.listdir_quiet(self.layout.failed):
            path = os.path.join(self.layout.failed, entry)
            if entry.endswith(REASON_SUFFIX):
                fsops.unlink_quiet(path)
            elif not os.path.lexists(self._state_path(entry)):
                os.rename(path, self._state_path(entry))
        names = [n for n in fsops.listdir_quiet(self.layout.root) if codec.is_state_file_name(n)]
        # Decided before anything is deleted: a successor's parent must still be there.
        doomed = {name for name in names if self._is_successor(name)} if successors else set()
        kept = 0
        for name in names:
            if name in doomed:
                fsops.unlink_quiet(self._state_path(name))
                continue
            self._create_hint(name)
            kept += 1
        self._known.clear()
        self._candidates.clear()
        return kept

    def _is_successor(self, name: str) -> bool:
        """Whether ``name`` was written by a tick: it names its parent, its name derives from
        the parent's, and the parent is here.

        Never guessed from the name alone: ``x.state-1`` submitted as a machine of its
        own is a root, and reset must not delete what a user submitted. (The seed's own
        successors carried no parent field: reset keeps them, as roots.) Nor from the
        ``parent`` field alone: a file copied in with any parent is still a root.
        """
        parent = self._parent_of(name)
        if not parent or not codec.is_successor_name(name, parent):  # None (no such file) or "" (a root)
            return False
        return os.path.lexists(self._state_path(parent))

    def retry_failed(self, names: Sequence[str] | None = None) -> int:
        chosen = names if names is not None else [
            entry[: -len(REASON_SUFFIX)] for entry in fsops.listdir_quiet(self.layout.failed)
            if entry.endswith(REASON_SUFFIX)
        ]
        count = 0
        for name in chosen:
            if not os.path.lexists(self._reason_path(name)):
                continue
            failed_path = os.path.join(self.layout.failed, name)
            if os.path.lexists(failed_path) and not os.path.lexists(self._state_path(name)):
                os.rename(failed_path, self._state_path(name))
            fsops.unlink_quiet(self._reason_path(name))
            self._create_hint(name)
            self._known.discard(name)
            count += 1
        return count

    def close(self) -> None:
        self._watcher.close()


