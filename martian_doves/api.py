"""The Python API, mirroring the CLI: read and submit state files, run a worker, status."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from martian_doves import codec
from martian_doves.config import WorkerOptions
from martian_doves.errors import CodecError, DovesError, NotARegularFile
from martian_doves.model import State, StatusReport
from martian_doves.registry import Registry
from martian_doves.stores.base import Store, SubmitResult
from martian_doves.stores.directory import fsops
from martian_doves.worker import StepResult, Worker


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


def check_file(path: Path, registry: Registry | None = None,
               max_bytes: int = codec.DEFAULT_MAX_STATE_BYTES) -> FileCheck:
    """Read and validate one state file (name, size, JSON, document, and machine if given)."""
    try:
        codec.check_state_file_name(path.name)
        if path.is_symlink():
            raise NotARegularFile(f"{path.name}: is a symlink")
        state = codec.decode(fsops.read_regular(str(path), max_bytes), path.name)
        if registry is not None:
            registry.validate(state.state, state.payload)
        return FileCheck(str(path), state)
    except DovesError as e:
        return FileCheck(str(path), None, e)
    except FileNotFoundError:
        return FileCheck(str(path), None, CodecError(f"{path}: no such file"))
    except OSError as e:
        return FileCheck(str(path), None, CodecError(f"{path}: {e.strerror}"))


def check_paths(paths: Iterable[str | os.PathLike[str]], registry: Registry | None = None,
                max_bytes: int = codec.DEFAULT_MAX_STATE_BYTES) -> list[FileCheck]:
    """``check_file`` for every state file named or inside the folders named."""
    return [check_file(path, registry, max_bytes) for path in iter_state_paths(paths)]


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
    valid = [c.state for c in checks if c.state is not None]
    return store.submit(valid), [c for c in checks if not c.ok]


def run(store: Store, registry: Registry, options: WorkerOptions | None = None) -> StepResult:
    """Run one worker in this process until the store is finished (or ``--watch``-like forever)."""
    return Worker(store, registry, options).run()


def status(store: Store) -> StatusReport:
    """Counts, workers and recent failures of ``store``."""
    return store.status()
