"""The supervisor: runs N worker processes on this host, replaces the ones that die, stops cleanly.

It holds no coordination logic: each worker process opens its own store and claims
work from it exactly as a worker on another host would. The supervisor only

- starts the workers (``multiprocessing`` with the ``spawn`` context, so a child
  never inherits a half-copied lock or store handle from the parent; ``process``),
- replaces a worker that dies unexpectedly, with backoff, forever (``respawn``),
  unless the store is finished anyway; a worker that can never start ends the run,
- on SIGTERM/SIGINT (``signals``) forwards the stop to the workers (each stops
  claiming, lets in-flight ticks finish within the shutdown grace and releases the
  rest), waits a bounded time and kills stragglers; a second signal kills them at
  once (their leases simply expire and other workers take the states over),
- copies the workers' output, line by line, to one writer (``output``), and has the
  store's status sampled (``sampler``) for progress and metrics (``metrics``),
- reports how the run went (``RunResult``); the CLI turns that into its exit code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from martian_doves.clock import Clock, SystemClock
from martian_doves.config import SupervisorOptions
from martian_doves.errors import ConfigError
from martian_doves.loader import default_registry
from martian_doves.logs import StderrWriter, Writer
from martian_doves.metrics import MetricsFolder, RunMetrics
from martian_doves.model import StatusReport
from martian_doves.sampler import Sampler
from martian_doves.stores.base import FailureCountingStore, SupervisedStore
from martian_doves.supervisor.exits import EXIT_WORKER_CONFIG, describe_exit
from martian_doves.supervisor.output import OutputPump
from martian_doves.supervisor.process import worker_process_main
from martian_doves.supervisor.respawn import after_exit
from martian_doves.supervisor.signals import StopSignals
from martian_doves.supervisor.spec import WorkerSpec

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from martian_doves.stores.base import Store

log = logging.getLogger(__name__)

#: Longest the supervisor loop sleeps without looking at its flags and children. Signals
#: (the wake-up socket), exits (sentinels), restarts and the stop deadline end a sleep
#: when due, so this only bounds an idle fleet's wake-ups.
_LOOP_SECONDS = 2.0


class WorkerCannotStart(ConfigError):
    """A worker process cannot start with this configuration; the run stopped."""


class ProgressSink(Protocol):
    """Receives periodic status samples while the supervisor runs (see ``report``)."""

    def update(self, report: StatusReport, running: int) -> None:
        """``report``: the store's status now; ``running``: worker processes alive on this host."""
        ...


@dataclass(frozen=True)
class RunResult:
    """How a run went."""

    #: The store's status when the run ended.
    final_status: StatusReport
    #: States that failed during the run.
    failed: int
    #: A stop signal ended a run without ``--watch`` before the store was finished.
    cut_short: bool
    #: The run ended with states left that none of its workers has a machine for.
    left_for_others: bool = False

    @property
    def ok(self) -> bool:
        """The run did its job: nothing failed, it was not cut short, nothing was left undone."""
        return self.failed == 0 and not self.cut_short and not self.left_for_others


@dataclass
class _Slot:
    """One of the N worker positions; its process changes when it is replaced."""

    index: int
    process: BaseProcess | None = None
    #: Read end of the pipe on which the process says why it cannot start, if it cannot.
    reasons: Connection | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    #: Monotonic time at which to start a new process; None when none is due (the slot
    #: is done once it has neither a process nor a restart due).
    restart_at: float | None = None


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start a worker process without running the parent's main module in it again.

    A spawned child imports the parent's ``__main__`` (the ``doves`` script and with it the
    whole CLI, a test runner, a user's script) before its target runs, in case the target's
    arguments refer to it. A worker's are plain data (``WorkerSpec``) and its code is this
    package's, so that import would only add a fifth of a second to every worker's start.
    ``multiprocessing`` leaves out a main module that has neither a ``__spec__`` nor a ``__file__``.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    spec, file = getattr(main, "__spec__", None), main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__spec__ = spec
        if file is not None:
            main.__file__ = file


