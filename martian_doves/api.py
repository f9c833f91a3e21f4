"""The Python API, mirroring the CLI: open stores, read and submit state files, run a worker, status."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from martian_doves import codec
from martian_doves.config import StoreConfig, WorkerOptions
from martian_doves.errors import CodecError, ConfigError, DovesError, FileTooLarge, NotARegularFile
from martian_doves.model import State, StatusReport
from martian_doves.registry import Registry
from martian_doves.steps import StepResult
from martian_doves.stores import open_store
from martian_doves.stores.base import Store, SubmitResult
from martian_doves.stores.directory import fsops
from martian_doves.worker import Worker


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one file given to ``validate``/``submit``."""

    path: str
    state: State | None
    error: DovesError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def iter_state_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files named directly, and the state files (``*.state``, ``*.state-N``) inside folders."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and not path.is_symlink():
            for child in sorted(path.iterdir()):
                if codec.is_state_file_name(child.name):
                    yield child
        else:
            yield path


def check_file(path: Path, registry: Registry | None = None, max_bytes: int = codec.DEFAULT_MAX_STATE_BYTES,
               max_join_bytes: int | None = None) -> FileCheck:
    """Read and validate one state file (name, size, JSON, document, and machine if given).

    Args:
        max_join_bytes: a join's successor (whose parent, a join entry, is in the same folder)
            may be this large; None: no file over ``max_bytes`` is valid.
    """
    try:
        codec.check_state_file_name(path.name)
        if path.is_symlink():
            raise NotARegularFile(f"{path.name}: is a symlink")
        raw = fsops.read_file(str(path), max(max_bytes, max_join_bytes or 0))
        state = codec.decode(raw, path.name)
        if len(raw) > max_bytes and not _joined_beside(path, state, max_bytes):
            raise FileTooLarge(f"{path.name}: {len(raw)} bytes is over the {max_bytes}-byte limit")
        if registry is not None:
            registry.validate(state.state, state.payload)
        return FileCheck(str(path), state)
    except DovesError as e:
        return FileCheck(str(path), None, e)
    except FileNotFoundError:
        return FileCheck(str(path), None, CodecError(f"{path}: no such file"))
    except OSError as e:
        return FileCheck(str(path), None, CodecError(f"{path}: {e.strerror}"))


def _joined_beside(path: Path, state: State, max_bytes: int) -> bool:
    """Whether ``state`` (read from ``path``) is a join's successor: its parent, in the same folder, is a
    join entry. Only a worker writes a state over ``max_bytes``, and only as a join's successor."""
    if not state.parent:
        return False
    parent = path.with_name(state.parent)
    try:
        if parent.is_symlink():
            return False
        return codec.is_join_entry(codec.decode(fsops.read_file(str(parent), max_bytes), state.parent))
    except (OSError, DovesError):
        return False


def check_paths(paths: Iterable[str | os.PathLike[str]], registry: Registry | None = None,
                max_bytes: int = codec.DEFAULT_MAX_STATE_BYTES, max_join_bytes: int | None = None) -> list[FileCheck]:
    """``check_file`` for every state file named or inside the folders named."""
    return [check_file(path, registry, max_bytes, max_join_bytes) for path in iter_state_paths(paths)]


def require_folder(config: StoreConfig) -> None:
    """Refuse a folder store whose folder is not there, so a mistyped path never becomes a new store.

    Raises:
        ConfigError: ``config`` names a folder that does not exist (or is a file).
    """
    if config.is_postgres or os.path.isdir(config.target):
        return
    why = "it is not a folder" if os.path.exists(config.target) else "the folder does not exist"
    raise ConfigError(f"no store at {config.target}: {why} (create the folder, or let "
                      f"doves submit {config.target} FILES... do it)")


def open_existing(config: StoreConfig, *, read_only: bool = False) -> Store:
    """Open a store that must exist already: a folder that is there, a schema that is there.

    For commands that only read or change existing states: a mistyped folder or schema
    is then an error rather than a new, empty store.

    Args:
        read_only: only read it (status, history ...): create, migrate or clean nothing;
            a folder with no state files and no store folders is no store.

    Raises:
        ConfigError: there is no such store (one line).
    """
    require_folder(config)
    return open_store(config.with_options(create_schema=False) if config.is_postgres else config,
                      read_only=read_only)


@contextlib.contextmanager
def opened(config: StoreConfig, *, existing: bool = True, read_only: bool = False) -> Iterator[Store]:
    """``with opened(config) as store:`` the store, closed afterwards.

    Args:
        existing: the store must exist already (see ``open_existing``); False creates it.
        read_only: see ``open_existing``.
    """
    store = open_existing(config, read_only=read_only) if existing else open_store(config)
    try:
        yield store
    finally:
        store.close()


def submit_checked(store: Store, checks: Sequence[FileCheck]) -> list[tuple[FileCheck, SubmitResult]]:
    """Submit the states of the valid ``checks``; each with what happened to it."""
    valid = [check for check in checks if check.state is not None]
    results = store.submit([check.state for check in valid if check.state is not None])
    return list(zip(valid, results, strict=True))


def submit(store: Store, states: Sequence[State]) -> list[SubmitResult]:
    """Add root states to ``store``; existing names are refused, never replaced."""
    return store.submit(states)


def submit_paths(store: Store, paths: Iterable[str | os.PathLike[str]],
                 registry: Registry | None = None) -> tuple[list[SubmitResult], list[FileCheck]]:
    """Validate state files and submit the valid ones.

    Returns:
        (results for the files submitted, checks of the files refused as invalid)
    """
    checks = check_paths(paths, registry)
    return [result for _, result in submit_checked(store, checks)], [c for c in checks if not c.ok]


def run(store: Store, registry: Registry, options: WorkerOptions | None = None) -> StepResult:
    """Run one worker in this process until the store is finished (or ``--watch``-like forever)."""
    return Worker(store, registry, options).run()


def status(store: Store) -> StatusReport:
    """Counts, workers and recent failures of ``store``."""
    return store.status()
