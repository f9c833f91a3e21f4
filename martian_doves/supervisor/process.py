"""One worker process: builds its store, registry and worker from a ``WorkerSpec``, runs it, and
decides how the process ends.

The ``Worker`` only reports (``run`` returns, with ``crashed`` or ``timed_out`` set);
this module turns that into the process's exit status (``supervisor.exits``), which
tells the supervisor whether to replace the process or to stop the run. A process
that cannot start for a reason no restart fixes also sends the supervisor that reason,
one line, over a pipe, so the run ends with it.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
from typing import TYPE_CHECKING

from martian_doves.errors import ConfigError, DovesError, MachineLoadError
from martian_doves.loader import default_registry
from martian_doves.logs import capture_output, setup_logging
from martian_doves.metrics import WorkerMetrics
from martian_doves.phases import PhaseTimer
from martian_doves.steps import EventHook
from martian_doves.supervisor.exits import EXIT_TICK_TIMEOUT, EXIT_WORKER_CONFIG, EXIT_WORKER_CRASHED
from martian_doves.supervisor.signals import StopRequest
from martian_doves.supervisor.spec import WorkerSpec
from martian_doves.worker import Worker

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from martian_doves.stores.base import Store

log = logging.getLogger(__name__)

#: ``OSError`` numbers that mean the store can never be written by this process:
#: a read-only volume, or a folder of another user. No restart fixes them.
_UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


class CannotStart(Exception):
    """This process can never run a worker with its configuration; the message says why."""


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


def _open_store(spec: WorkerSpec) -> Store:
    try:
        return spec.open_store()
    except ConfigError as e:
        raise CannotStart(f"cannot open the store: {e.message}") from e


def _build_worker(spec: WorkerSpec, name: str, store: Store) -> Worker:
    try:
        registry = default_registry(spec.machine_sources)
    except MachineLoadError as e:
        raise CannotStart(f"cannot load its machines: {e.message}") from e
    except ConfigError as e:
        raise CannotStart(e.message) from e
    # The state label takes only the names of the worker's machines: bad input adds no series.
    hooks: list[EventHook] = [WorkerMetrics(states=registry.names())] if spec.metrics else []
    try:
        return Worker(store, registry, dataclasses.replace(spec.worker, name=name), hooks=hooks)
    except ConfigError as e:
        raise CannotStart(e.message) from e


def _run(worker: Worker) -> int:
    """Run the worker to its end; the exit status that tells the supervisor what happened."""
    try:
        worker.run()
    except OSError as e:
        if e.errno in _UNWRITABLE:
            raise CannotStart(f"cannot write to the store: {e}") from e
        raise
    # ``run`` returns when stopped, when the store is finished, after its loop crashed,
    # or after a tick overran: the last two make the supervisor replace this process.
    if worker.timed_out:
        return EXIT_TICK_TIMEOUT
    return EXIT_WORKER_CRASHED if worker.crashed else 0


def serve(spec: WorkerSpec, name: str, stop: StopRequest) -> int:
    """Build store, registry and worker, run until finished or stopped; the exit status.

    Raises:
        CannotStart: with the reason, when no restart can fix what went wrong.
    """
    try:
        store = _open_store(spec)
    except (DovesError, OSError) as e:  # unreachable for now (a database restarting): try again
        log.error("cannot open the store: %s", e, extra={"action": "crash"})
        return EXIT_WORKER_CRASHED
    try:
        worker = _build_worker(spec, name, store)
        stop.attach(worker)
        _stop_when_orphaned(worker)
        if spec.phase_timings is None:
            return 0 if stop.requested else _run(worker)
        timer = PhaseTimer()
        timer.instrument(store, worker.registry)
        try:
            return 0 if stop.requested else _run(worker)
        finally:
            timer.dump(os.path.join(spec.phase_timings, f"{name}.json"))
    except CannotStart:
        raise
    except Exception:
        log.exception("worker failed", extra={"action": "crash"})
        return EXIT_WORKER_CRASHED
    finally:
        try:
            store.close()
        except Exception:
            log.debug("closing the store failed", exc_info=True)


def worker_process_main(spec: WorkerSpec, output: Connection | None = None,
                        reasons: Connection | None = None) -> None:
    """Entry point of one spawned worker process; exits with its status (``supervisor.exits``).

    Args:
        spec: what to run.
        output: write end of the pipe the supervisor reads this process's output from;
            None keeps the inherited stdout and stderr.
        reasons: write end of the pipe on which the process sends, before exiting with
            ``EXIT_WORKER_CONFIG``, why it cannot start; None logs the reason instead.
    """
    stop = StopRequest()
    stop.install()
    if output is not None:
        _redirect_output(output)
    name = spec.worker_name(os.getpid())
    setup_logging(spec.log_level, spec.log_format, worker=name)
    capture_output()  # what machines print is logged, escaped like the rest
    try:
        code = serve(spec, name, stop)
    except CannotStart as e:
        code = EXIT_WORKER_CONFIG
        if reasons is not None:
            reasons.send(str(e))  # the supervisor ends the run with it, in one line
        else:
            log.error("%s", e, extra={"action": "config"})
    logging.shutdown()
    if code == EXIT_TICK_TIMEOUT:
        # The overrunning tick's thread is still running and cannot be stopped; it may
        # hold what an orderly interpreter exit waits for (threads it started, locks).
        for stream in (sys.__stdout__, sys.__stderr__):  # the real ones, under any capture
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)
