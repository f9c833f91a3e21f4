"""How state files that arrive in a store's root without ``doves submit`` become runnable.

Files copied in by hand (the seed's ``docker cp``), moved in, or orphaned by a
crashed commit have no hint. A root scan (on start, on inotify events, every
``scan_seconds``) admits each once it is old enough that its writer is done, and
quarantines entries that can never run. Exactly one worker admits a file: the one
that hard-links it into ``.doves-admitted/``. Mixed into both directory stores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from martian_doves import codec
from martian_doves.clock import Clock
from martian_doves.errors import UnsafeName
from martian_doves.model import JSONDict
from martian_doves.stores import fsops
from martian_doves.stores.fsops import REASON_SUFFIX
from martian_doves.stores.watch import Watcher

if TYPE_CHECKING:
    from martian_doves.config import DirectoryOptions

log = logging.getLogger("martian_doves.stores.lease")


def _safe_failed_name(name: str) -> str:
    try:
        codec.check_name(name)
        return name
    except UnsafeName:
        cleaned = "".join(ch if ch.isprintable() and ch not in "/\\" else "_" for ch in name).lstrip(".")
        # Derived from the name, not random: two workers racing to quarantine the same
        # entry then write the same reason (exclusively), not one each.
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        return f"unsafe-name-{digest}-{cleaned[:80]}"


class RootAdmission:
    """Paths of a directory store, and admission and quarantine of what arrives in its root."""

    layout: fsops.Layout
    options: DirectoryOptions
    clock: Clock
    _filesystem_time: Callable[[], float]
    _admission_lock: threading.RLock
    #: Root entries already admitted or quarantined by this process.
    _known: set[str]
    #: Root entries seen but too young to admit yet.
    _deferred: set[str]
    _next_root_scan: float
    _next_deferred_check: float
    _watcher: Watcher

    def _create_hint(self, name: str, data: bytes = b"", delay_seconds: float = 0.0) -> bool:
        raise NotImplementedError

    # -- paths -----------------------------------------------------------------------

    def _state_path(self, name: str) -> str:
        return os.path.join(self.layout.root, name)

    def _done_path(self, name: str) -> str:
        return os.path.join(self.layout.done, name)

    def _hint_path(self, name: str) -> str:
        return os.path.join(self.layout.pending, name)

    def _reason_path(self, name: str) -> str:
        return os.path.join(self.layout.failed, name + REASON_SUFFIX)

    def _marker_exists(self, name: str) -> bool:
        # A settled state does not move on by itself, so done/failed answer at once (the
        # common case when a fresh worker scans a large store). Otherwise look in the
        # direction states move (pending → in_progress → done/failed), each look taken
        # after the one before, so a concurrent move cannot slip past; a move backwards
        # (release) is caught by O_EXCL. A listing of in_progress/ taken before the look at
        # the hint would miss a claim made in between, and the state would run twice.
        if os.path.lexists(self._done_path(name)) or os.path.lexists(self._reason_path(name)):
            return True
        return (
            os.path.lexists(self._hint_path(name))
            or name in self._claimed_names()
            or os.path.lexists(self._done_path(name))
            or os.path.lexists(self._reason_path(name))
        )

    def _claimed_names(self) -> set[str]:
        return {fsops.split_claim(entry)[0] for entry in fsops.listdir_quiet(self.layout.in_progress)}

    def _admit(self, names: Iterable[str]) -> int:
        """Create hints for root files that have none (copied in by hand, or orphaned)."""
        now = self._filesystem_time()  # a file's age by the clock that stamped it
        admitted = 0
        for name in names:
            if name in self._known or name.startswith(".") or not codec.is_state_file_name(name):
                # Known meanwhile (e.g. a successor this worker re-committed after a
                # takeover): no longer waiting for admission, or is_finished never is.
                self._deferred.discard(name)
                continue
            path = self._state_path(name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                self._deferred.discard(name)
                continue
            young = 0 <= now - info.st_mtime < self.options.admission_grace_seconds
            if young and not (os.path.lexists(self._done_path(name)) or os.path.lexists(self._reason_path(name))):
                self._deferred.add(name)  # its writer may still be busy, or mid-commit
                continue
            self._deferred.discard(name)
            if not young and not self._marker_exists(name):
                try:
                    codec.check_name(name)
                except UnsafeName as e:
                    self._quarantine(name, e.code, e.message)
                    continue
                if self._take_admission(name, now) and self._create_hint(name):
                    admitted += 1
            elif not young and os.path.lexists(os.path.join(self.layout.failed, name)):
                # A failed state's file is in failed/, so this is a new copy (a fixed file?):
                # it never runs by itself, and silence would leave the user guessing.
                log.warning("%s is in the folder again, but a state of that name failed: `doves retry STORE %s` "
                            "runs this new file", name, name, extra={"action": "admit", "state_name": name})
            self._known.add(name)
        if admitted:
            log.info("admitted %d state file(s) found in %s", admitted, self.layout.root,
                     extra={"action": "admit"})
        return admitted

    def _take_admission(self, name: str, now: float) -> bool:
        """Become the one worker that admits ``name``: hard-link it into ``.doves-admitted/``.

        Checking for markers and then creating a hint is not enough on its own: between
        the two, another worker may admit the file and a third claim it, and the hint
        would make it run twice. The link succeeds for one worker only. A ticket whose
        admitter died before creating the hint (old, and still no marker) is taken back.
        """
        ticket = os.path.join(self.layout.admitted, name)
        for _ in range(2):
            try:
                os.link(self._state_path(name), ticket, follow_symlinks=False)
                return True
            except FileExistsError:
                try:
                    age = now - os.lstat(ticket).st_ctime
                except FileNotFoundError:
                    continue
                if age > self.options.lease_seconds and not self._marker_exists(name):
                    fsops.unlink_quiet(ticket)
                    continue
                return False
            except FileNotFoundError:
                return False  # the file went away meanwhile
            except OSError:
                return True  # cannot be linked (a directory): its claim will quarantine it
        return False

    def _scan_root(self) -> None:
        with self._admission_lock:
            self._admit(fsops.listdir_quiet(self.layout.root))
            self._next_root_scan = self.clock.monotonic() + self.options.scan_seconds

    # -- quarantine and failure -----------------------------------------------------------

    def _write_reason(self, failed_name: str, reason: JSONDict) -> None:
        try:
            data = json.dumps(reason, indent=2, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            # A file name that is not UTF-8 (surrogate escapes from listdir): \u-escape it.
            data = json.dumps(reason, indent=2).encode()
        fsops.write_new(self.layout, self._reason_path(failed_name), data, durable=self.options.durable)

    def _quarantine(self, name: str, code: str, message: str) -> None:
        """Move an unusable root entry into failed/ with a reason; never read it again."""
        failed_name = _safe_failed_name(name)
        self._write_reason(failed_name, {
            "name": name, "code": code, "message": message, "traceback": None,
            "attempts": 0, "errors": [], "failed_at": self.clock.time(),
        })
        try:
            os.rename(self._state_path(name), os.path.join(self.layout.failed, failed_name))
        except FileNotFoundError:
            pass
        fsops.unlink_quiet(self._hint_path(name))
        self._known.add(name)
        log.warning("quarantined %r: %s", name, message, extra={"action": "quarantine", "code": code})

    def _maintain(self) -> None:
        with self._admission_lock:
            mono = self.clock.monotonic()
            if self._watcher.take_events(self.layout.root):
                self._admit(self._watcher.names(self.layout.root))
            if mono >= self._next_root_scan:
                self._scan_root()
            elif self._deferred and mono >= self._next_deferred_check:
                # Young files are looked at again only once they may have come of age.
                self._next_deferred_check = mono + max(0.05, self.options.admission_grace_seconds / 2)
                self._admit(list(self._deferred))