class Supervisor:
    """Runs ``options.workers`` worker processes for ``spec`` until done or stopped.

    Args:
        spec: how each worker process opens its store and runs.
        options: supervision settings.
        store: the supervisor's own handle on the store (for status and "finished?");
            opened from ``spec`` when not given, and closed again only then.
        progress: receives status samples every ``options.status_seconds``.
        output: receives every line the workers print or log.
        clock: time for respawn delays and stop deadlines.
    """

    def __init__(self, spec: WorkerSpec, options: SupervisorOptions | None = None, *,
                 store: Store | None = None, progress: ProgressSink | None = None,
                 output: Writer | None = None, clock: Clock | None = None) -> None:
        self.options = (options or SupervisorOptions()).validate()
        self.spec = dataclasses.replace(spec, metrics=self.options.metrics_port is not None)
        self._store = store
        self._progress = progress
        self._clock = clock or SystemClock()
        #: The states this run's workers claim (their machines), as each worker computes them.
        self._states = None if spec.worker.fail_unknown_states \
            else frozenset(default_registry(spec.machine_sources).names())
        self._context = multiprocessing.get_context("spawn")
        self._pump = OutputPump(output or StderrWriter(), json_lines=spec.log_format == "json")
        self._slots = [_Slot(index) for index in range(self.options.workers)]
        self._signals = StopSignals(self._clock)
        #: Why the run cannot go on (a worker that cannot start), once known.
        self._cannot_start: str | None = None
        self._stopping = False
        self._stop_deadline: float | None = None
        self._restarts = 0
        #: The port metrics are served on, once they are.
        self.metrics_port: int | None = None

    @property
    def watch(self) -> bool:
        return not self.spec.worker.exit_when_finished

    @property
    def running(self) -> int:
        """Worker processes started and not yet reaped (safe to read from any thread)."""
        return sum(1 for slot in self._slots if slot.process is not None)

    def request_stop(self) -> None:
        """Stop as on SIGTERM (for embedding; call again to stop at once)."""
        self._signals.request()

    # -- processes -----------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        reader, writer = self._context.Pipe(duplex=False)
        reasons, reasons_writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=worker_process_main, args=(self.spec, writer, reasons_writer),
            name=f"doves-worker-{slot.index}", daemon=False,
        )
        with _main_module_hidden():
            process.start()
        writer.close()  # the child holds the write ends now; EOF arrives when it exits
        reasons_writer.close()
        self._pump.add(reader, self.spec.worker_name(process.pid or 0))
        slot.process, slot.reasons = process, reasons
        slot.started_at = self._clock.monotonic()
        slot.restart_at = None
        log.info("started worker %s", self.spec.worker_name(process.pid or 0),
                 extra={"action": "spawn", "pid": process.pid, "slot": slot.index})

    def _alive(self) -> list[_Slot]:
        return [slot for slot in self._slots if slot.process is not None and slot.process.exitcode is None]

    def _store_finished(self, store: Store, *, everything: bool = False) -> bool:
        """Whether nothing is left that this run's workers can do (with ``everything``: nothing at all)."""
        try:
            return store.is_finished(None if everything else self._states)
        except Exception as e:
            log.warning("cannot tell whether the store is finished: %s", e, extra={"action": "status"})
            return False

    def _reap(self, slot: _Slot) -> tuple[int | None, int | None, str | None]:
        """Forget the slot's exited process: its (exit code, pid, reason it cannot start)."""
        process, reasons = slot.process, slot.reasons
        assert process is not None and reasons is not None
        code, pid = process.exitcode, process.pid
        process.join()
        process.close()
        reason = None
        with contextlib.suppress(EOFError, OSError):
            if reasons.poll():
                reason = str(reasons.recv())
        reasons.close()
        slot.process, slot.reasons = None, None
        if self.spec.metrics and pid is not None:
            MetricsFolder.process_exited(pid)
        return code, pid, reason

    def _bury(self, store: Store, name: str, how: str) -> None:
        """Tell the store that worker ``name`` is dead (``how`` it ended), so others take its work now."""
        if not isinstance(store, SupervisedStore):
            return
        try:
            given = store.worker_exited(name, how)
        except Exception as e:  # its lease still runs out: nothing is lost, only time
            log.warning("cannot tell the store that worker %s is gone: %s", name, e, extra={"action": "bury"})
            return
        if given:
            log.info("gave back %d state(s) worker %s held", given, name,
                     extra={"action": "bury", "given_back": given})

    def _on_exit(self, slot: _Slot, store: Store) -> None:
        code, pid, reason = self._reap(slot)
        name = self.spec.worker_name(pid or 0)
        extra = {"action": "exit", "pid": pid, "exit_code": code, "slot": slot.index}
        if code != 0:
            # It did not stop on its own: whatever it held is given back now, not when its lease runs out.
            self._bury(store, name, describe_exit(code))
        if self._stopping:
            log.info("worker %s stopped", name, extra=extra)
            return
        if code == 0 and not self.watch and self._store_finished(store):
            log.info("worker %s finished", name, extra=extra)
            return
        if code == 0:
            self._bury(store, name, "exited while its work was not finished")
        # Exit 0 with work left: stopped by someone else's signal, or a handler that
        # called os._exit(0). Replaced like any other death.
        what = describe_exit(code) if code != 0 else (
            "exited although --watch is set" if self.watch else "exited before the store was finished")
        if code != EXIT_WORKER_CONFIG and not self.watch and self._store_finished(store):
            log.warning("worker %s %s; not replaced, the store is finished", name, what, extra=extra)
            return
        respawn = after_exit(self.options, code, slot.started_at, slot.quick_deaths, self._clock)
        if respawn is None:
            self._cannot_start = f"worker {name} {reason or 'cannot start with this configuration'}"
            self._begin_stop("the run cannot continue")
            return
        slot.restart_at, slot.quick_deaths = respawn.at, respawn.quick_deaths
        self._restarts += 1
        log.warning("worker %s %s; starting a new one in %.1f s", name, what, respawn.delay_seconds,
                    extra={**extra, "action": "respawn"})

    def _begin_stop(self, why: str) -> None:
        if self._stopping:
            return
        self._stopping = True
        wait = self.spec.worker.shutdown_grace_seconds + self.options.stop_margin_seconds
        self._stop_deadline = self._clock.monotonic() + wait
        alive = self._alive()
        if alive:
            log.info("%s: stopping %d worker(s), waiting up to %.0f s for in-flight ticks (again to stop at once)",
                     why, len(alive), wait, extra={"action": "stop"})
        else:
            log.info("%s: stopping", why, extra={"action": "stop"})
        for slot in self._slots:
            slot.restart_at = None
        for slot in alive:
            assert slot.process is not None
            slot.process.terminate()

    def _kill_all(self, why: str) -> None:
        alive = self._alive()
        if alive:
            log.warning("%s: killing %d worker(s); their leases will expire", why, len(alive),
                        extra={"action": "kill"})
        for slot in alive:
            assert slot.process is not None
            slot.process.kill()
        for slot in alive:
            assert slot.process is not None
            slot.process.join(10)

    # -- the loop ---------------------------------------------------------------------------

    def _wait(self, wakeup: socket.socket) -> None:
        now = self._clock.monotonic()
        timeout = _LOOP_SECONDS
        for slot in self._slots:
            if slot.restart_at is not None:
                timeout = min(timeout, max(0.0, slot.restart_at - now))
        if self._stop_deadline is not None:
            timeout = min(timeout, max(0.0, self._stop_deadline - now) + 0.01)
        waitables: list[Any] = [wakeup]
        waitables += [slot.process.sentinel for slot in self._alive() if slot.process is not None]
        if wakeup in multiprocessing.connection.wait(waitables, timeout):
            StopSignals.drain(wakeup)

    def _loop(self, store: Store, wakeup: socket.socket) -> None:
        for slot in self._slots:
            self._start(slot)
        while True:
            if self._signals.count >= 2:
                self._kill_all("second stop signal")
                return
            if self._signals.count == 1:
                self._begin_stop("stop signal received")
            if self._stop_deadline is not None and self._clock.monotonic() > self._stop_deadline:
                self._kill_all("workers did not stop in time")
            for slot in self._slots:
                if slot.process is not None and slot.process.exitcode is not None:
                    self._on_exit(slot, store)
            now = self._clock.monotonic()
            for slot in self._slots:
                if slot.restart_at is not None and now >= slot.restart_at and not self._stopping:
                    self._start(slot)
            if all(slot.process is None and slot.restart_at is None for slot in self._slots):
                return
            self._wait(wakeup)

    def run(self) -> RunResult:
        """Run until the store is finished (or, with ``--watch``, until stopped).

        Returns:
            How the run went: states failed during it, whether a signal cut it short.

        Raises:
            WorkerCannotStart: a worker process could not start for a reason no restart
                fixes (its machines fail to import, its configuration is refused); the
                message says which worker and why. The other workers were stopped first.
        """
        store = self._store if self._store is not None else self.spec.open_store()
        progress = self._progress
        sampler = Sampler(store, self.options.status_seconds,
                          on_sample=None if progress is None else lambda r: progress.update(r, self.running))
        try:
            # Counted before any worker starts; without a whole status, which a large store
            # takes long to read, so that the first commit need not wait for it.
            failed_before = store.failed_count() if isinstance(store, FailureCountingStore) else store.status().failed
            with contextlib.ExitStack() as serving:
                if self.options.metrics_port is not None:
                    metrics = RunMetrics(sampler.latest, lambda: (self.running, self._restarts),
                                         self.options.metrics_host, self.options.metrics_port)
                    serving.enter_context(metrics)  # before the first worker starts
                    self.metrics_port = metrics.port
                if progress is not None or self.spec.metrics:
                    sampler.start()
                    serving.callback(sampler.stop)
                self._run_with_signals(store)
            if self._cannot_start is not None:
                raise WorkerCannotStart(self._cannot_start)
            # One count of a possibly large store serves the display and the summary.
            final_status = sampler.sample() or store.status()
            # A run meant to finish the work (no --watch) that a signal stopped first did
            # not do its job: a script running `doves run && next-step` must not go on.
            cut_short = self._signals.count > 0 and not self.watch and not self._store_finished(store)
            left = not cut_short and not self.watch and self._states is not None \
                and not self._store_finished(store, everything=True)
        finally:
            if self._store is None:
                store.close()
        result = RunResult(final_status, max(0, final_status.failed - failed_before), cut_short, left)
        if cut_short:
            log.warning("stopped before the store was finished", extra={"action": "summary"})
        elif left:
            log.warning("states are left that none of these workers has a machine for; they wait for a worker "
                        "that has (`doves status` says which)", extra={"action": "summary"})
        elif result.failed:
            log.warning("%d state(s) failed during this run", result.failed,
                        extra={"action": "summary", "failed": result.failed})
        return result

    def _run_with_signals(self, store: Store) -> None:
        with self._signals.installed() as wakeup:
            try:
                self._loop(store, wakeup)
            finally:
                self._kill_all("supervisor exiting")
                self._pump.close()
