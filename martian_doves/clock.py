"""Time as a parameter: the semaphore's phases and its skew guard are tested on fake clocks."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time (for phases and file timestamps), monotonic time (for intervals), sleep."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock, optionally offset: ``SystemClock(offset_seconds=2.5)`` runs 2.5 s fast.

    The offset exists so tests (and ``doves run --clock-offset-seconds``, hidden) can
    reproduce a host whose clock is skewed against the shared filesystem.
    """

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self.offset_seconds = offset_seconds

    def time(self) -> float:
        return time.time() + self.offset_seconds

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to; ``sleep`` advances it instantly.

    Thread-safe, so a worker and its heartbeat thread can share one.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            self._mono += seconds

    def set(self, now: float) -> None:
        """Jump the wall clock (as NTP might), leaving monotonic time alone."""
        with self._lock:
            self._now = now
