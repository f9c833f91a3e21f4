"""Supervisor: runs N worker processes on this host, replaces the ones that die, stops cleanly.

It holds no coordination logic: each worker process opens its own store and claims
work from it exactly as a worker on another host would. The supervisor only

- starts the workers (``multiprocessing`` with the ``spawn`` context, so a child
  never inherits a half-copied lock or store handle from the parent),
- respawns a worker that dies unexpectedly (``kill -9``, a crash, the exit status
  of a tick timeout) with backoff, unless the store is finished anyway,
- on SIGTERM/SIGINT forwards the stop to the workers (each stops claiming, lets
  in-flight ticks finish within the shutdown grace and releases the rest), waits a
  bounded time and kills stragglers; a second signal kills them at once (their
  leases simply expire and other workers take the states over),
- copies the workers' output, line by line, to one writer (so the live progress
  display never sees half a line), and samples ``store.status()`` for progress,
- with ``metrics_port``, serves Prometheus metrics: the workers' summed counts and
  the store's gauges from those samples (see ``metrics``),
- returns 0 when no state failed during the run, 1 when some did.

Signal handlers only set flags (huey's rule): all logging happens in the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from martian_doves.clock import SystemClock
from martian_doves.config import SupervisorOptions, WorkerOptions
from martian_doves.errors import ConfigError, DovesError
from martian_doves.loader import default_registry
from martian_doves.logs import StderrWriter, Writer, capture_output, relayed_line, setup_logging
from martian_doves.metrics import (
    MULTIPROCESS_ENV,
    MetricsFolder,
    StoreCollector,
    WorkerMetrics,
    next_status_after,
    serve,
    store_registry,
)
from martian_doves.model import StatusReport
from martian_doves.stores import open_store
from martian_doves.worker import EventHook, Worker

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from prometheus_client.metrics_core import Metric

    from martian_doves.stores.base import Store

log = logging.getLogger(__name__)

#: ``doves`` exit status: everything finished and no state failed during the run.
EXIT_OK = 0
#: ``doves`` exit status: finished, but some states failed (or something was refused).
EXIT_SOME_FAILED = 1
#: ``doves`` exit status: usage or configuration error.
EXIT_USAGE = 2
#: Worker process exit status: its loop crashed (e.g. a fatal store error); respawned.
EXIT_WORKER_CRASHED = 70
#: Worker process exit status: a tick overran ``--tick-timeout`` and its thread cannot be
#: stopped, so the process ends and is replaced at once.
EXIT_TICK_TIMEOUT = 75
#: Worker process exit status: it cannot start with this configuration; the run stops.
EXIT_WORKER_CONFIG = 78

#: A second stop signal this soon after the first is the same stop, delivered twice.
_SAME_SIGNAL_SECONDS = 0.3
#: Longest the supervisor loop sleeps without looking at its flags and children.
_LOOP_SECONDS = 0.5


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs to build its own store, registry and worker.

    It is pickled to each spawned process, so it holds only plain data.
    """

    #: Directory path or ``postgresql://`` URL, as given to ``open_store``.
    target: str
    mode: str = "lease"
    #: Store options by field name (``lease_seconds``, ``durable`` ...); unknown ones are ignored.
    store_options: Mapping[str, Any] = field(default_factory=dict)
    #: ``--machines`` import paths or ``.py`` files, loaded after the built-ins.
    machine_sources: tuple[str, ...] = ()
    #: Options of every worker; ``name`` is replaced by ``<prefix>-<pid>`` in each process.
    worker: WorkerOptions = field(default_factory=WorkerOptions)
    #: Worker names are ``<name_prefix>-<pid>``; the host name by default.
    name_prefix: str = field(default_factory=socket.gethostname)
    log_level: str = "info"
    log_format: str = "text"
    #: Runs the workers' clock this much fast (tests of the semaphore's skew guard).
    clock_offset_seconds: float = 0.0
    #: Count events for Prometheus (set by the supervisor when it serves metrics).
    metrics: bool = False

    def worker_name(self, pid: int) -> str:
        """The unique name of the worker running in process ``pid``."""
        return f"{self.name_prefix}-{pid}"

    def open_store(self) -> Store:
        """Open the store the way every worker process does."""
        clock = SystemClock(self.clock_offset_seconds) if self.clock_offset_seconds else None
        try:
            return open_store(self.target, self.mode, clock=clock, **dict(self.store_options))
        except ImportError as e:  # a mode whose module is not installed
            raise ConfigError(f"mode {self.mode!r} is not available: {e}") from e


