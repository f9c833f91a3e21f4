"""The worker loop: claim → tick → commit, one testable ``step`` at a time.

``Worker.step()`` does one round and returns what happened; ``run()`` only loops it
on ``concurrency`` threads, keeps leases alive from a heartbeat thread and stops in
the order dramatiq and procrastinate taught: stop claiming, let in-flight ticks
finish within a grace period, release what is left, unregister.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import TypeVar

from martian_doves import steps
from martian_doves.clock import Clock, SystemClock
from martian_doves.config import WorkerOptions
from martian_doves.errors import (
    BadReturn,
    ClaimLost,
    CodecError,
    InvalidPayload,
    Retry,
    RetryLimit,
    StoreUnavailable,
    TickFailed,
    TickTimeout,
    UnknownState,
    WaitTimedOut,
)
from martian_doves.logs import ContextAdapter, ticking
from martian_doves.model import JOIN_STATE, WAIT_STATE, Claim, Failure, Successor, with_error
from martian_doves.registry import Registry
from martian_doves.steps import Event, EventHook, NotYet, StepResult
from martian_doves.stores.base import BatchCommitStore, Store
from martian_doves.text import MAX_ERROR_CHARS, MAX_TRACEBACK_CHARS, clip, describe_error, one_line, storable_text

log = logging.getLogger(__name__)

#: Longest pause between two tries of a store that is unavailable (an outage).
_OUTAGE_MAX_DELAY_SECONDS = 5.0
#: With ``prefetch`` left to adapt, on a store that commits a batch at once: a tick faster than
#: this doubles the next request (up to ``MAX_ADAPTIVE_PREFETCH``), a slower one brings it back to 1.
#: A batch is held by one worker until it has run, so it pays only while ticks are short: then
#: one claim and one commit round trip (and one durable write) serve many transitions.
FAST_TICK_SECONDS = 0.005
MAX_ADAPTIVE_PREFETCH = 64


def next_prefetch(current: int, seconds_per_tick: float) -> int:
    """The batch to ask for next when ``prefetch`` adapts, after ticks of ``seconds_per_tick`` each."""
    return min(MAX_ADAPTIVE_PREFETCH, current * 2) if seconds_per_tick < FAST_TICK_SECONDS else 1


T = TypeVar("T")


class _Settled:
    """What ``Worker._tick`` returns when the tick's outcome is written already: nothing to commit."""


SETTLED = _Settled()


