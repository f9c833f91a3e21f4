"""Stores: where states live. ``open_store`` picks one from a path or URL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from martian_doves.errors import ConfigError

if TYPE_CHECKING:
    from martian_doves.clock import Clock
    from martian_doves.stores.base import Store

#: Directory-store modes, the first being the default.
DIRECTORY_MODES = ("lease", "semaphore")


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def open_store(target: str, mode: str = "lease", *, clock: Clock | None = None, **options: Any) -> Store:
    """Open the store at ``target``: a directory path or a ``postgresql://`` URL.

    Args:
        target: folder (created if missing) or PostgreSQL URL.
        mode: ``lease`` or ``semaphore`` for a folder; ignored for PostgreSQL.
        options: store options (``lease_seconds``, ``durable``, phase lengths ...);
            those a store does not know are ignored, so one CLI can feed every store.

    Raises:
        ConfigError: the target or mode is unusable (one clear line).
    """
    if not target:
        raise ConfigError("no store given: pass STORE or set DOVES_STORE")
    if is_postgres_url(target):
        try:
            from martian_doves.stores.postgres import PostgresStore
        except ImportError as e:
            raise ConfigError(
                "PostgreSQL support is not installed: pip install 'martian-doves[postgres]'"
            ) from e
        from martian_doves.config import PostgresOptions

        picked = _pick(PostgresOptions, options)
        explicit = {k for k, v in options.items() if v is not None}
        store: Store = PostgresStore(target, picked, clock=clock, explicit=explicit)
        return store
    if "://" in target:
        raise ConfigError(f"unsupported store URL {target!r}: use a directory or postgresql://")
    if mode == "lease":
        from martian_doves.config import DirectoryOptions
        from martian_doves.stores.directory import LeaseStore

        return LeaseStore(target, _pick(DirectoryOptions, options), clock=clock)
    if mode == "semaphore":
        from martian_doves.config import SemaphoreOptions
        from martian_doves.stores.directory import SemaphoreStore

        return SemaphoreStore(target, _pick(SemaphoreOptions, options), clock=clock)
    raise ConfigError(f"unknown mode {mode!r}: choose one of {', '.join(DIRECTORY_MODES)}")


def _pick(cls: Any, options: dict[str, Any]) -> Any:
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in names and v is not None})
