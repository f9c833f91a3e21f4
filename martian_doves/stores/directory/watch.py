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

import contextlib
import logging
import threading
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

#: How long ``wait`` sleeps while another thread adds the watches (events are not seen yet).
STARTING_POLL_SECONDS = 0.05

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
        self._folders = (tuple(arrivals), tuple(written), tuple(own))
        #: Held while the watches are added; set once they were (or could not be).
        self._start_lock = threading.Lock()
        self._started = threading.Event()
        #: Held by the one thread reading the inotify descriptor.
        self._reading = threading.Lock()
        #: Guards ``_names``; notified when a read brought events.
        self._arrived = threading.Condition()

    def start(self, *, wait: bool = True) -> bool:
        """Add the watches, unless done already; whether they are in place.

        Done on first use, not when the store opens: a process that opens a store without
        waiting on it (the supervisor, ``doves submit``) never pays for it, and it costs
        a while on a large folder (the kernel marks each of its entries it has cached: a
        fifth of a second at a million). Files that arrived before are found by the
        listings any caller makes after starting to watch.

        Args:
            wait: if another thread is adding them, wait for it (else answer False at once).
        """
        if not self._started.is_set():
            if not self._start_lock.acquire(blocking=wait):
                return False
            try:
                if not self._started.is_set():
                    self._add_watches()
                    self._started.set()
            finally:
                self._start_lock.release()
        return self._inotify is not None

    def start_in_background(self) -> None:
        """``start`` in a thread of its own: a worker claims its first states meanwhile."""
        threading.Thread(target=self.start, name="doves-watch-start", daemon=True).start()

    def _add_watches(self) -> None:
        if inotify_simple is None:
            return
        arrivals, written, own = self._folders
        flags = inotify_simple.flags
        # A watched folder that was replaced by a link since the store verified it is not followed.
        guard = flags.DONT_FOLLOW | flags.ONLYDIR
        inotify = None
        try:
            inotify = inotify_simple.INotify(nonblocking=True)  # refused past the user's instance limit
            for folder in arrivals:
                mask = flags.CLOSE_WRITE | flags.CREATE | flags.MOVED_TO | flags.ATTRIB | guard
                self._by_wd[inotify.add_watch(folder, mask)] = folder
            for folder in written:
                # Files written in place (cp, editors) or moved in (mv): both are complete
                # when the event comes. Renames from an ``own`` folder are dropped (see _collect).
                self._by_wd[inotify.add_watch(folder, flags.CLOSE_WRITE | flags.MOVED_TO | guard)] = folder
            for folder in own:
                wd = inotify.add_watch(folder, flags.MOVED_FROM | guard)
                self._by_wd[wd] = folder
                self._own_wds.add(wd)
        except OSError as e:
            log.info("no inotify (%s); polling instead", e)
            if inotify is not None:
                with contextlib.suppress(OSError):
                    inotify.close()
            return
        self._inotify = inotify

    @property
    def active(self) -> bool:
        """Whether inotify wakes ``wait`` (the watches are added now if they were not)."""
        return self.start()

    def _collect(self, timeout_seconds: float) -> bool:
        """Read pending events (waiting up to ``timeout_seconds``); True if any arrived.

        Only one thread reads at a time; a thread that finds the descriptor busy waits
        for the reader's events instead (or returns at once for a zero timeout).
        """
        if not self.start(wait=False):
            if timeout_seconds > 0:  # watches being added (or none to be had): a short poll
                time.sleep(min(timeout_seconds, STARTING_POLL_SECONDS if not self._started.is_set()
                               else timeout_seconds))
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
        if timeout_seconds > 0:
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
        with self._start_lock:  # not while the watches are being added: they would be left open
            self._started.set()
        if self._inotify is not None:
            try:
                self._inotify.close()
            except OSError:
                pass
            self._inotify = None