class ProgressSink(Protocol):
    """Receives periodic status samples while the supervisor runs (see ``report``)."""

    def update(self, report: StatusReport, running: int) -> None:
        """``report``: the store's status now; ``running``: worker processes alive on this host."""
        ...


# -- the worker process ----------------------------------------------------------------


class _StopRequest:
    """The worker process's SIGTERM/SIGINT handler: sets flags, nothing else."""

    def __init__(self) -> None:
        self.requested = False
        self.worker: Worker | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.worker is not None:
            self.worker.stop()  # sets an Event: safe in a handler

    def attach(self, worker: Worker) -> None:
        self.worker = worker
        if self.requested:  # the signal came while the worker was being built
            worker.stop()


def _redirect_output(output: Connection) -> None:
    """Point this process's stdout and stderr (fds 1 and 2) at the supervisor's pipe."""
    fd = output.fileno()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    output.close()
    for stream in (sys.stdout, sys.stderr):
        # A pipe makes stdout block-buffered: machines that print would be seen late.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)


def _stop_when_orphaned(worker: Worker) -> None:
    """Stop the worker cleanly if the supervisor dies (e.g. ``kill -9`` of the parent)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        log.warning("supervisor is gone; stopping", extra={"action": "orphaned"})
        worker.stop()

    threading.Thread(target=watch, name="doves-parent-watch", daemon=True).start()


def _serve(spec: WorkerSpec, name: str, stop: _StopRequest) -> int:
    """Build store, registry and worker, run until finished or stopped; the exit status."""
    try:
        store = spec.open_store()
    except ConfigError as e:
        log.error("cannot open the store: %s", e.message, extra={"action": "config"})
        return EXIT_WORKER_CONFIG
    except (DovesError, OSError) as e:
        log.error("cannot open the store: %s", e, extra={"action": "crash"})
        return EXIT_WORKER_CRASHED
    try:
        try:
            registry = default_registry(spec.machine_sources)
            hooks: list[EventHook] = [WorkerMetrics()] if spec.metrics else []
            worker = Worker(store, registry, dataclasses.replace(spec.worker, name=name), hooks=hooks)
        except ConfigError as e:
            log.error("%s", e.message, extra={"action": "config"})
            return EXIT_WORKER_CONFIG
        stop.attach(worker)
        _stop_when_orphaned(worker)
        if not stop.requested:
            try:
                worker.run()
            except OSError as e:
                if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise
                # A read-only volume or a folder of another user: no respawn will fix it.
                log.error("cannot write to the store: %s", e, extra={"action": "config"})
                return EXIT_WORKER_CONFIG
        # ``run`` returns when stopped, when the store is finished, after its loop crashed,
        # or after a tick overran: the last two make the supervisor replace this process.
        if worker.timed_out:
            return EXIT_TICK_TIMEOUT
        return EXIT_WORKER_CRASHED if worker.crashed else EXIT_OK
    except Exception:
        log.exception("worker failed", extra={"action": "crash"})
        return EXIT_WORKER_CRASHED
    finally:
        try:
            store.close()
        except Exception:
            log.debug("closing the store failed", exc_info=True)


def worker_process_main(spec: WorkerSpec, output: Connection | None = None) -> None:
    """Entry point of one spawned worker process; exits with its status.

    The ``Worker`` only reports how its run ended (``crashed``, ``timed_out``); the
    process decides what that means for its exit, and so for the supervisor.

    Args:
        spec: what to run.
        output: write end of the pipe the supervisor reads this process's output from;
            None keeps the inherited stdout and stderr.
    """
    stop = _StopRequest()
    signal.signal(signal.SIGTERM, stop.handle)
    # The terminal sends Ctrl-C to the whole process group: the worker stops as for
    # SIGTERM, and a second Ctrl-C is left to the supervisor, which kills at once.
    signal.signal(signal.SIGINT, stop.handle)
    if output is not None:
        _redirect_output(output)
    name = spec.worker_name(os.getpid())
    setup_logging(spec.log_level, spec.log_format, worker=name)
    capture_output()  # what machines print is logged, escaped like the rest
    code = _serve(spec, name, stop)
    logging.shutdown()
    if code == EXIT_TICK_TIMEOUT:
        # The overrunning tick's thread is still running and cannot be stopped; it may
        # hold what an orderly interpreter exit waits for (threads it started, locks).
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


# -- the supervisor ----------------------------------------------------------------------


class _OutputPump:
    """Copies worker processes' output to one writer, whole lines only, in arrival order.

    Each worker writes into its own pipe, so a worker killed mid-line can only cut its
    own last line; the pump turns whatever arrives into complete lines.
    """

    def __init__(self, writer: Writer, json_lines: bool = False) -> None:
        self._writer = writer
        #: Wrap lines that are not JSON records (output that bypassed logging) into JSON log records.
        self._json_lines = json_lines
        self._lock = threading.Lock()
        #: Each worker's pipe by file descriptor: pipe, worker name, bytes of its unfinished line.
        self._streams: dict[int, tuple[Connection, str, bytearray]] = {}
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, reader: Connection, worker: str) -> None:
        with self._lock:
            self._streams[reader.fileno()] = (reader, worker, bytearray())
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="doves-output", daemon=True)
                self._thread.start()

    def _emit(self, data: bytes | bytearray, worker: str) -> None:
        try:
            line = bytes(data).decode("utf-8", errors="replace").rstrip("\r")
            self._writer(relayed_line(line, worker, self._json_lines))
        except Exception:  # a broken writer must not stop the pump (and block the workers)
            pass

    def _run(self) -> None:
        while True:
            with self._lock:
                readers = [reader for reader, _, _ in self._streams.values()]
            if not readers:
                if self._closing.is_set():
                    return
                self._closing.wait(0.1)
                continue
            for reader in multiprocessing.connection.wait(readers, timeout=0.2):
                assert not isinstance(reader, int | socket.socket)
                fd = reader.fileno()
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                with self._lock:
                    _, worker, buffer = self._streams[fd]
                    if not data:  # end of file: the worker has exited
                        del self._streams[fd]
                        reader.close()
                        if buffer:
                            self._emit(buffer, worker)
                        continue
                    buffer.extend(data)
                    *lines, rest = buffer.split(b"\n")
                    buffer[:] = rest
                for line in lines:
                    self._emit(line, worker)

    def close(self, timeout_seconds: float = 2.0) -> None:
        """Wait (bounded) for every worker's output to end, then stop the pump."""
        self._closing.set()
        if self._thread is not None:
            # A machine's own child process may hold a pipe open forever: bounded wait.
            self._thread.join(timeout_seconds)


