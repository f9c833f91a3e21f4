"""Typed configuration: one frozen dataclass per concern, each with ``validate()``.

Stores, workers and the supervisor take these objects; the CLI and the Python API
build them. Each field is declared once, with ``settings.setting``: its default, its
help text, its bounds and, where it has one, its ``doves`` flag and ``DOVES_*``
variable (the CLI derives its options from the fields).

- ``stores``: the options of each store family and ``StoreConfig`` (target, mode and
  options: what ``open_store`` takes);
- ``processes``: workers, their supervisor, logging, progress and the dashboard.
"""

from __future__ import annotations

from martian_doves.config.processes import (
    HEARTBEAT_SECONDS,
    DashboardOptions,
    LogOptions,
    ProgressOptions,
    SupervisorOptions,
    WorkerOptions,
)
from martian_doves.config.stores import (
    DEFAULT_SCHEMA,
    DIRECTORY_MODES,
    MIN_SKEW_SECONDS,
    POSTGRES_MODE,
    STORE_ENV,
    DirectoryOptions,
    Phase,
    Phases,
    PostgresOptions,
    SemaphoreOptions,
    StoreConfig,
    StoreOptions,
    is_postgres_url,
    options_class,
    require_target,
)
from martian_doves.retry import RetryPolicy

#: Every options class, for checks that span them (each flag and variable belongs to one field).
ALL_OPTIONS: tuple[type, ...] = (
    StoreOptions, DirectoryOptions, SemaphoreOptions, PostgresOptions, WorkerOptions, RetryPolicy,
    SupervisorOptions, LogOptions, ProgressOptions, DashboardOptions,
)

__all__ = [
    "ALL_OPTIONS",
    "DEFAULT_SCHEMA",
    "DIRECTORY_MODES",
    "HEARTBEAT_SECONDS",
    "MIN_SKEW_SECONDS",
    "POSTGRES_MODE",
    "STORE_ENV",
    "DashboardOptions",
    "DirectoryOptions",
    "LogOptions",
    "Phase",
    "Phases",
    "PostgresOptions",
    "ProgressOptions",
    "RetryPolicy",
    "SemaphoreOptions",
    "StoreConfig",
    "StoreOptions",
    "SupervisorOptions",
    "WorkerOptions",
    "is_postgres_url",
    "options_class",
    "require_target",
]
