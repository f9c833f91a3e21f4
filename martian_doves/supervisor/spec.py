"""What a worker process is told: the plain data it builds its own store, registry and worker from."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from martian_doves.clock import SystemClock
from martian_doves.config import LogOptions, StoreConfig, WorkerOptions
from martian_doves.stores import open_store

if TYPE_CHECKING:
    from martian_doves.stores.base import Store


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs to build its own store, registry and worker.

    It is pickled to each spawned process, so it holds only plain data.
    """

    #: The store every worker opens (target, mode and that store family's options).
    store: StoreConfig
    #: ``--machines`` import paths or ``.py`` files, loaded after the built-ins.
    machine_sources: tuple[str, ...] = ()
    #: Options of every worker; ``name`` is replaced by ``<prefix>-<pid>`` in each process.
    worker: WorkerOptions = field(default_factory=WorkerOptions)
    #: Worker names are ``<name_prefix>-<pid>``; the host name by default.
    name_prefix: str = field(default_factory=socket.gethostname)
    log_level: str = LogOptions.log_level
    log_format: str = LogOptions.log_format
    #: Runs the workers' clock this much fast (tests of the semaphore's skew guard).
    clock_offset_seconds: float = 0.0
    #: Count events for Prometheus (set by the supervisor when it serves metrics).
    metrics: bool = False
    #: A folder: time the phases of every transition (``phases``) and write each worker's
    #: totals there, as ``<worker name>.json``, when it stops. None: not timed, at no cost.
    phase_timings: str | None = None

    def worker_name(self, pid: int) -> str:
        """The unique name of the worker running in process ``pid``."""
        return f"{self.name_prefix}-{pid}"

    def open_store(self) -> Store:
        """Open the store the way every worker process does."""
        clock = SystemClock(self.clock_offset_seconds) if self.clock_offset_seconds else None
        return open_store(self.store, clock=clock)