@dataclass
class _Slot:
    """One of the N worker positions; its process changes when it is respawned."""

    index: int
    process: BaseProcess | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    #: Monotonic time at which to start a new process; None when none is due (the slot
    #: is done once it has neither a process nor a restart due).
    restart_at: float | None = None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code == EXIT_TICK_TIMEOUT:
        return "exited after a tick overran --tick-timeout"
    if code == EXIT_WORKER_CRASHED:
        return "crashed"
    return f"exited with status {code}"


class Supervisor:
    """Runs ``options.workers`` worker processes for ``spec`` until done or stopped.

    Args:
        spec: how each worker process opens its store and runs.
        options: supervision settings.
        store: the supervisor's own handle on the store (for status and "finished?");
            opened from ``spec`` when not given, and closed again only then.
        progress: receives status samples every ``options.status_seconds``.
        output: receives every line the workers print or log.
    """

    def __init__(self, spec: WorkerSpec, options: SupervisorOptions | None = None, *,
                 store: Store | None = None, progress: ProgressSink | None = None,
                 output: Writer | None = None) -> None:
        self.options = (options or SupervisorOptions()).validate()
        self.spec = dataclasses.replace(spec, metrics=self.options.metrics_port is not None)
        self._store = store
        self._progress = progress
        self._context = multiprocessing.get_context("spawn")
        self._pump = _OutputPump(output or StderrWriter(), json_lines=spec.log_format == "json")
        self._slots = [_Slot(index) for index in range(self.options.workers)]
        #: Stop signals received (the handler's only effect).
        self._signals = 0
        self._first_signal_at = 0.0
        self._abort_code: int | None = None
        self._stopping = False
        self._stop_deadline: float | None = None
        self._next_status = 0.0
        #: The last status sample and when it was taken (epoch seconds), for metrics.
        self._last_report: StatusReport | None = None
        self._last_report_at = 0.0
        self._restarts = 0
        #: The port metrics are served on, once they are.
        self.metrics_port: int | None = None
        #: The store's status when ``run`` ended.
        self.final_status: StatusReport | None = None

    @property
    def watch(self) -> bool:
        return not self.spec.worker.exit_when_finished

    # -- signals -----------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        # One stop often arrives twice at once: `timeout` and service managers signal the
        # child and then its whole process group. Only a later signal means "stop now".
        if self._signals == 1 and now - self._first_signal_at < _SAME_SIGNAL_SECONDS:
            return
        if self._signals == 0:
            self._first_signal_at = now
        self._signals += 1

    def request_stop(self) -> None:
        """Stop as on SIGTERM (for embedding; call again to stop at once)."""
        self._signals += 1

    # -- processes -----------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=worker_process_main, args=(self.spec, writer),
            name=f"doves-worker-{slot.index}", daemon=False,
        )
        process.start()
        writer.close()  # the child holds the write end now; EOF arrives when it exits
        self._pump.add(reader, self.spec.worker_name(process.pid or 0))
        slot.process = process
        slot.started_at = time.monotonic()
        slot.restart_at = None
        log.info("started worker %s", self.spec.worker_name(process.pid or 0),
                 extra={"action": "spawn", "pid": process.pid, "slot": slot.index})

    def _alive(self) -> list[_Slot]:
        return [slot for slot in self._slots if slot.process is not None and slot.process.exitcode is None]

    def _store_finished(self, store: Store) -> bool:
        try:
            return store.is_finished()
        except Exception as e:
            log.warning("cannot tell whether the store is finished: %s", e, extra={"action": "status"})
            return False

    def _on_exit(self, slot: _Slot, store: Store) -> None:
        process = slot.process
        assert process is not None
        code = process.exitcode
        pid = process.pid
        process.join()
        process.close()
        slot.process = None
        if self.spec.metrics and pid is not None:
            MetricsFolder.process_exited(pid)
        name = self.spec.worker_name(pid or 0)
        extra = {"action": "exit", "pid": pid, "exit_code": code, "slot": slot.index}
        if self._stopping:
            log.info("worker %s stopped", name, extra=extra)
            return
        if code == EXIT_WORKER_CONFIG:
            log.error("worker %s cannot run with this configuration; stopping the run", name, extra=extra)
            self._abort(EXIT_USAGE)
            return
        if code == 0 and not self.watch and self._store_finished(store):
            log.info("worker %s finished", name, extra=extra)
            return
        # Exit 0 with work left: stopped by someone else's signal, or a handler that
        # called os._exit(0). Replaced like any other death.
        what = _describe_exit(code) if code != 0 else (
            "exited although --watch is set" if self.watch else "exited before the store was finished")
        if not self.watch and self._store_finished(store):
            log.warning("worker %s %s; not replaced, the store is finished", name, what, extra=extra)
            return
        uptime = time.monotonic() - slot.started_at
        if code == EXIT_TICK_TIMEOUT:
            delay = 0.0  # expected: the process is replaced because a thread cannot be killed
        else:
            slot.quick_deaths = slot.quick_deaths + 1 if uptime < self.options.min_uptime_seconds else 1
            if slot.quick_deaths >= self.options.crash_loop_limit:
                log.error("worker %s %s; it died %d times in a row within %.0f s of starting, giving up",
                          name, what, slot.quick_deaths, self.options.min_uptime_seconds, extra=extra)
                self._abort(EXIT_SOME_FAILED)
                return
            delay = min(self.options.respawn_max_seconds,
                        self.options.respawn_base_seconds * 2 ** (slot.quick_deaths - 1))
        slot.restart_at = time.monotonic() + delay
        self._restarts += 1
        log.warning("worker %s %s; starting a new one in %.1f s", name, what, delay,
                    extra={**extra, "action": "respawn"})

    def _abort(self, code: int) -> None:
        if self._abort_code is None:
            self._abort_code = code
        self._begin_stop("the run cannot continue")

    def _begin_stop(self, why: str) -> None:
        if self._stopping:
            return
        self._stopping = True
        wait = self.spec.worker.shutdown_grace_seconds + self.options.stop_margin_seconds
        self._stop_deadline = time.monotonic() + wait
        alive = self._alive()
        log.info("%s: stopping %d worker(s), waiting up to %.0f s for in-flight ticks (again to stop at once)",
                 why, len(alive), wait, extra={"action": "stop"})
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

    def _sample(self, store: Store) -> StatusReport | None:
        """Read the status for progress and metrics when due; the report, if one was read."""
        now = time.monotonic()
        if (self._progress is None and not self.spec.metrics) or now < self._next_status:
            return None
        try:
            report = store.status()
        except Exception as e:
            log.warning("cannot read the store's status: %s", e, extra={"action": "status"})
            return None
        finally:
            took = time.monotonic() - now
            self._next_status = time.monotonic() + next_status_after(self.options.status_seconds, took)
        self._last_report, self._last_report_at = report, time.time()
        if self._progress is not None:
            self._progress.update(report, len(self._alive()))
        return report

    def _wait(self, wakeup: socket.socket) -> None:
        now = time.monotonic()
        timeout = _LOOP_SECONDS
        for slot in self._slots:
            if slot.restart_at is not None:
                timeout = min(timeout, max(0.0, slot.restart_at - now))
        if self._progress is not None or self.spec.metrics:
            timeout = min(timeout, max(0.0, self._next_status - now))
        waitables: list[Any] = [wakeup]
        waitables += [slot.process.sentinel for slot in self._alive() if slot.process is not None]
        if wakeup in multiprocessing.connection.wait(waitables, timeout):
            try:
                while wakeup.recv(512):
                    pass
            except (BlockingIOError, InterruptedError):
                pass

    def _loop(self, store: Store, wakeup: socket.socket) -> None:
        for slot in self._slots:
            self._start(slot)
        while True:
            if self._signals >= 2:
                self._kill_all("second stop signal")
                return
            if self._signals == 1:
                self._begin_stop("stop signal received")
            if self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
                self._kill_all("workers did not stop in time")
            for slot in self._slots:
                if slot.process is not None and slot.process.exitcode is not None:
                    self._on_exit(slot, store)
            now = time.monotonic()
            for slot in self._slots:
                if slot.restart_at is not None and now >= slot.restart_at and not self._stopping:
                    self._start(slot)
            if all(slot.process is None and slot.restart_at is None for slot in self._slots):
                return
            self._sample(store)
            self._wait(wakeup)

    def run(self) -> int:
        """Run until the store is finished (or, with ``--watch``, until stopped).

        Returns:
            ``EXIT_OK`` if no state failed during the run, ``EXIT_SOME_FAILED`` if some
            did, workers kept crashing, or a signal stopped a run without ``--watch``
            before the store was finished; ``EXIT_USAGE`` if workers could not start
            with this configuration.
        """
        store = self._store if self._store is not None else self.spec.open_store()
        try:
            failed_before = store.status().failed
            with contextlib.ExitStack() as serving:
                if self.options.metrics_port is not None:
                    serving.enter_context(MetricsFolder())  # before the first worker starts
                    serving.callback(self._serve_metrics())
                self._run_with_signals(store)
                self._next_status = 0.0
                # One count of a possibly large store serves the display and the summary.
                self.final_status = self._sample(store) or store.status()
            failed_now = self.final_status.failed
            # A run meant to finish the work (no --watch) that a signal stopped first did
            # not do its job: a script running `doves run && next-step` must not go on.
            cut_short = self._signals > 0 and not self.watch and not self._store_finished(store)
        finally:
            if self._store is None:
                store.close()
        if self._abort_code is not None:
            return self._abort_code
        if cut_short:
            log.warning("stopped before the store was finished", extra={"action": "summary"})
            return EXIT_SOME_FAILED
        if failed_now > failed_before:
            log.warning("%d state(s) failed during this run", failed_now - failed_before,
                        extra={"action": "summary", "failed": failed_now - failed_before})
            return EXIT_SOME_FAILED
        return EXIT_OK

    def _serve_metrics(self) -> Callable[[], None]:
        """Start the metrics endpoint; the function that stops it."""
        assert self.options.metrics_port is not None
        collector = StoreCollector(lambda: (self._last_report, self._last_report_at), self._own_metrics)
        stop, self.metrics_port = serve(store_registry(collector, os.environ[MULTIPROCESS_ENV]),
                                        self.options.metrics_host, self.options.metrics_port)
        log.info("metrics on http://%s:%d/metrics", self.options.metrics_host, self.metrics_port,
                 extra={"action": "metrics", "port": self.metrics_port})
        return stop

    def _own_metrics(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield GaugeMetricFamily("doves_worker_processes", "Worker processes this supervisor runs now.",
                                value=len(self._alive()))
        yield CounterMetricFamily("doves_worker_restarts", "Worker processes replaced after dying.",
                                  value=self._restarts)

    def _run_with_signals(self, store: Store) -> None:
        in_main = threading.current_thread() is threading.main_thread()
        wakeup_read, wakeup_write = socket.socketpair()
        wakeup_read.setblocking(False)
        wakeup_write.setblocking(False)
        previous: dict[int, Any] = {}
        old_wakeup = -1
        if in_main:  # signal handlers can only be installed from the main thread
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self._on_signal)
            # Wakes the loop the moment a signal arrives instead of at its next timeout.
            old_wakeup = signal.set_wakeup_fd(wakeup_write.fileno(), warn_on_full_buffer=False)
        try:
            self._loop(store, wakeup_read)
        finally:
            self._kill_all("supervisor exiting")
            if in_main:
                signal.set_wakeup_fd(old_wakeup)
                for number, handler in previous.items():
                    signal.signal(number, handler)
            wakeup_read.close()
            wakeup_write.close()
            self._pump.close()