class Worker:
    """Runs ticks of the states it claims from ``store`` until stopped or finished."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        options: WorkerOptions | None = None,
        *,
        clock: Clock | None = None,
        hooks: list[EventHook] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        # Heartbeats fitted to this store's lease, or a ConfigError if they cannot keep it.
        self.options = (options or WorkerOptions()).validate().fitted_to(store.lease_seconds)
        self.clock = clock or SystemClock()
        self.hooks = list(hooks or [])
        self.log = ContextAdapter(log, {"worker": self.options.name})
        self.totals = StepResult()
        self._stopping = threading.Event()
        #: Set on a tick timeout: stopping without waiting for in-flight ticks.
        self._abandon = threading.Event()
        #: Claims this process holds: name -> (claim, monotonic time its tick started, or
        #: None while it waits its turn in a claimed batch).
        self._held: dict[str, tuple[Claim, float | None]] = {}
        self._held_lock = threading.Lock()
        self._busy_threads = 0
        #: Set when a loop thread died of an error: ``run`` then returned without finishing.
        self.crashed = False
        #: Claims (name, token) whose outcome is being written: a heartbeat that finds one gone
        #: met the commit itself, not a takeover (the commit reports a real loss: ``ClaimLost``).
        self._settling: set[tuple[str, str]] = set()
        #: How many states the next claim asks for when ``prefetch`` adapts (``_prefetch``).
        self._adaptive_prefetch = 1
        #: The states this worker claims: those it has machines for (None: all, failing unknown ones).
        self._states: frozenset[str] | None = None if self.options.fail_unknown_states \
            else frozenset(registry.names())

    @property
    def name(self) -> str:
        return self.options.name

    # -- one step ------------------------------------------------------------------

    def step(self, limit: int | None = None) -> StepResult:
        """Claim up to ``limit`` states and run each (and, if chaining, its lineage).

        Returns:
            Counts of what happened; ``claimed == 0`` means there was nothing to do.
        """
        result = StepResult()
        claims = self.store.claim(self.name, limit or self._prefetch(), self._states)
        for claim in claims:
            self._hold(claim, running=False)  # heartbeats keep the batch alive while it waits its turn
        if len(claims) > 1 and isinstance(self.store, BatchCommitStore):
            self._run_together(claims, result)
            claims = []
        for index, claim in enumerate(claims):
            if self._stopping.is_set():
                for rest in claims[index:]:
                    self._release(rest)
                break
            self._run_lineage(claim, result)
        with self._held_lock:
            self.totals.add(result)
        return result

    def _prefetch(self) -> int:
        if self.options.prefetch is not None:
            return self.options.prefetch
        return self._adaptive_prefetch if isinstance(self.store, BatchCommitStore) else 1

    def _timed_ticks(self, count: int, started: float) -> None:
        """Adapt the next batch (``prefetch`` unset) to how long the last ``count`` ticks took."""
        if count:
            # Threads race here harmlessly: each sets a size from ticks it saw. Timed on the worker's
            # clock (``started`` too), so a test can say how long a tick took, whatever the machine's load.
            self._adaptive_prefetch = next_prefetch(self._adaptive_prefetch,
                                                    (self.clock.monotonic() - started) / count)

    def _emit(self, event: Event, claim: Claim) -> None:
        for hook in self.hooks:
            try:
                hook(event, claim)
            except Exception:  # a broken hook is logged, never fatal
                self.log.exception("event hook %r failed on %s", hook, event.value)

    def _hold(self, claim: Claim, *, running: bool = True) -> None:
        with self._held_lock:
            self._held[claim.name] = (claim, self.clock.monotonic() if running else None)

    def _drop(self, claim: Claim) -> None:
        with self._held_lock:
            self._held.pop(claim.name, None)
            self._settling.discard((claim.name, claim.token))

    def _mark_settling(self, claims: Iterable[Claim]) -> None:
        """Until dropped, a heartbeat's word that these claims are gone is no news (see ``_settling``)."""
        with self._held_lock:
            self._settling.update((claim.name, claim.token) for claim in claims)

    def _run_lineage(self, claim: Claim | None, result: StepResult) -> None:
        while claim is not None:
            result.claimed += 1
            self._emit(Event.CLAIMED, claim)
            self._hold(claim)
            with ticking(claim.name):
                claim = self._run_one(claim, result)
            if claim is not None and self._stopping.is_set():
                self._release(claim)
                claim = None

    def _run_together(self, claims: list[Claim], result: StepResult) -> None:
        """Run a batch of claims (and, if chaining, their lineages) in rounds: tick each, then
        commit the round's transitions together (one round trip and one durable write)."""
        while claims:
            ready: list[tuple[Claim, Successor | None]] = []
            started, ticked = self.clock.monotonic(), 0
            for index, claim in enumerate(claims):
                if self._stopping.is_set():
                    for rest in claims[index:]:
                        self._release(rest)
                    break
                result.claimed += 1
                self._emit(Event.CLAIMED, claim)
                self._hold(claim)
                with ticking(claim.name):
                    successor = self._tick(claim, result)
                ticked += 1
                if not isinstance(successor, _Settled):
                    ready.append((claim, successor))
            self._timed_ticks(ticked, started)
            claims = self._commit_together(ready, result)
            if self._stopping.is_set():
                for claim in claims:
                    self._release(claim)
                claims = []

    def _commit_together(self, ready: list[tuple[Claim, Successor | None]], result: StepResult) -> list[Claim]:
        """Commit a round's transitions; those the batch did not take are committed one by one."""
        assert isinstance(self.store, BatchCommitStore)
        keep = self.options.chain and not self._stopping.is_set()
        self._mark_settling(claim for claim, _ in ready)
        try:
            outcomes = self.store.commit_many(ready, keep=keep) if ready else []
        except StoreUnavailable:
            outcomes = [None] * len(ready)
        following = []
        for (claim, successor), outcome in zip(ready, outcomes, strict=True):
            with ticking(claim.name):
                if outcome is None:
                    chained = self._settle(claim, successor, result)
                else:
                    self._committed(claim, result)
                    chained = outcome.successor
            if chained is not None:
                following.append(chained)
        return following

    def _run_one(self, claim: Claim, result: StepResult) -> Claim | None:
        """Tick ``claim`` and record the outcome; return a chained claim on its successor."""
        started = self.clock.monotonic()
        successor = self._tick(claim, result)
        self._timed_ticks(1, started)
        return None if isinstance(successor, _Settled) else self._settle(claim, successor, result)

    def _tick(self, claim: Claim, result: StepResult) -> Successor | _Settled | None:
        """Tick ``claim``: its successor (None: the end) to commit, or ``SETTLED`` when the
        tick's outcome is already written (failed, retried, given back, or the claim lost)."""
        try:
            if claim.attempts >= self.options.retry.max_attempts:
                # Every attempt so far ended with its worker dying (taken over after its
                # lease expired): a state that kills its worker must not do so forever.
                message = f"gave up after {claim.attempts} attempts that ended with their worker lost"
                self._fail(claim, Failure(TickFailed.code, message, None, claim.attempts, claim.errors), result)
                return SETTLED
            try:
                successor = self._next(claim)
            except (UnknownState, InvalidPayload, BadReturn, WaitTimedOut) as e:
                self._fail(claim, Failure(e.code, e.message, None, claim.attempts + 1, claim.errors), result)
                return SETTLED
            except Retry as e:
                self._reschedule(claim, e, result)
                return SETTLED
            except BaseException as e:
                if isinstance(e, StoreUnavailable) and claim.state.wait is not None:
                    # The worker's own step (taking an event, reading children) met an outage:
                    # no failure of the machine. Given back as it was once the store answers.
                    self._release(claim)
                    return SETTLED
                # sys.exit(), a stray asyncio.CancelledError or KeyboardInterrupt from a
                # handler fails its tick, not the worker (Ctrl-C in a main thread still stops).
                if isinstance(e, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
                    raise
                trace = clip(storable_text(traceback.format_exc()), MAX_TRACEBACK_CHARS, keep_end=True)
                self._retry(claim, describe_error(e), trace, None, result)
                return SETTLED
            if isinstance(successor, NotYet):
                # Woken before its event, deadline or children: it waits again.
                self._release(claim)
                return SETTLED
            return successor
        except ClaimLost:
            self._lost(claim, result)
            return SETTLED

    def _settle(self, claim: Claim, successor: Successor | None, result: StepResult) -> Claim | None:
        """Commit one tick's successor; return a chained claim on it."""
        try:
            try:
                next_claim = self._commit(claim, successor)
            except CodecError as e:  # the handler returned a payload we cannot write
                self._fail(claim, Failure(BadReturn.code, steps.unwritable(claim, e), None, claim.attempts + 1,
                                          claim.errors), result)
                return None
            self._committed(claim, result)
            return next_claim
        except ClaimLost:
            self._lost(claim, result)
            return None

    def _committed(self, claim: Claim, result: StepResult) -> None:
        self._drop(claim)
        result.committed += 1
        self._emit(Event.COMMITTED, claim)
        self.log.debug("committed %s", claim.name, extra={"action": "commit", "state_name": claim.name})

    def _lost(self, claim: Claim, result: StepResult) -> None:
        self._drop(claim)
        result.lost += 1
        self._emit(Event.LOST, claim)
        self.log.warning("lost the claim on %s to another worker; dropped its result", claim.name,
                         extra={"action": "lost", "state_name": claim.name})

    def _next(self, claim: Claim) -> Successor | NotYet | None:
        """What follows ``claim``: its handler's tick, or the worker's own step for a waiting entry."""
        state = claim.state
        if state.wait is not None and state.state in (WAIT_STATE, JOIN_STATE):
            return steps.own_step(self.store, self.clock, claim, state.wait)
        return self.registry.tick(state.state, state.payload, self.clock.time())

    def _reschedule(self, claim: Claim, retry: Retry, result: StepResult) -> None:
        """The handler asked to run again later: not a failure, but bounded on its own."""
        limit = self.options.max_requested_retries
        reason = clip(one_line(retry.reason), MAX_ERROR_CHARS)
        if claim.retries >= limit:
            message = f"asked to retry {claim.retries + 1} times (at most {limit}, --max-requested-retries): {reason}"
            self._fail(claim, Failure(RetryLimit.code, message, None, claim.attempts, claim.errors), result)
            return
        delay = retry.delay_seconds
        if delay is None:
            delay = self.options.retry.backoff_seconds(claim.retries + 1)
        self._ride_out(claim, "rescheduling",
                       lambda: self.store.retry_later(claim, delay, f"Retry: {reason}", requested=True))
        self._drop(claim)
        result.retried += 1
        self._emit(Event.RETRIED, claim)
        self.log.info("%s asked to run again in %.1f s (retry %d of at most %d): %s", claim.name, delay,
                      claim.retries + 1, limit, reason, extra={"action": "reschedule", "state_name": claim.name})

    def _commit(self, claim: Claim, successor: Successor | None) -> Claim | None:
        def commit() -> Claim | None:
            keep = self.options.chain and not self._stopping.is_set()
            return self.store.commit(claim, successor, keep=keep)
        return self._ride_out(claim, "committing", commit)

    def _ride_out(self, claim: Claim, what: str, outcome: Callable[[], T]) -> T:
        """Write ``claim``'s outcome (commit, retry, fail, release), riding out a store outage.

        Outcomes are idempotent and fenced, so trying again is safe: either it lands
        once, or the claim was taken over meanwhile and ``ClaimLost`` ends it. The claim
        stays held meanwhile (heartbeats renew it), so it is neither given up nor run
        twice. The store logs the outage once; a retry here is only a debug line. A
        stopping worker gives up after a few seconds: its claims' leases then run out
        and other workers take them over.

        Raises:
            StoreUnavailable: the worker is stopping and the store still does not answer.
        """
        delay = 0.1
        self._mark_settling([claim])
        while True:
            try:
                return outcome()
            except StoreUnavailable as e:
                if self._stopping.is_set() and delay >= _OUTAGE_MAX_DELAY_SECONDS:
                    raise
                self.log.debug("store unavailable while %s %s (%s); retrying in %.1f s", what, claim.name,
                               e.message, delay, extra={"action": "store_unavailable"})
                self.clock.sleep(delay)
                delay = min(_OUTAGE_MAX_DELAY_SECONDS, delay * 2)

    def _retry(self, claim: Claim, error: str, trace: str | None, delay: float | None,
               result: StepResult) -> None:
        failed_attempts = claim.attempts + 1
        backoff = self.options.retry.delay_after(failed_attempts)
        if backoff is None:
            failure = Failure(TickFailed.code, error, trace, failed_attempts, with_error(claim.errors, error))
            self._fail(claim, failure, result)
            return
        self._ride_out(claim, "retrying",
                       lambda: self.store.retry_later(claim, backoff if delay is None else delay, error))
        self._drop(claim)
        result.retried += 1
        self._emit(Event.RETRIED, claim)
        self.log.warning("tick of %s failed (attempt %d of %d), retrying in %.1f s: %s",
                         claim.name, failed_attempts, self.options.retry.max_attempts,
                         backoff if delay is None else delay, error,
                         extra={"action": "retry", "state_name": claim.name})

    def _fail(self, claim: Claim, failure: Failure, result: StepResult) -> None:
        self._ride_out(claim, "failing", lambda: self.store.fail(claim, failure))
        self._drop(claim)
        result.failed += 1
        self._emit(Event.FAILED, claim)
        self.log.error("state %s failed (%s): %s", claim.name, failure.code, failure.message,
                       extra={"action": "fail", "state_name": claim.name})

    def _release(self, claim: Claim) -> None:
        try:
            if self._stopping.is_set():
                self.store.release(claim)  # one try: stopping is bounded
            else:
                self._ride_out(claim, "releasing", lambda: self.store.release(claim))
            self._emit(Event.RELEASED, claim)
        except ClaimLost:
            pass
        except StoreUnavailable:
            # Stopping through an outage: the claim's lease runs out and another worker takes it over.
            self.log.warning("could not release %s (the store is unavailable); its lease will run out",
                             claim.name, extra={"action": "release"})
        finally:
            self._drop(claim)

    # -- the loop ------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; ``run`` then drains and returns. Safe from a signal handler."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _loop(self) -> None:
        outage_delay = 0.1
        while not self._stopping.is_set():
            with self._held_lock:
                self._busy_threads += 1
            try:
                result = self.step()
                outage_delay = 0.1
            except StoreUnavailable as e:
                # Keep going through a store outage (a database restart, a full disk):
                # the store logged its beginning once, and logs its end; leases may
                # expire meanwhile, and fencing keeps late commits out.
                self.log.debug("store unavailable (%s); retrying in %.1f s", e.message, outage_delay,
                               extra={"action": "store_unavailable"})
                self.clock.sleep(outage_delay)
                outage_delay = min(_OUTAGE_MAX_DELAY_SECONDS, outage_delay * 2)
                continue
            finally:
                with self._held_lock:
                    self._busy_threads -= 1
            if result.claimed:
                continue
            # A store that can tell that nothing arrived (False) is only waited on again: an
            # idle worker then costs no claim, and no query, between two wake-ups.
            while True:
                if self.options.exit_when_finished and self._finished():
                    self._stopping.set()
                    break
                if self.store.wait_for_work(self.options.poll_seconds) is not False or self._stopping.is_set():
                    break

    def _finished(self) -> bool:
        with self._held_lock:
            if self._busy_threads or self._held:
                return False
        try:
            return self.store.is_finished(self._states)
        except StoreUnavailable as e:  # an outage the store logged: not known to be finished
            self.log.debug("store unavailable (%s); not finished", e.message, extra={"action": "store_unavailable"})
            return False

    def _guarded(self, loop: Callable[[], None], what: str) -> Callable[[], None]:
        """``loop`` for a thread: whatever ends it unexpectedly stops the whole worker.

        A loop thread that dies silently would leave a worker spinning with claims it
        cannot renew; a dead heartbeat thread would let the leases of running ticks lapse
        unnoticed. Either way: stop (releasing what is held) and mark the worker crashed
        (the supervisor's worker process then exits and is replaced).
        """
        def run() -> None:
            try:
                loop()
            except BaseException:  # anything that would end the thread silently
                self.log.exception("%s crashed; stopping", what, extra={"action": "crash"})
                self.crashed = True
                self._stopping.set()
        return run

    def _heartbeat_loop(self) -> None:
        while not self._threads_done.wait(self.options.heartbeat_seconds):
            self._beat()

    def _beat(self) -> None:
        """Renew the leases held; say which were taken over; enforce the tick timeout."""
        with self._held_lock:
            held = list(self._held.values())
        claims = [claim for claim, _ in held]
        try:
            lost = self.store.heartbeat(self.name, claims)
        except StoreUnavailable as e:  # an outage the store reports itself: no traceback
            self.log.debug("heartbeat: %s; will try again", e.message, extra={"action": "heartbeat"})
            return
        except Exception:
            self.log.exception("heartbeat failed; will try again", extra={"action": "heartbeat"})
            return
        with self._held_lock:
            # A claim committed while the heartbeat ran is gone for a good reason.
            really_lost = [c for c in lost if self._held.get(c.name, (None, None))[0] == c
                           and (c.name, c.token) not in self._settling]
        for claim in really_lost:
            self.log.warning("lease on %s was taken over", claim.name, extra={"action": "lost"})
        self._check_tick_timeout(held)

    def _check_tick_timeout(self, held: list[tuple[Claim, float | None]]) -> None:
        """Retry (or fail) the ticks running longer than ``tick_timeout_seconds``, then stop.

        A thread cannot be stopped: the overrunning tick keeps its thread, and its late
        commit is refused (its claim is gone). So the worker stops at once, releasing
        what else it holds, and ``run`` returns with ``timed_out`` set; whoever runs the
        worker decides what then (the supervisor's worker process exits and is replaced).
        """
        limit = self.options.tick_timeout_seconds
        if not limit:  # None or 0: no limit
            return
        now = self.clock.monotonic()
        overran = [claim for claim, started in held if started is not None and now - started > limit]
        if not overran:
            return
        result = StepResult(timed_out=len(overran))
        for claim in overran:
            error = f"{TickTimeout.code}: tick ran longer than {limit:g} s"
            try:
                self._retry(claim, error, None, None, result)
            except ClaimLost:
                pass
        with self._held_lock:
            self.totals.add(result)
        self._abandon.set()
        self._stopping.set()
        with self._held_lock:
            rest = [claim for claim, _ in self._held.values()]
        for claim in rest:
            self._release(claim)
        self.log.error("tick of %s overran %g s; stopping this worker (the tick's thread cannot be stopped)",
                       ", ".join(claim.name for claim in overran), limit, extra={"action": "tick_timeout"})

    @property
    def timed_out(self) -> bool:
        """A tick overran ``tick_timeout_seconds``: ``run`` returned while its thread still runs."""
        return self._abandon.is_set()

    def _register(self) -> bool:
        """Register with the store, riding out an outage (the store logs it); False if stopped first."""
        delay = 0.1
        while not self._stopping.is_set():
            try:
                self.store.register_worker(self.name, self._states)
                return True
            except StoreUnavailable as e:
                self.log.debug("cannot register yet (%s); retrying in %.1f s", e.message, delay,
                               extra={"action": "store_unavailable"})
                self.clock.sleep(delay)
                delay = min(_OUTAGE_MAX_DELAY_SECONDS, delay * 2)
        return False

    def run(self) -> StepResult:
        """Register, run ``concurrency`` loops until stopped or finished, drain, unregister.

        It also returns when a loop crashed (``crashed``) or a tick overran
        ``tick_timeout_seconds`` (``timed_out``; that tick's thread may still be running).
        Never ends the process: a caller that must get rid of a stuck thread decides so.

        Returns:
            What this worker did, in total.
        """
        if not self._register():
            return self.totals
        self.log.info("worker started on %s (%s mode, concurrency %d)", self.store.description,
                      self.store.mode, self.options.concurrency, extra={"action": "start"})
        self._threads_done = threading.Event()
        heartbeat = threading.Thread(target=self._guarded(self._heartbeat_loop, "heartbeat thread"),
                                     name=f"{self.name}-heartbeat", daemon=True)
        heartbeat.start()
        threads = [
            threading.Thread(target=self._guarded(self._loop, "worker loop"), name=f"{self.name}-{i}", daemon=True)
            for i in range(self.options.concurrency)
        ]
        for thread in threads:
            thread.start()
        try:
            # A loop ends only once stopping is set (finished, stopped, crashed, timed out):
            # wait for that; the timeout only guards, and an idle worker wakes once a second.
            while any(thread.is_alive() for thread in threads) and not self._stopping.wait(1.0):
                pass
            # Stopping: in-flight ticks get the grace period, heartbeats continue meanwhile;
            # after a tick timeout none is waited for (what they held is released already).
            grace = 0.0 if self._abandon.is_set() else self.options.shutdown_grace_seconds
            deadline = self.clock.monotonic() + grace
            for thread in threads:
                remaining = max(0.0, deadline - self.clock.monotonic())
                while thread.is_alive() and not self._abandon.is_set() and remaining > 0:
                    thread.join(min(remaining, 0.2))
                    remaining -= 0.2
        finally:
            with self._held_lock:
                leftover = [claim for claim, _ in self._held.values()]
            for claim in leftover:
                self.log.warning("releasing %s unfinished at shutdown", claim.name, extra={"action": "release"})
                self._release(claim)
            self._threads_done.set()
            try:
                self.store.unregister_worker(self.name)
            except StoreUnavailable as e:  # it counts as dead once its heartbeats stop
                self.log.warning("could not unregister (%s)", e.message, extra={"action": "stop"})
            self.log.info("worker stopped: %d committed, %d retried, %d failed", self.totals.committed,
                          self.totals.retried, self.totals.failed, extra={"action": "stop"})
        return self.totals

