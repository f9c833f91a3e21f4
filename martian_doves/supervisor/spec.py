"""What a worker process is told: the plain data it builds its own store, registry and worker from."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from martian_doves.clock import SystemClock
from martian_doves.config import WorkerOptions
from martian_doves.errors import ConfigError
from martian_doves.stores import open_store

if TYPE_CHECKING:
    from martian_doves.stores.base import Store


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
