"""One status sampler for every view of a store: ``doves run``'s progress and metrics, the dashboard.

Counting a store can be slow (a million files in ``done/``, a big table), so one
thread reads ``store.status()`` (and, for the dashboard, the counts by state name)
every ``every_seconds``, and never more than a tenth of the time
(``next_status_after``); every reader (a progress line, a Prometheus scrape, a web
page) takes the last ``Snapshot`` instead of asking the store. ``Sampler.problem``
says when the samples cannot be trusted: the last one failed, or one hangs.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Callable

from martian_doves.clock import Clock, SystemClock
from martian_doves.errors import check_seconds
from martian_doves.model import JSONDict, Status, StatusReport
from martian_doves.report import RateMeter, status_dict
from martian_doves.stores.base import InspectableStore, Store

log = logging.getLogger(__name__)

#: How many (time, finished) samples a snapshot keeps: 10 minutes at the dashboard's default refresh.
HISTORY_SAMPLES = 300
#: A sample running longer than this (or ten refreshes, or three times the last one, if longer)
#: means the store does not answer (a hung mount, a lost server): the samples are stale.
HANG_SECONDS = 60.0

#: How much lower the sampler thread's CPU priority is than its process's (Linux nice steps: at
#: +10, a busy worker of nice 0 gets about nine tenths of a core they share).
SAMPLER_NICENESS = 10

#: Counts by state name: state name → status → how many.
ByState = dict[str, dict[Status, int]]


def _yield_to_workers() -> None:
    """Lower the calling thread's CPU priority by ``SAMPLER_NICENESS``.

    Counting a large store is a run's least urgent work: a status of a million pending
    takes a core for a second or more, and its first one comes as the workers start, when
    it would hold back their first commits. On Linux each thread has its own nice value;
    elsewhere the call would lower the whole process (the supervisor, the dashboard's server),
    so it is not made there.
    """
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError):
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + SAMPLER_NICENESS))


def next_status_after(every_seconds: float, took_seconds: float) -> float:
    """Seconds to wait before the next ``status()`` sample: ``every_seconds``, or longer
    when counting took a while (a million files in done/, a big table), so a store is
    never busy counting for more than a tenth of the time."""
    return max(every_seconds, 9 * took_seconds)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What the sampler saw last; readers take one of these, never the store."""

    #: The last status read (None before the first one succeeded).
    report: StatusReport | None = None
    #: When ``report`` was read, epoch seconds.
    sampled_at: float | None = None
    #: Transitions (done + failed) per second over the last samples.
    rate: float = 0.0
    #: (epoch seconds, done + failed) of the last samples, oldest first.
    series: tuple[tuple[float, int], ...] = ()
    #: Why the last sample failed, or None if it did not.
    error: str | None = None
    #: Counts by state name, read with ``report`` (None unless the sampler reads them).
    by_state: ByState | None = None

    def as_dict(self, refresh_seconds: float, problem: str | None = None) -> JSONDict:
        """The dashboard's ``/api/status`` object (without status fields before the first sample).

        Args:
            problem: why the samples cannot be trusted (``Sampler.problem``); ``error`` otherwise.
        """
        document = status_dict(self.report) if self.report is not None else {}
        return {**document, "sampled_at": self.sampled_at, "rate": round(self.rate, 3),
                "series": [list(point) for point in self.series], "error": problem or self.error,
                "refresh_seconds": refresh_seconds}


class Sampler:
    """Reads a store's status when asked (``sample``) or, once started, from a thread of its own.

    Args:
        store: the store to count; it must allow calls from another thread (all stores do).
        every_seconds: time between two samples when counting is quick.
        option: how the user set ``every_seconds``, for the error message if it is unusable.
        history: how many (time, finished) points ``Snapshot.series`` keeps.
        on_sample: called with each report read successfully (in the sampling thread).
        clock: time source for the rate and the samples' times.
        by_state: also read the counts by state name with each status, if the store can
            (``InspectableStore``); the time it takes counts in the tenth.

    Raises:
        ConfigError: ``every_seconds`` is not a usable number of seconds.
    """

    def __init__(self, store: Store, every_seconds: float, *, option: str = "the status interval",
                 history: int = HISTORY_SAMPLES, on_sample: Callable[[StatusReport], None] | None = None,
                 clock: Clock | None = None, by_state: bool = False) -> None:
        check_seconds({option: every_seconds})
        #: Time between two samples when counting is quick.
        self.every_seconds = every_seconds
        self._store = store
        self._on_sample = on_sample
        self._clock = clock or SystemClock()
        self._meter = RateMeter(window_seconds=max(10.0, 5 * every_seconds))
        self._series: collections.deque[tuple[float, int]] = collections.deque(maxlen=history)
        self._snapshot = Snapshot()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Where the counts by state name come from, if they are read.
        self._counter = store if by_state and isinstance(store, InspectableStore) else None
        #: When the sample under way started (monotonic), None between samples.
        self._sampling_since: float | None = None
        #: How long the last sample took, seconds.
        self._took_seconds = 0.0
        #: Set once a sample was attempted (it succeeded or failed).
        self._attempted = threading.Event()

    @property
    def snapshot(self) -> Snapshot:
        """The last sample (an empty ``Snapshot`` before the first)."""
        with self._lock:
            return self._snapshot

    def latest(self) -> tuple[StatusReport | None, float]:
        """The last report and its time, as ``metrics.StoreCollector`` wants them."""
        snapshot = self.snapshot
        return snapshot.report, snapshot.sampled_at or 0.0

    def problem(self) -> str | None:
        """Why the last sample cannot be trusted, one line; None while samples arrive and succeed.

        The last sample failed (the store cannot be read); none has succeeded yet; or the
        sample under way has run longer than ``HANG_SECONDS`` (or ten refreshes, or three
        times the last sample, whichever is longest): the store does not answer.
        """
        snapshot = self.snapshot
        since = self._sampling_since
        if since is not None:
            running = self._clock.monotonic() - since
            if running > max(HANG_SECONDS, 10 * self.every_seconds, 3 * self._took_seconds):
                return f"the store has not answered for {running:.0f} s (status sample still running)"
        if snapshot.error is not None:
            return snapshot.error
        if snapshot.report is None:
            return "no status sample yet"
        return None

    def document(self) -> JSONDict:
        """The last sample as ``/api/status`` serves it (``Snapshot.as_dict``, with ``problem``)."""
        problem = self.problem()
        return self.snapshot.as_dict(self.every_seconds, None if problem == "no status sample yet" else problem)

    def wait_for_first(self, timeout_seconds: float) -> bool:
        """Wait until a first sample was attempted (or ``timeout_seconds``); whether one was."""
        return self._attempted.wait(timeout_seconds)

    def _read(self) -> tuple[StatusReport, ByState | None]:
        started = self._clock.monotonic()
        self._sampling_since = started
        try:
            report = self._store.status()
            by_state = self._counter.counts_by_state() if self._counter is not None else None
            return report, by_state
        finally:
            self._sampling_since = None
            self._took_seconds = self._clock.monotonic() - started
            self._attempted.set()

    def sample(self) -> StatusReport | None:
        """Read the store's status once; the report, or None if reading failed (logged and kept).

        A store that stays unreadable is logged once, not at every sample, and once
        more when it can be read again.
        """
        try:
            report, by_state = self._read()
        except Exception as e:
            error = " ".join((str(e) or type(e).__name__).split())
            if error != self.snapshot.error:
                log.warning("cannot read the store's status: %s", error, extra={"action": "status"})
            with self._lock:
                self._snapshot = dataclasses.replace(self._snapshot, error=error)
            return None
        now, finished = self._clock.time(), report.done + report.failed
        self._series.append((now, finished))
        rate = self._meter.add(self._clock.monotonic(), finished)
        if self.snapshot.error is not None:
            log.info("the store's status can be read again", extra={"action": "status"})
        with self._lock:
            self._snapshot = Snapshot(report, now, rate, tuple(self._series), by_state=by_state)
        if self._on_sample is not None:
            try:
                self._on_sample(report)
            except Exception:  # a broken display must not stop the samples (metrics, dashboard)
                log.exception("showing a status sample failed", extra={"action": "status"})
        return report

    def _run(self) -> None:
        _yield_to_workers()
        while True:
            started = self._clock.monotonic()
            self.sample()
            took = self._clock.monotonic() - started
            if self._stop.wait(next_status_after(self.every_seconds, took)):
                return

    def start(self) -> None:
        """Sample now and then every ``every_seconds`` (or longer) in a thread, until ``stop``."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="doves-status-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, if started; a status call that hangs does not hold the caller for long."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)  # a daemon thread: a hung count does not hold the exit
            self._thread = None
