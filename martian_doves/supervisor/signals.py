"""SIGTERM and SIGINT, for the supervisor and for each worker process.

Handlers only set flags (huey's rule): whatever a stop means (logging, terminating
processes, releasing claims) happens in the loops that read them.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from martian_doves.clock import Clock, SystemClock
from martian_doves.worker import Worker

#: Signals that ask for a stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: A second stop signal this soon after the first is the same stop, delivered twice.
SAME_SIGNAL_SECONDS = 0.3


class StopSignals:
    """The supervisor's stop requests: the first is a clean stop, a later one "stop now".

    One stop often arrives twice at once: ``timeout`` and service managers signal the
    process and then its whole group. A second signal within ``SAME_SIGNAL_SECONDS``
    of the first is that same stop; only a later one counts as a second.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        #: Stop requests counted so far (0: none, 1: stop cleanly, 2 or more: stop at once).
        self.count = 0
        self._first_at = 0.0

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler."""
        now = self._clock.monotonic()
        if self.count == 1 and now - self._first_at < SAME_SIGNAL_SECONDS:
            return
        if self.count == 0:
            self._first_at = now
        self.count += 1

    def request(self) -> None:
        """Ask for a stop from code (for embedding): a first call stops cleanly, a second at once."""
        self.count += 1

    @contextlib.contextmanager
    def installed(self) -> Iterator[socket.socket]:
        """Handle SIGTERM and SIGINT while in the block; yields a socket that becomes readable
        the moment a signal arrives (drain it with ``drain``), so a loop waiting on it wakes
        at once instead of at its next timeout.

        Outside the main thread (an embedding application) no handler can be installed:
        only ``request`` stops then. The previous handlers are restored on exit.
        """
        wakeup_read, wakeup_write = socket.socketpair()
        wakeup_read.setblocking(False)
        wakeup_write.setblocking(False)
        in_main = threading.current_thread() is threading.main_thread()
        previous: dict[int, Any] = {}
        old_wakeup = -1
        try:
            if in_main:
                for signum in STOP_SIGNALS:
                    previous[signum] = signal.signal(signum, self.handle)
                old_wakeup = signal.set_wakeup_fd(wakeup_write.fileno(), warn_on_full_buffer=False)
            yield wakeup_read
        finally:
            if in_main:
                signal.set_wakeup_fd(old_wakeup)
                for number, handler in previous.items():
                    signal.signal(number, handler)
            wakeup_read.close()
            wakeup_write.close()

    @staticmethod
    def drain(wakeup: socket.socket) -> None:
        """Empty the wake-up socket after it woke a wait."""
        try:
            while wakeup.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass


class StopRequest:
    """A worker process's SIGTERM/SIGINT handler: stops its worker, which then drains.

    The terminal sends Ctrl-C to the whole process group: a worker stops as for SIGTERM,
    and a second Ctrl-C is left to the supervisor, which kills at once.
    """

    def __init__(self) -> None:
        #: A stop was asked for (possibly before the worker existed).
        self.requested = False
        self._worker: Worker | None = None

    def install(self) -> None:
        """Make SIGTERM and SIGINT stop this process's worker (from the main thread)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.handle)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler."""
        self.requested = True
        if self._worker is not None:
            self._worker.stop()  # sets an Event: safe in a handler

    def attach(self, worker: Worker) -> None:
        """The worker to stop; stopped at once if the signal came while it was being built."""
        self._worker = worker
        if self.requested:
            worker.stop()
