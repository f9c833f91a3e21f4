"""Where everything lives in a folder store, and the store's own small files, as one object.

The layout (all plain folders, readable with ``ls``)::

    STORE/x.state, x.state-1 ...   state files, immutable once written (the lineage)
    STORE/pending/x.state          a hint that x.state may run; mtime = not before
    STORE/in_progress/x.state@T    a claim with fencing token T; ctime = last heartbeat
    STORE/done/x.state             committed: the claim file, moved (who ran it; ctime = when)
    STORE/failed/x.state           a failed state, next to x.state.reason.json
    STORE/workers/NAME             a worker's registration; mtime = last heartbeat
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
from collections.abc import Sequence
from dataclasses import dataclass

from martian_doves import codec
from martian_doves.errors import CodecError
from martian_doves.model import JSONDict, State, Status
from martian_doves.stores.directory import fsops

#: Folder (inside the store) for files being written; never visible as states.
TMP_DIR = ".doves-tmp"
#: Folder of admission tickets for files that arrived in the root without ``submit``.
ADMITTED_DIR = ".doves-admitted"
#: Separates a state name from its claim token in ``in_progress/``.
TOKEN_SEP = "@"
#: Suffix of the machine-readable reason next to a failed state.
REASON_SUFFIX = ".reason.json"
#: Largest hint or claim file read back (they hold a few attempts' errors).
_CLAIM_MAX_BYTES = 1 << 20
#: Largest done marker or registration read for a report.
_REPORT_MAX_BYTES = 65536
#: Largest failure reason read back (it holds a traceback and every attempt's error).
_REASON_MAX_BYTES = 1 << 22


def new_token() -> str:
    """A fresh fencing token for a claim's name."""
    return secrets.token_hex(8)


def split_claim(entry: str) -> tuple[str, str]:
    """``x.state@TOKEN`` (an entry of ``in_progress/``) → ``("x.state", "TOKEN")``; no token → ``""``."""
    name, _, token = entry.rpartition(TOKEN_SEP)
    return name, token


def as_count(value: object) -> int:
    """A count from one of our JSON files; 0 for anything a person's edit left there."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def as_time(value: object) -> float | None:
    """A time (epoch seconds) or duration from one of our JSON files; None if it is none."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ClaimRecord:
    """What a claim file says (and a done marker, which is the claim file moved)."""

    #: The worker holding the claim; ``?`` when the file does not say.
    worker: str | None
    #: Failed attempts so far (carried over from the hint on a retried state).
    attempts: int = 0
    #: Each failed attempt's error, oldest first.
    errors: tuple[str, ...] = ()
    #: The claim's fencing token (it is in the file name too).
    token: str | None = None
    #: When the claim was taken, epoch seconds.
    claimed_at: float | None = None
    #: Retries the handler asked for so far (``raise Retry``).
    retries: int = 0

    def encode(self) -> bytes:
        return json.dumps({"worker": self.worker, "token": self.token, "attempts": self.attempts,
                           "errors": list(self.errors), "claimed_at": self.claimed_at,
                           "retries": self.retries}).encode()


def claim_record(info: JSONDict) -> ClaimRecord:
    """A claim file's, hint's or done marker's contents as a ``ClaimRecord``; defaults for what is
    missing or not of its kind (worker ``?``, no attempts, no errors)."""
    errors = info.get("errors", [])
    token = info.get("token")
    return ClaimRecord(str(info.get("worker", "?")), as_count(info.get("attempts", 0)),
                       tuple(str(e) for e in errors) if isinstance(errors, list) else (),
                       token if isinstance(token, str) else None, as_time(info.get("claimed_at")),
                       as_count(info.get("retries", 0)))


@dataclass(frozen=True)
class Registration:
    """A worker's registration in ``workers/``, as far as it is readable."""

    #: The worker's name (the file's name).
    name: str
    #: Last stamp (heartbeat, or the semaphore's update phase), epoch seconds.
    seen_at: float
    host: str
    pid: int
    #: The mode the worker runs in; None if the file does not say.
    mode: str | None
    #: How long after ``seen_at`` the worker counts as alive; None if the file does not say.
    liveness_seconds: float | None
    #: When the worker registered, epoch seconds; None if the file does not say.
    started_at: float | None = None
    #: Why it is known dead (its supervisor said so); None while nobody has.
    ended: str | None = None


