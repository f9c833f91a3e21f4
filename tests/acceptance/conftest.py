"""Fixtures of the acceptance tests (helpers live in ``acceptance_helpers``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from acceptance_helpers import MACHINES_SOURCE, Doves, Running


@pytest.fixture
def doves(tmp_path: Path) -> Doves:
    """Run a ``doves`` command: ``doves("status", str(store), "--json")``."""
    return Doves(tmp_path)


@pytest.fixture
def start_doves(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start a ``doves`` command in the background; whatever is left is killed afterwards."""
    started: list[Running] = []

    def start(*args: str, env: Mapping[str, str] | None = None) -> Running:
        running = Running(args, env, tmp_path)
        started.append(running)
        return running

    yield start
    for running in started:
        running.cleanup()


@pytest.fixture
def machines_py(tmp_path: Path) -> Path:
    """A user machine module file (see ``MACHINES_SOURCE``)."""
    path = tmp_path / "test_machines.py"
    path.write_text(MACHINES_SOURCE)
    return path


@pytest.fixture
def tick_log(tmp_path: Path) -> Path:
    """The file the test machines append their tick lines to."""
    return tmp_path / "ticks.log"
