"""Martian Doves: a distributed state-machine processor.

State files (``{"state": ..., "payload": {...}}``) are ticked one transition at a
time by many workers sharing one store, with no central coordinator::

    from martian_doves import machine

    @machine("traffic-light")
    def traffic_light(payload):
        return ("yellow", {"count": 3})
"""

from __future__ import annotations

from martian_doves.api import run, status, submit, submit_paths
from martian_doves.config import (
    DirectoryOptions,
    PostgresOptions,
    SemaphoreOptions,
    StoreConfig,
    WorkerOptions,
)
from martian_doves.contract import Next, Spawn, Wait
from martian_doves.errors import DovesError, Retry
from martian_doves.loader import default_registry
from martian_doves.model import Claim, State, Status, StatusReport
from martian_doves.registry import Registry, machine
from martian_doves.retry import RetryPolicy
from martian_doves.stores import open_store
from martian_doves.worker import Worker

__version__ = "1.0.0"

__all__ = [
    "Claim",
    "DirectoryOptions",
    "DovesError",
    "Next",
    "PostgresOptions",
    "Registry",
    "Retry",
    "RetryPolicy",
    "SemaphoreOptions",
    "Spawn",
    "State",
    "Status",
    "StatusReport",
    "StoreConfig",
    "Wait",
    "Worker",
    "WorkerOptions",
    "default_registry",
    "machine",
    "open_store",
    "run",
    "status",
    "submit",
    "submit_paths",
]