class Layout:
    """The folders of one directory store, every path in it, and its own small files.

    Args:
        root: the store's folder (made absolute).
        durable: fsync what is written here before its name appears (``--durable``).
        max_state_bytes: state files larger than this are not read.
    """

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = False,
                 max_state_bytes: int = codec.DEFAULT_MAX_STATE_BYTES) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.durable = durable
        self.max_state_bytes = max_state_bytes
        #: Hints: what may run, and from when.
        self.pending = os.path.join(self.root, "pending")
        #: Claims, named ``NAME@TOKEN``.
        self.in_progress = os.path.join(self.root, "in_progress")
        #: Done markers.
        self.done = os.path.join(self.root, "done")
        #: Failed state files and their reasons.
        self.failed = os.path.join(self.root, "failed")
        #: Worker registrations.
        self.workers = os.path.join(self.root, "workers")
        #: Files being written.
        self.tmp = os.path.join(self.root, TMP_DIR)
        #: Tickets (hard links) of files admitted from the root: one admitter per file.
        self.admitted = os.path.join(self.root, ADMITTED_DIR)

    def folders(self) -> tuple[str, ...]:
        return (self.pending, self.in_progress, self.done, self.failed, self.workers, self.tmp, self.admitted)

    def create(self) -> None:
        """Create the root and every folder in it that is missing.

        Raises:
            OSError: a folder cannot be created (or the root is a file).
        """
        os.makedirs(self.root, exist_ok=True)
        for folder in self.folders():
            os.makedirs(folder, exist_ok=True)

    # -- paths ---------------------------------------------------------------------------

    def state_path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def failed_state_path(self, name: str) -> str:
        return os.path.join(self.failed, name)

    def hint_path(self, name: str) -> str:
        return os.path.join(self.pending, name)

    def claim_path(self, name: str, token: str) -> str:
        return os.path.join(self.in_progress, f"{name}{TOKEN_SEP}{token}")

    def claim_entry_path(self, entry: str) -> str:
        """The path of an entry listed in ``in_progress/`` (with or without a token)."""
        return os.path.join(self.in_progress, entry)

    def done_path(self, name: str) -> str:
        return os.path.join(self.done, name)

    def reason_path(self, name: str) -> str:
        return os.path.join(self.failed, name + REASON_SUFFIX)

    def worker_path(self, worker: str) -> str:
        return os.path.join(self.workers, worker)

    def ticket_path(self, name: str) -> str:
        return os.path.join(self.admitted, name)

    def new_tmp_path(self) -> str:
        """A fresh name in ``.doves-tmp/``: this process's id (for whoever cleans up) and random bits."""
        return os.path.join(self.tmp, f"{os.getpid()}-{secrets.token_hex(8)}")

    # -- what is where -------------------------------------------------------------------

    def has_state(self, name: str) -> bool:
        return os.path.lexists(self.state_path(name))

    def has_failed_state(self, name: str) -> bool:
        return os.path.lexists(self.failed_state_path(name))

    def has_hint(self, name: str) -> bool:
        return os.path.lexists(self.hint_path(name))

    def has_claim(self, name: str, token: str) -> bool:
        return os.path.lexists(self.claim_path(name, token))

    def is_done(self, name: str) -> bool:
        return os.path.lexists(self.done_path(name))

    def has_reason(self, name: str) -> bool:
        return os.path.lexists(self.reason_path(name))

    def is_settled(self, name: str) -> bool:
        """Whether ``name`` is done or failed (settled states do not move on by themselves)."""
        return self.is_done(name) or self.has_reason(name)

    def has_registration(self, worker: str) -> bool:
        return os.path.lexists(self.worker_path(worker))

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
        if self.is_settled(name):
            return True
        return self.has_hint(name) or name in self.claimed_names() or self.is_settled(name)

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
        path = self.failed_state_path(name) if failed else self.state_path(name)
        return codec.decode(fsops.read_regular(path, self.max_state_bytes), name)

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

    def write_tmp(self, data: bytes) -> str:
        """Write ``data`` to a fresh temporary file (see ``publish_state``) and return its path."""
        path = self.new_tmp_path()
        fsops.write_tmp(path, data, durable=self.durable)
        return path

    def publish_state(self, tmp_path: str, name: str) -> bool:
        """Give the temporary file ``tmp_path`` the state name ``name``, unless it is taken.

        Returns:
            True if moved; False if ``name`` exists (``tmp_path`` is left in place).
        """
        if not fsops.move_noreplace(tmp_path, self.state_path(name)):
            return False
        self.sync(self.root)
        return True

    def write_new(self, target: str, data: bytes, *, mtime: float | None = None) -> bool:
        """Atomically create ``target`` (a path of this layout) holding ``data``; never replaces a file.

        Returns:
            True if ``target`` now names our data, False if the name was already taken.
        """
        return fsops.write_new(self.new_tmp_path(), target, data, durable=self.durable, mtime=mtime)

    def sync(self, folder: str) -> None:
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
        data = b""
        if attempts or retries:
            carried: dict[str, object] = {"attempts": attempts, "errors": list(errors)}
            if retries:
                carried["retries"] = retries
            data = json.dumps(carried).encode()
        if not data and not_before is None:
            return fsops.create_empty(self.hint_path(name))
        return self.write_new(self.hint_path(name), data, mtime=not_before)

    def read_claim(self, name: str, token: str) -> ClaimRecord:
        """Worker, attempts and errors of a claim (or of the hint it was renamed from).

        What is unreadable gets defaults: worker ``?``, no attempts, no errors.
        """
        return claim_record(fsops.read_json_object(self.claim_path(name, token), _CLAIM_MAX_BYTES) or {})

    def create_claim(self, name: str, token: str, record: ClaimRecord) -> str:
        """Create the claim file ``NAME@TOKEN`` holding ``record`` (exclusively); return its path."""
        path = self.claim_path(name, token)
        fsops.create_with(path, record.encode())
        return path

    def rewrite_claim(self, name: str, token: str, record: ClaimRecord) -> None:
        """Write ``record`` into the claim file ``NAME@TOKEN``, in place; nothing if the claim is gone."""
        # In place: the claim file is ours, and a taker rewrites its own copy.
        try:
            with open(self.claim_path(name, token), "wb") as handle:
                handle.write(record.encode())
        except FileNotFoundError:
            pass

    def touch_claim(self, name: str, token: str) -> bool:
        """Renew a claim (its ctime is the last heartbeat); False if it was taken over."""
        try:
            os.utime(self.claim_path(name, token))
            return True
        except FileNotFoundError:
            return False

    def remove_claim(self, name: str, token: str) -> None:
        fsops.unlink_quiet(self.claim_path(name, token))

    def has_work(self) -> bool:
        """Whether any hint or claim exists (something is pending, due later, or running)."""
        return not (fsops.is_empty(self.pending) and fsops.is_empty(self.in_progress))

    def claimed_workers(self) -> dict[str, str]:
        """Each claimed state and the worker its claim names (``?`` if unreadable)."""
        claimed = {}
        for entry in fsops.listdir_quiet(self.in_progress):
            info = fsops.read_json_object(self.claim_entry_path(entry), _REPORT_MAX_BYTES) or {}
            claimed[split_claim(entry)[0]] = str(info.get("worker", "?"))
        return claimed

    # -- outcomes --------------------------------------------------------------------------

    def read_done(self, name: str) -> tuple[JSONDict, float] | None:
        """A done marker's contents (``{}`` if unreadable) and when it was made; None if not done."""
        path = self.done_path(name)
        try:
            committed_at = os.lstat(path).st_ctime
        except FileNotFoundError:
            return None
        return fsops.read_json_object(path, _REPORT_MAX_BYTES) or {}, committed_at

    def write_reason(self, failed_name: str, reason: JSONDict) -> bool:
        """Write why ``failed_name`` failed next to it in ``failed/``; False if a reason exists."""
        try:
            data = json.dumps(reason, indent=2, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            # A file name that is not UTF-8 (surrogate escapes from listdir): \u-escape it.
            data = json.dumps(reason, indent=2).encode()
        return self.write_new(self.reason_path(failed_name), data)

    def remove_reason(self, name: str) -> None:
        fsops.unlink_quiet(self.reason_path(name))

    def read_reason(self, name: str) -> JSONDict | None:
        """Why ``name`` failed; None if there is no reason or it is unreadable."""
        return fsops.read_json_object(self.reason_path(name), _REASON_MAX_BYTES)

    # -- workers ---------------------------------------------------------------------------

    def write_registration(self, worker: str, *, mode: str, started_at: float, liveness_seconds: float) -> None:
        """Register ``worker`` afresh (host, pid, mode, and how long a stamp keeps it alive)."""
        info = {"host": socket.gethostname(), "pid": os.getpid(), "mode": mode, "started_at": started_at,
                "liveness_seconds": liveness_seconds}
        path = self.worker_path(worker)
        fsops.unlink_quiet(path)
        fsops.write_new(self.new_tmp_path(), path, json.dumps(info).encode(), durable=False)

    def stamp_registration(self, worker: str, at: float | None = None) -> bool:
        """Stamp ``worker``'s registration now (the filesystem's time) or ``at``; False if it is gone."""
        try:
            os.utime(self.worker_path(worker), None if at is None else (at, at))
            return True
        except FileNotFoundError:
            return False

    def remove_registration(self, worker: str) -> None:
        fsops.unlink_quiet(self.worker_path(worker))

    def mark_registration_ended(self, worker: str, why: str) -> bool:
        """Say in ``worker``'s registration that it is dead and why, keeping its last stamp.

        Returns:
            False if it has no registration (it unregistered).
        """
        path = self.worker_path(worker)
        try:
            seen_at = os.lstat(path).st_mtime
        except FileNotFoundError:
            return False
        info = fsops.read_json_object(path, _REPORT_MAX_BYTES) or {}
        tmp = self.new_tmp_path()
        fsops.write_tmp(tmp, json.dumps({**info, "ended": why}).encode(), durable=False, mtime=seen_at)
        # Replaced in one step, never absent: the semaphore's workers list registrations at
        # any moment of a cycle and must all see the same set (its stamp is kept, so the
        # dead worker still drops out of assignments a cycle later, as every silent one does).
        os.replace(tmp, path)
        return True

    def registrations(self) -> list[Registration]:
        """Every registration in ``workers/``, sorted by name; unreadable fields get defaults."""
        found = []
        for entry in sorted(fsops.listdir_quiet(self.workers)):
            path = self.worker_path(entry)
            try:
                seen_at = os.lstat(path).st_mtime
            except OSError:
                continue
            info = fsops.read_json_object(path, _REPORT_MAX_BYTES)
            mode = None if info is None or "mode" not in info else str(info["mode"])
            info = info or {}
            ended = info.get("ended")
            found.append(Registration(entry, seen_at, str(info.get("host", "?")), as_count(info.get("pid")), mode,
                                      as_time(info.get("liveness_seconds")), as_time(info.get("started_at")),
                                      None if ended is None else str(ended)))
        return found

    # -- single files for people (status, list, show) ------------------------------------------

    def state_stat(self, name: str, *, failed: bool = False) -> os.stat_result | None:
        """The state file ``name``'s own status (root or ``failed/``; mtime: when it was written)."""
        try:
            return os.lstat(self.failed_state_path(name) if failed else self.state_path(name))
        except FileNotFoundError:
            return None

    def read_claim_entry(self, entry: str) -> ClaimRecord:
        """What the claim ``entry`` of ``in_progress/`` says (defaults for what it does not)."""
        return claim_record(fsops.read_json_object(self.claim_entry_path(entry), _REPORT_MAX_BYTES) or {})

    def read_hint(self, name: str) -> ClaimRecord:
        """The attempts, errors and retries a hint carries (none for an empty one)."""
        return claim_record(fsops.read_json_object(self.hint_path(name), _CLAIM_MAX_BYTES) or {})

    def claim_stamp(self, name: str, token: str) -> float | None:
        """The mtime of the claim ``NAME@TOKEN`` (before it is rewritten: when its hint was due)."""
        try:
            return os.lstat(self.claim_path(name, token)).st_mtime
        except FileNotFoundError:
            return None

    def remove_settled(self, name: str) -> None:
        """Delete a settled state: its file (root or ``failed/``), its done marker or reason, its ticket."""
        for path in (self.state_path(name), self.failed_state_path(name), self.done_path(name),
                     self.reason_path(name), self.ticket_path(name)):
            fsops.unlink_quiet(path)

    # -- upkeep ----------------------------------------------------------------------------

    def state_names(self) -> list[str]:
        """The state files in the root (whatever their markers say)."""
        return [name for name in fsops.listdir_quiet(self.root) if codec.is_state_file_name(name)]

    def forget_outcomes(self) -> None:
        """Remove every hint, claim, done marker, registration, ticket and reason; failed files
        go back to the root (unless the root has a file of that name)."""
        for folder in (self.in_progress, self.done, self.pending, self.workers, self.admitted):
            fsops.remove_all(folder)
        for entry in fsops.listdir_quiet(self.failed):
            if entry.endswith(REASON_SUFFIX):
                fsops.unlink_quiet(os.path.join(self.failed, entry))
            elif not self.has_state(entry):
                os.rename(self.failed_state_path(entry), self.state_path(entry))

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
        path = os.path.join(self.tmp, f"clock-probe-{socket.gethostname()}-{os.getpid()}")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
        os.utime(path)
        return os.stat(path).st_mtime

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
        path = self.failed_state_path(name) if status is Status.FAILED else self.state_path(name)
        if not self.write_new(path, state_file):
            try:
                same = fsops.read_regular(path, len(state_file)) == state_file
            except (OSError, CodecError):
                same = False
            if not same:
                return False
        if status is Status.DONE:
            self.write_new(self.done_path(name),
                           ClaimRecord(worker, attempts, tuple(errors), token, claimed_at).encode())
        elif status is Status.FAILED:
            self.write_reason(name, reason or {"name": name, "code": "error", "message": "failed"})
        else:
            self.write_hint(name, not_before=not_before, attempts=attempts, errors=errors)
        return True
