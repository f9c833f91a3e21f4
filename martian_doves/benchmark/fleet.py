"""A warm fleet for the benchmark: ``doves run --watch`` in a session of its own, as users run it.

The fleet is the product's own command in a child process, so what is measured is
what users run: its supervisor, its worker processes, their start-up. Its processes
are found by session (CPU time) and by the workers' names (``bench-<pid>``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from martian_doves.benchmark import procfs
from martian_doves.errors import DovesError
from martian_doves.model import StatusReport
from martian_doves.stores.base import Store

#: Worker names are ``<prefix>-<pid>``: the benchmark finds its workers' processes by them.
NAME_PREFIX = "bench"
#: The module that holds the probe machine, loaded by every worker of the fleet.
PROBE_MODULE = "martian_doves.benchmark.probe"


class BenchError(DovesError):
    """The benchmark could not run as planned (a fleet that does not start, a count that is off)."""

    code = "bench_failed"


class Fleet:
    """``doves run TARGET --watch --workers N ...`` started in its own session.

    Args:
        target: the store.
        mode: the folder store's mode.
        workers: worker processes.
        concurrency: ticks each runs at once.
        run_args: more options for ``doves run`` (``--durable``, ``--prefetch 4`` ...).
        phase_timings: a folder for ``--phase-timings``, or None.
    """

    def __init__(self, target: str, mode: str, workers: int, concurrency: int, run_args: Sequence[str] = (),
                 phase_timings: str | None = None) -> None:
        self.workers = workers
        command = [sys.executable, "-m", "martian_doves", "run", target, "--watch", "--workers", str(workers),
                   "--concurrency", str(concurrency), "--mode", mode, "--machines", PROBE_MODULE,
                   "--name", NAME_PREFIX, "--no-progress", "--log-level", "warning", *run_args]
        if phase_timings is not None:
            command += ["--phase-timings", phase_timings]
        self.process = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)

    def pids(self) -> list[int]:
        """Every process of the fleet: the supervisor, its workers and their helpers."""
        return procfs.session_members(self.process.pid)

    def server_pids(self, store: Store) -> list[int]:
        """PostgreSQL on this host: the server processes serving the fleet's connections (their
        CPU is the fleet's cost too); [] for a folder store or a server elsewhere.

        A session names its process in ``application_name`` (``doves:<schema>:<pid>``).
        """
        connector = getattr(store, "connector", None)
        if connector is None:
            return []
        mine = set(self.pids())
        query = ("SELECT pid, application_name FROM pg_stat_activity WHERE application_name LIKE %(prefix)s "
                 "AND coalesce(host(inet_server_addr()) IN ('127.0.0.1', '::1'), true)")
        prefix = f"doves:{connector.schema[:45]}:%"
        rows = connector.run("bench", lambda conn, _: conn.execute(query, {"prefix": prefix}).fetchall())
        return [int(pid) for pid, name in rows if name.rpartition(":")[2].isdigit()
                and int(name.rpartition(":")[2]) in mine]

    def worker_pids(self, store: Store, report: StatusReport | None = None) -> list[int]:
        """The processes of the fleet's live workers, by their names (``bench-<pid>``), as ``report``
        (a status just read) or a fresh status says."""
        mine = set(self.pids())
        pids = []
        for worker in (report or store.status()).workers:
            prefix, _, pid = worker.name.rpartition("-")
            if worker.alive and prefix == NAME_PREFIX and pid.isdigit() and int(pid) in mine:
                pids.append(int(pid))
        return pids

    def check(self) -> None:
        """Raise ``BenchError`` if the fleet's ``doves run`` has exited (it runs until stopped)."""
        if self.process.poll() is not None:
            raise BenchError(f"the fleet (doves run) exited with status {self.process.returncode}")

    def wait_started(self, store: Store, timeout_seconds: float = 120.0) -> list[int]:
        """Wait until every worker is registered and alive; their process ids.

        Raises:
            BenchError: the fleet exited, or its workers did not start in time.
        """
        deadline = time.monotonic() + timeout_seconds
        while True:
            self.check()
            pids = self.worker_pids(store)
            if len(pids) >= self.workers:
                return pids
            if time.monotonic() > deadline:
                raise BenchError(f"{len(pids)} of {self.workers} workers started in {timeout_seconds:g} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM to the supervisor, which stops its workers in order; SIGKILL to the session after 15 s."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
