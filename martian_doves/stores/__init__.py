"""Stores: where states live. ``open_store`` opens one from a ``StoreConfig``, a path or a URL."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from martian_doves.config import (
    DIRECTORY_MODES,
    DirectoryOptions,
    PostgresOptions,
    SemaphoreOptions,
    StoreConfig,
    is_postgres_url,
)
from martian_doves.errors import ConfigError

if TYPE_CHECKING:
    from martian_doves.clock import Clock
    from martian_doves.stores.base import Store

__all__ = ["DIRECTORY_MODES", "StoreConfig", "is_directory_store", "is_postgres_url", "open_store"]


def open_store(target: str | StoreConfig, mode: str = DIRECTORY_MODES[0], *, clock: Clock | None = None,
               read_only: bool = False, **options: Any) -> Store:
    """Open the store at ``target``: a directory path or a ``postgresql://`` URL.

    ``open_store("./store")``, ``open_store(url, lease_seconds=5)``, or
    ``open_store(StoreConfig.of("./store", "semaphore", buffer_seconds=2))``.

    Args:
        target: folder (created if missing), PostgreSQL URL, or a whole ``StoreConfig``.
        mode: ``lease`` or ``semaphore`` for a folder; ignored for PostgreSQL.
        clock: the store's clock (tests run stores on fake or offset clocks).
        read_only: open the store as it is, to read it: nothing is created, migrated,
            cleaned up or probed, and a target that holds no store is refused.
        options: options of that store family by field name (``DirectoryOptions``,
            ``SemaphoreOptions``, ``PostgresOptions``); not with a ``StoreConfig``.

    Raises:
        ConfigError: the target or mode is unusable, a name is no option of that store
            family, or a value is out of range (one clear line); with ``read_only``, the
            target holds no store.
    """
    if isinstance(target, StoreConfig):
        if options:
            raise ConfigError("open_store: give the options inside the StoreConfig, not beside it")
        config = target.validate()
    else:
        config = StoreConfig.of(target, mode, **options)
    if isinstance(config.options, PostgresOptions):
        try:
            from martian_doves.stores.postgres import PostgresStore
        except ImportError as e:
            raise ConfigError(
                "PostgreSQL support is not installed: pip install 'martian-doves[postgres]'"
            ) from e
        return PostgresStore(config.target, config.options, clock=clock, explicit=config.explicit,
                             read_only=read_only)
    if isinstance(config.options, SemaphoreOptions):
        from martian_doves.stores.directory import SemaphoreStore

        return SemaphoreStore(config.target, config.options, clock=clock, read_only=read_only)
    assert isinstance(config.options, DirectoryOptions)
    from martian_doves.stores.directory import LeaseStore

    return LeaseStore(config.target, config.options, clock=clock, read_only=read_only)


def is_directory_store(path: str) -> bool:
    """Whether ``path`` is a folder that holds a directory store (``pending/``, ``done/`` ...)."""
    from martian_doves.stores.directory.layout import STORE_FOLDERS

    return os.path.isdir(path) and any(os.path.isdir(os.path.join(path, name)) for name in STORE_FOLDERS)
