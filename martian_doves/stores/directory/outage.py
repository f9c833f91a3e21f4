"""A folder store's outages: a full disk, a used-up quota, a failing or read-only volume.

``ENOSPC``, ``EDQUOT``, ``EIO`` and ``EROFS`` on the store are faults of the host, not
of the worker: a call that meets one raises ``StoreUnavailable`` (the worker backs off
and tries again) after undoing what it had begun, and the outage is logged once when it
begins and once when it ends, per process, however many calls meet it.

While an outage lasts, a call that writes does not even start: a probe (a small file
with data in ``.doves-tmp/``) is written first, and the outage is over when the probe
succeeds. Reads and heartbeats (``utime`` needs no space) go on, so the claims in hand
keep their leases and none is taken over, lost or run twice.

How a reader knows (``doves status`` and the dashboard, which never write): each
worker that meets an outage stamps an empty marker ``.doves-tmp/outage-CODE`` (an
empty file needs no data block, and ``utime`` none at all) every time it meets it, and
removes it when its outage ends. A marker stamped recently says "a worker met this";
one left by a worker that died is stale within ``MARKER_FRESH_SECONDS`` and is
cleaned up with the other leftovers of ``.doves-tmp/``. What a reader sees itself
without writing (a read-only mount, no free block) is reported too.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from martian_doves.errors import StoreUnavailable
from martian_doves.stores.directory import fsops
from martian_doves.stores.directory.folders import Entry
from martian_doves.stores.directory.layout import Layout

log = logging.getLogger(__name__)

#: What each ``errno`` of an outage means, as a user reads it.
CAUSES = {
    errno.ENOSPC: "the store's disk is full",
    errno.EDQUOT: "the store's disk quota is used up",
    errno.EIO: "the store's disk reports input/output errors",
    errno.EROFS: "the store's file system is read-only",
}
#: A marker stamped this recently says a worker is in that outage now.
MARKER_FRESH_SECONDS = 30.0
#: Marker names: this prefix and the errno's code (``outage-ENOSPC``).
_MARKER_PREFIX = "outage-"
#: Bytes the probe writes: one page, what the smallest state file takes on most file systems.
_PROBE_BYTES = 4096


def outage_cause(error: BaseException) -> str | None:
    """What ``error`` means if it is an outage of the store (see ``CAUSES``); None otherwise."""
    return CAUSES.get(error.errno) if isinstance(error, OSError) and error.errno is not None else None


class FolderOutages:
    """One process's outages of one folder store, shared by its threads.

    Args:
        files: the store's layout (markers and probes go to its ``.doves-tmp/``).
    """

    def __init__(self, files: Layout) -> None:
        self.files = files
        self._lock = threading.Lock()
        #: When the current outage began (monotonic seconds); None while the store works.
        self._since: float | None = None
        #: The errno of the current outage.
        self._errno: int | None = None

    @contextlib.contextmanager
    def guard(self, what: str, *, writes: bool) -> Iterator[None]:
        """Run the block; an outage error in it becomes ``StoreUnavailable``.

        Args:
            what: names the operation in messages (``commit``, ``claim`` ...).
            writes: the block writes to the store: during an outage it starts only once a
                probe write succeeds (which ends the outage).

        Raises:
            StoreUnavailable: the block (or the probe) met an outage.
        """
        try:
            if writes and self._since is not None:
                self._probe()
            yield
        except OSError as e:
            if outage_cause(e) is None:
                raise
            raise self._met(what, e) from e

    def _probe(self) -> None:
        """Write a page and remove it; the outage is over if that works.

        Raises:
            OSError: it does not (still an outage).
        """
        probe = self.files.tmp.at(f"probe-{os.getpid()}-{threading.get_ident()}")
        fsops.unlink_quiet(probe)  # left by an earlier process of this pid
        fsops.write_tmp(probe, b"\0" * _PROBE_BYTES, durable=False)
        fsops.unlink_quiet(probe)
        self._over()

    def _met(self, what: str, error: OSError) -> StoreUnavailable:
        """Note that ``what`` met the outage ``error``: log if it begins, stamp its marker."""
        cause = CAUSES[error.errno or 0]
        with self._lock:
            known, self._errno = self._errno, error.errno
            if self._since is None:
                self._since = time.monotonic()
        if known is None:
            log.warning("%s is unavailable (%s: %s); backing off and retrying until it can be written again",
                        self.files.root, cause, error.strerror, extra={"action": "store_outage"})
        elif known != error.errno:
            log.warning("%s is still unavailable, now %s: %s", self.files.root, cause, error.strerror,
                        extra={"action": "store_outage"})
        else:
            log.debug("%s: %s still unavailable (%s)", what, self.files.root, cause)
        self._stamp(error.errno or 0)
        return StoreUnavailable(f"{what}: {self.files.root} is unavailable: {cause} ({error.strerror})")

    def _over(self) -> None:
        with self._lock:
            since, code, self._since, self._errno = self._since, self._errno, None, None
        if since is None:
            return
        if code is not None:
            fsops.unlink_quiet(self._marker(code))
        log.warning("%s is available again after %.1f s", self.files.root, time.monotonic() - since,
                    extra={"action": "store_outage_over"})

    def _marker(self, code: int) -> Entry:
        return self.files.tmp.at(_MARKER_PREFIX + errno.errorcode.get(code, str(code)))

    def _stamp(self, code: int) -> None:
        """Stamp the outage's marker now, creating it if needed; best effort (a read-only
        file system takes none: readers see that one themselves)."""
        marker = self._marker(code)
        with contextlib.suppress(OSError):
            if not fsops.utime(marker):
                fsops.create_empty(marker)


def describe(files: Layout, now: float) -> str | None:
    """What ``doves status`` says of an outage of the store at ``files``, without writing anything.

    The markers workers stamped within ``MARKER_FRESH_SECONDS`` (of ``now``, epoch
    seconds), and what the file system's own counters show (read-only, no free block).

    Returns:
        One line, or None when nothing says the store is in an outage.
    """
    seen = []
    for name, stamped in fsops.stamped_entries(files.tmp):
        code = getattr(errno, name[len(_MARKER_PREFIX):], None) if name.startswith(_MARKER_PREFIX) else None
        if isinstance(code, int) and code in CAUSES and now - stamped <= MARKER_FRESH_SECONDS:
            seen.append(f"{CAUSES[code]} (workers met it {max(0.0, now - stamped):.0f} s ago)")
    try:
        fs = os.fstatvfs(files.top.fd)
    except OSError:
        fs = None
    if fs is not None and fs.f_flag & os.ST_RDONLY:
        seen.append(CAUSES[errno.EROFS])
    elif fs is not None and fs.f_blocks and not fs.f_bavail and not any(CAUSES[errno.ENOSPC] in s for s in seen):
        seen.append(f"{CAUSES[errno.ENOSPC]} (no free block left)")
    if not seen:
        return None
    return "; ".join(seen) + ": workers wait and retry until it can be written again"


class _Engine(Protocol):
    outages: FolderOutages


class _Guarded(Protocol):
    leases: _Engine


S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])

#: The store methods ridden through an outage, and whether each writes (see ``FolderOutages.guard``).
#: (Not ``submit``: a command that meets a full disk says so in its one error line and ends.)
GUARDED_METHODS = {
    "register_worker": True, "claim": True, "commit": True, "retry_later": True, "release": True,
    "fail": True, "take_event": True, "children": True, "worker_exited": True,
    "heartbeat": False, "unregister_worker": False, "is_finished": False,
}


def _guarded(name: str, writes: bool, method: F) -> F:
    @functools.wraps(method)
    def call(self: _Guarded, *args: Any, **kwargs: Any) -> Any:
        with self.leases.outages.guard(name, writes=writes):
            return method(self, *args, **kwargs)
    return call  # type: ignore[return-value]


def rides_out_outages(cls: type[S]) -> type[S]:
    """Class decorator for a folder store over a ``LeaseEngine`` (``leases``): each of its
    ``GUARDED_METHODS`` turns an outage into ``StoreUnavailable`` (see ``FolderOutages``)."""
    for name, writes in GUARDED_METHODS.items():
        method = getattr(cls, name, None)
        if method is not None:
            setattr(cls, name, _guarded(name, writes, method))
    return cls
