"""Wake-ups on new files without busy polling: inotify where the kernel has it.

On filesystems that deliver no events (NFS for other hosts' writes, or a kernel
without inotify) ``wait`` simply sleeps for its timeout, so callers keep a slow poll.
"""

from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger(__name__)

try:  # inotify is Linux-only; elsewhere we fall back to polling.
    import inotify_simple
except ImportError:  # pragma: no cover - exercised only off Linux
    inotify_simple = None


class Watcher:
    """Collects the names created in a few folders and wakes a waiting worker.

    Safe to share between a worker's threads: one thread at a time reads the
    inotify descriptor (``inotify_simple`` refuses concurrent reads), the others
    wait on a condition that the reader signals when events arrive.
    """

    def __init__(self, folders: list[str]) -> None:
        self._names: dict[str, set[str]] = {folder: set() for folder in folders}
        self._by_wd: dict[int, str] = {}
        self._inotify = None
        #: Held by the one thread reading the inotify descriptor.
        self._reading = threading.Lock()
        #: Guards ``_names``; notified when a read brought events.
        self._arrived = threading.Condition()
        if inotify_simple is None:
            return
        flags = inotify_simple.flags
        try:
            self._inotify = inotify_simple.INotify(nonblocking=True)
            for folder in folders:
                # In the root only files written in place (cp, editors) raise events:
                # successors arrive there by rename from .doves-tmp, and a wake-up per
                # successor would cost more than the slow scan that finds moved-in files.
                mask = flags.CLOSE_WRITE
                if os.path.basename(folder) == "pending":
                    mask |= flags.CREATE | flags.MOVED_TO | flags.ATTRIB
                self._by_wd[self._inotify.add_watch(folder, mask)] = folder
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
        with self._arrived:
            for event in events:
                folder = self._by_wd.get(event.wd)
                if folder is not None and event.name:
                    self._names[folder].add(event.name)
            if events:
                self._arrived.notify_all()
        return bool(events)

    def wait(self, timeout_seconds: float) -> None:
        """Block until something is created in a watched folder, or ``timeout_seconds``."""
        if timeout_seconds <= 0:
            return
        if self._inotify is None:
            time.sleep(timeout_seconds)
            return
        self._collect(timeout_seconds)

    def take_events(self, folder: str) -> bool:
        """Whether names arrived in ``folder`` since the last ``names(folder)``."""
        self._collect(0)
        with self._arrived:
            return bool(self._names.get(folder))

    def names(self, folder: str) -> list[str]:
        """The names that arrived in ``folder``, forgetting them."""
        with self._arrived:
            names = list(self._names.get(folder, ()))
            self._names[folder] = set()
        return names

    def close(self) -> None:
        if self._inotify is not None:
            try:
                self._inotify.close()
            except OSError:
                pass
            self._inotify = None
