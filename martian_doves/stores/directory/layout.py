"""Where everything lives in a folder store, and the store's own small files, as one object.

The layout (all plain folders, readable with ``ls``)::

    STORE/x.state, x.state-1 ...   state files, immutable once written (the lineage)
    STORE/pending/x.state          a hint that x.state may run; mtime = not before
    STORE/in_progress/x.state@T    a claim with fencing token T; ctime = last heartbeat
    STORE/done/x.state             committed: the claim file, moved (who ran it; ctime = when)
    STORE/failed/x.state           a failed state, next to x.state.reason.json
    STORE/workers/NAME             a worker's registration; mtime = last heartbeat
    STORE/scheduled/DUE/x.state    a timer (``Next(after=...)``): x.state may run from its mtime on;
                                   DUE is the due time rounded down to ``BUCKET_SECONDS`` (epoch)
    STORE/waiting/DUE/x.state      a machine waiting for an event (until its deadline) or for its
                                   children; DUE is ``forever`` for a wait with no deadline
    STORE/mailboxes/M/N            the Nth event sent to the machine M; ``N@x.state`` once taken
    STORE/joins/x.state/I          child I of the state x.state (that spawned it) has ended
    STORE/.doves-tmp/              files being written, never visible as states
    STORE/.doves-admitted/x.state  the ticket of the one worker that admitted a copied-in file

``Layout`` is the one place where these paths are formed and where the store's own
files (hints, claims, done markers, failure reasons, registrations) are written and
read; both directory modes compose it, and so does a PostgreSQL export
(``write_exported``). How the files move (the protocol) is ``engine.py``'s.

The store's own files are ours, but a person may edit or clobber one: reading a bad
one costs what it described (defaults), never a worker or a command.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

from martian_doves import codec
from martian_doves.errors import CodecError, ConfigError, FileTooLarge, NotARegularFile
from martian_doves.model import JSONDict, State, Status
from martian_doves.stores.directory import fsops
from martian_doves.stores.directory.folders import Entry, Folder, open_folder, open_root
from martian_doves.stores.directory.records import (
    TOKEN_SEP,
    ClaimRecord,
    Registration,
    as_count,
    as_time,
    carried,
    claim_record,
    split_claim,
)

PENDING_DIR = "pending"
IN_PROGRESS_DIR = "in_progress"
DONE_DIR = "done"
FAILED_DIR = "failed"
WORKERS_DIR = "workers"
#: Folder (inside the store) for files being written; never visible as states.
TMP_DIR = ".doves-tmp"
#: Folder of admission tickets for files that arrived in the root without ``submit``.
ADMITTED_DIR = ".doves-admitted"
#: Timers, in folders named by their due time (``BUCKET_SECONDS`` wide).
SCHEDULED_DIR = "scheduled"
#: Waiting entries (events, children), in folders named by their deadline (or ``FOREVER``).
WAITING_DIR = "waiting"
#: Events sent to machines, one folder per machine.
MAILBOXES_DIR = "mailboxes"
#: Which children of a spawning state have ended, one folder per spawning state.
JOINS_DIR = "joins"
#: Every folder of a store. Each is verified to be the store's own real folder and held
#: open when the store is opened (``Layout``); a folder added to the layout goes here.
#: The folders inside the machine model's (time buckets, mailboxes, joins) are verified
#: the same way each time they are opened (``Layout.inner``).
STORE_FOLDERS: tuple[str, ...] = (PENDING_DIR, IN_PROGRESS_DIR, DONE_DIR, FAILED_DIR, WORKERS_DIR, TMP_DIR,
                                  ADMITTED_DIR, SCHEDULED_DIR, WAITING_DIR, MAILBOXES_DIR, JOINS_DIR)
#: Width of the time buckets of ``scheduled/`` and ``waiting/``, seconds: a worker finds the next
#: due time by listing bucket names, never every timer.
BUCKET_SECONDS = 10
#: The bucket of ``waiting/`` that holds waits with no deadline.
FOREVER = "forever"
#: How the name of a quarantined root entry whose own name is unsafe begins in ``failed/``.
QUARANTINED_PREFIX = "unsafe-name-"
#: Suffix of the machine-readable reason next to a failed state.
REASON_SUFFIX = ".reason.json"
#: Largest hint or claim file read back (they hold a few attempts' errors).
_CLAIM_MAX_BYTES = 1 << 20
#: Largest done marker or registration read for a report.
_REPORT_MAX_BYTES = 65536
#: Largest failure reason read back (it holds a traceback and every attempt's error).
_REASON_MAX_BYTES = 1 << 22


def _same_file(found: os.stat_result | None, held: os.stat_result) -> bool:
    return found is not None and (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


def bucket_of(due: float | None) -> str:
    """The bucket folder of a due time (its start, epoch seconds), or ``FOREVER``."""
    return FOREVER if due is None else str(int(due // BUCKET_SECONDS) * BUCKET_SECONDS)


class Layout:
    """The folders of one directory store, every entry in it, and its own small files.

    Opening it holds the root and each of ``STORE_FOLDERS`` open, verified to be the
    store's own real folders (``folders.open_folder``); every entry is then reached
    through them (``folders.Entry``), never by a path that a planted link could redirect.

    Args:
        root: the store's folder (made absolute).
        create: create the root and the folders that are missing (``submit``, ``run``);
            otherwise create nothing: a missing folder holds nothing.
        durable: fsync what is written here before its name appears (``--durable``).
        max_state_bytes: state files larger than this are not read, but for a join's successor.
        max_join_bytes: how large a join's successor may be (its parent is a join entry).

    Raises:
        ConfigError: a store folder is a link, not a folder, or not the store's.
        OSError: the root or a folder cannot be created or opened.
    """

    def __init__(self, root: str | os.PathLike[str], *, create: bool, durable: bool = False,
                 max_state_bytes: int = codec.DEFAULT_MAX_STATE_BYTES,
                 max_join_bytes: int = codec.DEFAULT_MAX_JOIN_BYTES) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.durable = durable
        self.max_state_bytes = max_state_bytes
        self.max_join_bytes = max(max_join_bytes, max_state_bytes)
        if create:
            os.makedirs(self.root, exist_ok=True)
        #: The root, held open: state files.
        self.top = open_root(self.root)
        if create and os.fstatvfs(self.top.fd).f_flag & os.ST_RDONLY:
            # A volume mounted read-only is a mistake no retry fixes; one remounted so mid-run
            # is an outage, which the workers ride out (``outage.py``).
            self.top.close()
            raise ConfigError(f"cannot write to the store {self.root}: Read-only file system (this command "
                              "writes the store: mount it read-write)")
        #: Each of ``STORE_FOLDERS`` by name, held open.
        self.folders: dict[str, Folder] = {}
        try:
            for name in STORE_FOLDERS:
                self.folders[name] = open_folder(self.top, name, create=create)
        except BaseException:
            self.close()
            raise
        #: Hints: what may run, and from when.
        self.pending = self.folders[PENDING_DIR]
        #: Claims, named ``NAME@TOKEN``.
        self.in_progress = self.folders[IN_PROGRESS_DIR]
        #: Done markers.
        self.done = self.folders[DONE_DIR]
        #: Failed state files and their reasons.
        self.failed = self.folders[FAILED_DIR]
        #: Worker registrations.
        self.workers = self.folders[WORKERS_DIR]
        #: Files being written.
        self.tmp = self.folders[TMP_DIR]
        #: Tickets (hard links) of files admitted from the root: one admitter per file.
        self.admitted = self.folders[ADMITTED_DIR]
        #: Timers, in time buckets.
        self.scheduled = self.folders[SCHEDULED_DIR]
        #: Waiting entries, in time buckets.
        self.waiting = self.folders[WAITING_DIR]
        #: Events, one folder per machine.
        self.mailboxes = self.folders[MAILBOXES_DIR]
        #: Ended children, one folder per spawning state.
        self.joins = self.folders[JOINS_DIR]

    def close(self) -> None:
        """Let go of the folders (nothing is reachable through this layout afterwards)."""
        for folder in self.folders.values():
            folder.close()
        self.top.close()

    def is_store(self) -> bool:
        """Whether the root holds a store: one of its folders, or a state file (copied in, never run)."""
        return any(folder.exists for folder in self.folders.values()) or \
            any(codec.is_state_file_name(name) for name in fsops.listdir_quiet(self.top))

    def displaced(self) -> list[str]:
        """What of the store is no longer where it was opened: ``the store`` when its root was
        moved, removed or unmounted, ``pending/`` (and so on) for a folder removed or replaced.

        The folders are held open, so such a change would otherwise go unseen: a worker would
        go on in a folder nobody else can find any more.
        """
        if self.top.fd < 0:
            return []  # closed
        try:
            root = os.stat(self.root)
        except OSError:
            return ["the store"]
        if not _same_file(root, os.fstat(self.top.fd)):
            return ["the store"]
        return [name + "/" for name, folder in self.folders.items() if folder.exists and not
                _same_file(fsops.lstat_quiet(self.top.at(name)), os.fstat(folder.fd))]

    # -- entries -------------------------------------------------------------------------

    def state_at(self, name: str) -> Entry:
        return self.top.at(name)

    def failed_state_at(self, name: str) -> Entry:
        return self.failed.at(name)

    def hint_at(self, name: str) -> Entry:
        return self.pending.at(name)

    def claim_at(self, name: str, token: str) -> Entry:
        return self.in_progress.at(f"{name}{TOKEN_SEP}{token}")

    def claim_entry_at(self, entry: str) -> Entry:
        """An entry listed in ``in_progress/`` (with or without a token)."""
        return self.in_progress.at(entry)

    def done_at(self, name: str) -> Entry:
        return self.done.at(name)

    def reason_at(self, name: str) -> Entry:
        return self.failed.at(name + REASON_SUFFIX)

    def worker_at(self, worker: str) -> Entry:
        return self.workers.at(worker)

    def ticket_at(self, name: str) -> Entry:
        return self.admitted.at(name)

    def new_tmp(self) -> Entry:
        """A fresh name in ``.doves-tmp/``: this process's id (for whoever cleans up) and random bits."""
        return self.tmp.at(f"{os.getpid()}-{secrets.token_hex(8)}")

    # -- what is where -------------------------------------------------------------------

    def has_state(self, name: str) -> bool:
        return fsops.exists(self.state_at(name))

    def has_failed_state(self, name: str) -> bool:
        return fsops.exists(self.failed_state_at(name))

    def has_hint(self, name: str) -> bool:
        return fsops.exists(self.hint_at(name))

    def has_claim(self, name: str, token: str) -> bool:
        return fsops.exists(self.claim_at(name, token))

    def is_done(self, name: str) -> bool:
        return fsops.exists(self.done_at(name))

    def has_reason(self, name: str) -> bool:
        return fsops.exists(self.reason_at(name))

    def is_settled(self, name: str) -> bool:
        """Whether ``name`` is done or failed (settled states do not move on by themselves)."""
        return self.is_done(name) or self.has_reason(name)

    def has_registration(self, worker: str) -> bool:
        return fsops.exists(self.worker_at(worker))

    def claimed_names(self) -> set[str]:
        """The states claimed right now (one listing of ``in_progress/``)."""
        return {split_claim(entry)[0] for entry in fsops.listdir_quiet(self.in_progress)}

    def has_marker(self, name: str) -> bool:
        """Whether ``name`` has a hint, a claim, a done marker or a failure reason (race-free)."""
        # A settled state does not move on by itself, so done/failed answer at once (the
        # common case when a fresh worker scans a large store). Otherwise look in the
        # direction states move (pending → in_progress → done/failed), each look taken
        # after the one before, so a concurrent move cannot slip past; a move backwards
        # (release) is caught by O_EXCL. A listing of in_progress/ taken before the look at
        # the hint would miss a claim made in between, and the state would run twice.
        # A timer or a waiting entry (parked) moves on to pending/ only: after the hint, look there.
        if self.is_settled(name):
            return True
        return self.has_hint(name) or self.parked_marker(name) is not None or name in self.claimed_names() \
            or self.is_settled(name)

    def failed_names(self) -> list[str]:
        """The states that failed (those with a reason in ``failed/``), oldest reason first."""
        reasons = sorted((mtime, entry) for entry, mtime in fsops.stamped_entries(self.failed)
                         if entry.endswith(REASON_SUFFIX))
        return [entry[: -len(REASON_SUFFIX)] for _, entry in reasons]

    # -- state files ---------------------------------------------------------------------

    def read_state(self, name: str, *, failed: bool = False) -> State:
        """The state file ``name`` in the root (or in ``failed/``).

        Raises:
            FileNotFoundError: there is none.
            CodecError: it cannot be read as a state (too large, not a file, bad JSON ...).
        """
        entry = self.failed_state_at(name) if failed else self.state_at(name)
        raw = fsops.read_regular(entry, self.max_join_bytes)
        state = codec.decode(raw, name)
        if len(raw) > self.max_state_bytes and not self._joined(state):
            # Only a worker writes a state this large, as a join's successor; anything
            # else this size was put here by hand and is refused as it always was.
            raise FileTooLarge(f"{name}: {len(raw)} bytes is over the {self.max_state_bytes}-byte limit")
        return state

    def _joined(self, state: State) -> bool:
        """Whether ``state`` is the successor of a join entry (whose own file is small)."""
        if not state.parent:
            return False
        try:
            parent = codec.decode(fsops.read_regular(self.state_at(state.parent), self.max_state_bytes), state.parent)
        except (OSError, CodecError):
            return False
        # Not "and the parent is done": its successor may be claimed a moment before that.
        return codec.is_join_entry(parent)

    def parent_in(self, name: str, *, failed: bool = False) -> str | None:
        """The parent recorded in the state file ``name`` in the root (or ``failed/``).

        Returns:
            The parent's name; ``""`` for a root or an unreadable file; None if there is no file.
        """
        try:
            return self.read_state(name, failed=failed).parent or ""
        except FileNotFoundError:
            return None
        except CodecError:
            return ""

    def parent_of(self, name: str) -> str | None:
        """The parent recorded in the state file ``name`` wherever it is; None if none exists."""
        owner = self.parent_in(name)
        return owner if owner is not None else self.parent_in(name, failed=True)

    def write_tmp(self, data: bytes) -> Entry:
        """Write ``data`` to a fresh temporary file (see ``publish_state``) and return it."""
        tmp = self.new_tmp()
        fsops.write_tmp(tmp, data, durable=self.durable)
        return tmp

    def publish_state(self, tmp: Entry, name: str) -> bool:
        """Give the temporary file ``tmp`` the state name ``name``, unless it is taken.

        Returns:
            True if moved; False if ``name`` exists (``tmp`` is left in place).
        """
        if not fsops.move_noreplace(tmp, self.state_at(name)):
            return False
        self.sync(self.top)
        return True

    def write_new(self, target: Entry, data: bytes, *, mtime: float | None = None) -> bool:
        """Atomically create ``target`` (an entry of this layout) holding ``data``; never replaces a file.

        Returns:
            True if ``target`` now names our data, False if the name was already taken.
        """
        return fsops.write_new(self.new_tmp(), target, data, durable=self.durable, mtime=mtime)

    def sync(self, folder: Folder) -> None:
        """Make new names in ``folder`` survive power loss, if this layout is durable."""
        if self.durable:
            fsops.fsync_dir(folder)

    # -- hints and claims ------------------------------------------------------------------

    def write_hint(self, name: str, *, not_before: float | None = None, attempts: int = 0,
                   errors: Sequence[str] = (), retries: int = 0) -> bool:
        """Mark ``name`` runnable from ``not_before`` on (the hint's mtime).

        A hint without ``not_before`` gets the filesystem's own timestamp. After failed
        attempts or requested retries the hint carries them (``{"attempts": n, "errors":
        [...], "retries": r}``) into the next claim; otherwise it is empty.

        Returns:
            False if a hint already exists (it is left as it is).
        """
        data = carried(attempts, errors, retries)
        if not data and not_before is None:
            return fsops.create_empty(self.hint_at(name))
        return self.write_new(self.hint_at(name), data, mtime=not_before)

    # -- the machine model's folders ---------------------------------------------------------

    @contextmanager
    def inner(self, parent: Folder, name: str, *, create: bool = False) -> Iterator[Folder]:
        """The folder ``name`` inside the store folder ``parent`` (a time bucket, a mailbox, a join),
        verified as the store's folders are and held open while in use; a missing one holds nothing.

        Raises:
            ConfigError: it is a link, not a folder, or not the store's.
            FileNotFoundError: ``create`` and it was removed between its creation and its opening.
        """
        if not parent.exists:
            folder = Folder(parent.at(name).path, -1)
        else:
            folder = open_folder(parent, name, create=create)
        try:
            yield folder
        finally:
            folder.close()

    def parked_marker(self, name: str) -> tuple[bool, float | None] | None:
        """Where ``name`` is parked: (a timer?, its due time or deadline); None if it is not.

        Where to look is in its state file: a waiting entry's deadline, a timer's ``not_before``;
        a retry's timer, which the file does not tell, is looked for in each bucket of ``scheduled/``.
        """
        try:
            raw = fsops.read_regular(self.state_at(name), self.max_state_bytes)
            state = codec.decode(raw, name)
        except (OSError, CodecError):
            return self._retry_marker(name)
        due: float | None
        if state.wait is not None:
            timer, due = False, state.wait.deadline
        else:
            found = json.loads(raw).get("not_before")
            if not isinstance(found, int | float) or isinstance(found, bool):
                return self._retry_marker(name)
            timer, due = True, float(found)
        try:
            with self.inner(self.scheduled if timer else self.waiting, bucket_of(due)) as bucket:
                if fsops.exists(bucket.at(name)):
                    return timer, due
        except ConfigError:
            pass
        return self._retry_marker(name)

    def _retry_marker(self, name: str) -> tuple[bool, float | None] | None:
        """Where ``name`` waits for a retry (a timer its state file does not tell): each bucket of
        ``scheduled/`` is looked at (few: they are ``BUCKET_SECONDS`` wide, and this runs only for
        a state with no hint)."""
        for entry in fsops.listdir_quiet(self.scheduled):
            try:
                with self.inner(self.scheduled, entry) as bucket:
                    found = fsops.lstat_quiet(bucket.at(name))
            except (ConfigError, OSError):
                continue
            if found is not None:
                return True, found.st_mtime
        return None

    def read_timer(self, name: str, due: float) -> ClaimRecord:
        """The attempts, errors and retries the timer ``name`` due at ``due`` carries (a retry's)."""
        try:
            with self.inner(self.scheduled, bucket_of(due)) as bucket:
                return claim_record(fsops.read_json_object(bucket.at(name), _CLAIM_MAX_BYTES) or {})
        except (ConfigError, OSError):
            return claim_record({})

    def read_claim(self, name: str, token: str) -> ClaimRecord:
        """Worker, attempts and errors of a claim (or of the hint it was renamed from).

        What is unreadable gets defaults: worker ``?``, no attempts, no errors.
        """
        return claim_record(fsops.read_json_object(self.claim_at(name, token), _CLAIM_MAX_BYTES) or {})

    def create_claim(self, name: str, token: str, record: ClaimRecord) -> Entry:
        """Create the claim file ``NAME@TOKEN`` holding ``record`` (exclusively); return it."""
        claim = self.claim_at(name, token)
        fsops.create_with(claim, record.encode())
        return claim

    def rewrite_claim(self, name: str, token: str, record: ClaimRecord) -> None:
        """Write ``record`` into the claim file ``NAME@TOKEN``, in place; nothing if the claim is gone."""
        # In place: the claim file is ours, and a taker rewrites its own copy.
        try:
            fsops.rewrite(self.claim_at(name, token), record.encode())
        except NotARegularFile:
            pass  # swapped for something else since it was checked: never written through

    def touch_claim(self, name: str, token: str) -> bool:
        """Renew a claim (its ctime is the last heartbeat); False if it was taken over."""
        return fsops.utime(self.claim_at(name, token))

    def remove_claim(self, name: str, token: str) -> None:
        fsops.unlink_quiet(self.claim_at(name, token))

    def has_work(self) -> bool:
        """Whether any hint or claim exists (something is pending, due later, or running)."""
        # Plain files only: anything else planted in either is no work, and would keep a run going forever.
        return fsops.has_file(self.pending) or fsops.has_file(self.in_progress)

    def claimed_workers(self) -> dict[str, str]:
        """Each claimed state and the worker its claim names (``?`` if unreadable)."""
        claimed = {}
        for entry in fsops.listdir_quiet(self.in_progress):
            info = fsops.read_json_object(self.claim_entry_at(entry), _REPORT_MAX_BYTES) or {}
            claimed[split_claim(entry)[0]] = str(info.get("worker", "?"))
        return claimed

    # -- outcomes --------------------------------------------------------------------------

    def read_done(self, name: str) -> tuple[JSONDict, float] | None:
        """A done marker's contents (``{}`` if unreadable) and when it was made; None if not done."""
        done = self.done_at(name)
        found = fsops.lstat_quiet(done)
        if found is None:
            return None
        return fsops.read_json_object(done, _REPORT_MAX_BYTES) or {}, found.st_ctime

    def adopter_of(self, name: str) -> str | None:
        """The state whose commit adopted the file ``name`` as its successor (one that names no
        parent: the seed's), as that state's done marker says; None if none did."""
        parent = codec.first_parent_name(name)
        done = None if parent is None else self.read_done(parent)
        return parent if done is not None and done[0].get("adopted") == name else None

    def write_reason(self, failed_name: str, reason: JSONDict) -> bool:
        """Write why ``failed_name`` failed next to it in ``failed/``; False if a reason exists."""
        try:
            data = json.dumps(reason, indent=2, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            # A file name that is not UTF-8 (surrogate escapes from listdir): \u-escape it.
            data = json.dumps(reason, indent=2).encode()
        return self.write_new(self.reason_at(failed_name), data)

    def remove_reason(self, name: str) -> None:
        fsops.unlink_quiet(self.reason_at(name))

    def read_reason(self, name: str) -> JSONDict | None:
        """Why ``name`` failed; None if there is no reason or it is unreadable."""
        return fsops.read_json_object(self.reason_at(name), _REASON_MAX_BYTES)

    # -- workers ---------------------------------------------------------------------------

    def write_registration(self, worker: str, *, mode: str, started_at: float, liveness_seconds: float,
                           machines: Collection[str] | None = None) -> None:
        """Register ``worker`` afresh (host, pid, mode, how long a stamp keeps it alive, the state
        names it has machines for: None for all)."""
        info = {"host": socket.gethostname(), "pid": os.getpid(), "mode": mode, "started_at": started_at,
                "liveness_seconds": liveness_seconds, "machines": None if machines is None else sorted(machines)}
        registration = self.worker_at(worker)
        fsops.unlink_quiet(registration)
        fsops.write_new(self.new_tmp(), registration, json.dumps(info).encode(), durable=False)

    def stamp_registration(self, worker: str, at: float | None = None) -> bool:
        """Stamp ``worker``'s registration now (the filesystem's time) or ``at``; False if it is gone."""
        return fsops.utime(self.worker_at(worker), None if at is None else (at, at))

    def remove_registration(self, worker: str) -> None:
        fsops.unlink_quiet(self.worker_at(worker))

    def mark_registration_ended(self, worker: str, why: str) -> bool:
        """Say in ``worker``'s registration that it is dead and why, keeping its last stamp.

        Returns:
            False if it has no registration (it unregistered).
        """
        registration = self.worker_at(worker)
        found = fsops.lstat_quiet(registration)
        if found is None:
            return False
        seen_at = found.st_mtime
        info = fsops.read_json_object(registration, _REPORT_MAX_BYTES) or {}
        tmp = self.new_tmp()
        fsops.write_tmp(tmp, json.dumps({**info, "ended": why}).encode(), durable=False, mtime=seen_at)
        # Replaced in one step, never absent: the semaphore's workers list registrations at
        # any moment of a cycle and must all see the same set (its stamp is kept, so the
        # dead worker still drops out of assignments a cycle later, as every silent one does).
        fsops.rename(tmp, registration)
        return True

    def registrations(self) -> list[Registration]:
        """Every registration in ``workers/``, sorted by name; unreadable fields get defaults."""
        found = []
        for entry in sorted(fsops.listdir_quiet(self.workers)):
            registration = self.worker_at(entry)
            stamped = fsops.lstat_quiet(registration)
            if stamped is None:
                continue
            seen_at = stamped.st_mtime
            info = fsops.read_json_object(registration, _REPORT_MAX_BYTES)
            mode = None if info is None or "mode" not in info else str(info["mode"])
            info = info or {}
            ended = info.get("ended")
            machines = info.get("machines")
            found.append(Registration(entry, seen_at, str(info.get("host", "?")), as_count(info.get("pid")), mode,
                                      as_time(info.get("liveness_seconds")), as_time(info.get("started_at")),
                                      None if ended is None else str(ended),
                                      frozenset(str(m) for m in machines) if isinstance(machines, list) else None))
        return found

    # -- single files for people (status, list, show) ------------------------------------------

    def state_stat(self, name: str, *, failed: bool = False) -> os.stat_result | None:
        """The state file ``name``'s own status (root or ``failed/``; mtime: when it was written)."""
        return fsops.lstat_quiet(self.failed_state_at(name) if failed else self.state_at(name))

    def read_claim_entry(self, entry: str) -> ClaimRecord:
        """What the claim ``entry`` of ``in_progress/`` says (defaults for what it does not)."""
        return claim_record(fsops.read_json_object(self.claim_entry_at(entry), _REPORT_MAX_BYTES) or {})

    def read_hint(self, name: str) -> ClaimRecord:
        """The attempts, errors and retries a hint carries (none for an empty one)."""
        return claim_record(fsops.read_json_object(self.hint_at(name), _CLAIM_MAX_BYTES) or {})

    def claim_stamp(self, name: str, token: str) -> float | None:
        """The mtime of the claim ``NAME@TOKEN`` (before it is rewritten: when its hint was due)."""
        found = fsops.lstat_quiet(self.claim_at(name, token))
        return None if found is None else found.st_mtime

    def remove_settled(self, name: str) -> None:
        """Delete a settled state: its file (root or ``failed/``), its done marker or reason, its ticket."""
        for entry in (self.state_at(name), self.failed_state_at(name), self.done_at(name),
                      self.reason_at(name), self.ticket_at(name)):
            fsops.unlink_quiet(entry)

    # -- upkeep ----------------------------------------------------------------------------

    def state_names(self) -> list[str]:
        """The state files in the root (whatever their markers say)."""
        return [name for name in fsops.listdir_quiet(self.top) if codec.is_state_file_name(name)]

    def forget_outcomes(self) -> None:
        """Remove every hint, claim, done marker, registration, ticket and reason; failed files
        go back to the root (unless the root has a file of that name)."""
        for folder in (self.in_progress, self.done, self.pending, self.workers, self.admitted):
            fsops.remove_all(folder)
        for entry in fsops.listdir_quiet(self.failed):
            if entry.endswith(REASON_SUFFIX):
                fsops.unlink_quiet(self.failed.at(entry))
            elif codec.is_state_file_name(entry) or entry.startswith(QUARANTINED_PREFIX):
                # Never over a file of the root, and only what the store put there: a planted
                # folder named like a store folder stays where it is.
                fsops.move_noreplace(self.failed_state_at(entry), self.state_at(entry))

    def remove_registrations_before(self, cutoff: float) -> None:
        """Delete registrations last stamped before ``cutoff`` (long-dead workers)."""
        fsops.remove_older_than(self.workers, cutoff)

    def remove_tmp_before(self, cutoff: float) -> None:
        """Delete temporary files older than ``cutoff``: leftovers of writers that died."""
        fsops.remove_older_than(self.tmp, cutoff)

    def filesystem_time(self) -> float:
        """The shared filesystem's clock (the NFS server's, for a shared volume), now.

        The filesystem stamps a probe file with its own clock; reading the stamp back
        tells us that clock.
        """
        # A fresh name each time, created exclusively and removed at once: a name known in
        # advance (host and pid are in workers/) could be planted as a link.
        return fsops.creation_time(self.tmp.at(f"clock-probe-{secrets.token_hex(8)}"))

    # -- exported states -------------------------------------------------------------------

    def write_exported(self, name: str, state_file: bytes, status: Status, *, attempts: int = 0,
                       errors: Sequence[str] = (), not_before: float | None = None, worker: str | None = None,
                       token: str | None = None, claimed_at: float | None = None,
                       reason: JSONDict | None = None) -> bool:
        """Write one state kept elsewhere (a PostgreSQL store's export) as this store's files.

        The state file goes to the root (``failed/`` for a failed state) and its marker
        next to it: a done marker, the failure's reason, or else (pending, or claimed: a
        claim means nothing here) a hint due at ``not_before`` that carries the failed
        attempts. Nothing is ever overwritten; a state file already holding exactly
        ``state_file`` (an earlier export) counts as written, and only missing markers are
        added, so an export that stopped short can simply run again.

        Args:
            name: the state's name (checked by the caller: ``codec.check_name``).
            state_file: the encoded state file (``codec.encode``).
            status: where it stands; ``IN_PROGRESS`` is written as pending.
            attempts, errors: its failed attempts so far.
            not_before: when it may run (epoch seconds); None for the filesystem's now.
            worker, token, claimed_at: who committed it (for a done state's marker).
            reason: why it failed (for a failed state); a generic reason if None.

        Returns:
            False if ``name`` already holds another file (nothing was written for it).
        """
        target = self.failed_state_at(name) if status is Status.FAILED else self.state_at(name)
        if not self.write_new(target, state_file):
            try:
                same = fsops.read_regular(target, len(state_file)) == state_file
            except (OSError, CodecError):
                same = False
            if not same:
                return False
        if status is Status.DONE:
            self.write_new(self.done_at(name),
                           ClaimRecord(worker, attempts, tuple(errors), token, claimed_at).encode())
        elif status is Status.FAILED:
            self.write_reason(name, reason or {"name": name, "code": "error", "message": "failed"})
        else:
            self.write_hint(name, not_before=not_before, attempts=attempts, errors=errors)
        return True
