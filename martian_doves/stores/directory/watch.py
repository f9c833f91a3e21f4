"""Wake-ups on new files without busy polling: inotify where the kernel has it.

On filesystems that deliver no events (NFS for other hosts' writes, or a kernel
without inotify) ``wait`` simply sleeps for its timeout, so callers keep a slow poll.

A file renamed into a watched folder (``mv``) is reported like one written in place.
The store's own renames (a successor or a submitted state moved in from the store's
temporary folder) are told apart by their inotify cookie: the kernel queues a rename's
``IN_MOVED_FROM`` and ``IN_MOVED_TO`` together under one cookie, so a move whose source
is the temporary folder is dropped as it is read, and nothing of it is kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

try:  # inotify is Linux-only; elsewhere we fall back to polling.
    import inotify_simple
except ImportError:  # pragma: no cover - exercised only off Linux
    inotify_simple = None


class Watcher:
    """Wakes a waiting worker when files arrive in a few folders, and collects some names.

    Safe to share between a worker's threads: one thread at a time reads the
    inotify descriptor (``inotify_simple`` refuses concurrent reads), the others
    wait on a condition that the reader signals when events arrive.

    Args:
        arrivals: folders where any new entry (created, moved in, restamped) wakes a waiter.
        written: folders where files written in place or moved in wake a waiter; the names
            of those files are kept for ``names``.
        own: folders whose files, renamed into a ``written`` folder, are the store's own
            (neither reported nor waking anyone).
    """

    def __init__(self, *, arrivals: Sequence[str] = (), written: Sequence[str] = (),
                 own: Sequence[str] = ()) -> None:
        #: Names written (False) or moved (True) into each of the ``written`` folders, until
        #: ``names`` takes them.
        self._names: dict[str, dict[str, bool]] = {folder: {} for folder in written}
        self._by_wd: dict[int, str] = {}
        self._own_wds: set[int] = set()
        #: Cookies of renames out of an ``own`` folder, in the last two reads: a rename's two
        #: events are queued together, so older ones can no longer be matched.
        self._own_cookies: set[int] = set()
        self._inotify = None
        #: Held by the one thread reading the inotify descriptor.
        self._reading = threading.Lock()
        #: Guards ``_names``; notified when a read brought events.
        self._arrived = threading.Condition()
        if inotify_simple is None:
            return
        flags = inotify_simple.flags
        # A watched folder that was replaced by a link since the store verified it is not followed.
        guard = flags.DONT_FOLLOW | flags.ONLYDIR
        try:
            self._inotify = inotify_simple.INotify(nonblocking=True)
            for folder in arrivals:
                mask = flags.CLOSE_WRITE | flags.CREATE | flags.MOVED_TO | flags.ATTRIB | guard
                self._by_wd[self._inotify.add_watch(folder, mask)] = folder
            for folder in written:
                # Files written in place (cp, editors) or moved in (mv): both are complete
                # when the event comes. Renames from an ``own`` folder are dropped (see _collect).
                self._by_wd[self._inotify.add_watch(folder, flags.CLOSE_WRITE | flags.MOVED_TO | guard)] = folder
            for folder in own:
                wd = self._inotify.add_watch(folder, flags.MOVED_FROM | guard)
                self._by_wd[wd] = folder
                self._own_wds.add(wd)
        except OSError as e:
            log.info("no inotify (%s); polling instead", e)
            self.close()

    @property
    def active(self) -> bool:
        return self._inotify is not None

    def _collect(self, timeout_seconds: float) -> bool:
        """Read pending events (waiting up to ``timeout_seconds``); True if any arrived.

        Only one thread reads at a time; a thread that finds the descriptor busy waits
        for the reader's events instead (or returns at once for a zero timeout).
        """
        if self._inotify is None:
            return False
        if not self._reading.acquire(blocking=False):
            if timeout_seconds > 0:
                with self._arrived:
                    self._arrived.wait(timeout_seconds)
            return False
        try:
            inotify = self._inotify
            if inotify is None:
                return False
            try:
                events = inotify.read(timeout=int(timeout_seconds * 1000), read_delay=None)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return False
        finally:
            self._reading.release()
        moved_to = inotify_simple.flags.MOVED_TO if inotify_simple is not None else 0
        with self._arrived:
            cookies = {event.cookie for event in events if event.wd in self._own_wds}
            recent = self._own_cookies | cookies
            self._own_cookies = cookies
            arrived = False
            for event in events:
                if event.wd in self._own_wds or (event.mask & moved_to and event.cookie in recent):
                    continue  # the store's own rename
                arrived = True
                folder = self._by_wd.get(event.wd)
                if folder in self._names and event.name:
                    names = self._names[folder]
                    names[event.name] = names.get(event.name, False) or bool(event.mask & moved_to)
            if arrived:
                self._arrived.notify_all()
        return arrived

    def wait(self, timeout_seconds: float) -> None:
        """Block until something is created in a watched folder, or ``timeout_seconds``."""
        if timeout_seconds <= 0:
            return
        if self._inotify is None:
            time.sleep(timeout_seconds)
            return
        self._collect(timeout_seconds)

    def take_events(self, folder: str) -> bool:
        """Whether names arrived in ``folder`` (one of ``written``) since the last ``names(folder)``."""
        self._collect(0)
        with self._arrived:
            return bool(self._names.get(folder))

    def names(self, folder: str) -> dict[str, bool]:
        """The names written in ``folder`` (one of ``written``), each True if it was moved in;
        forgetting them."""
        with self._arrived:
            names = self._names.get(folder)
            if not names:
                return {}
            self._names[folder] = {}
        return names

    def close(self) -> None:
        """Stop watching; ``wait`` then sleeps for its timeout."""
        if self._inotify is not None:
            try:
                self._inotify.close()
            except OSError:
                pass
            self._inotify = None
