"""A fleet is only as narrow as its widest worker, on a folder store, in both modes (see ``mixed_fleet.py``).

In semaphore mode the assignment never gives the worker without the machine one of its states.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from acceptance_helpers import Doves, Running
from mixed_fleet import run_mixed_fleet

#: Short semaphore phases, so a test spans a few cycles of a second each.
SEMAPHORE = ("--assignment-seconds", "0.3", "--commitment-seconds", "0.3", "--update-seconds", "0.3",
             "--buffer-seconds", "0.1")


@pytest.mark.parametrize("mode", ["lease", "semaphore"])
def test_a_worker_without_the_machine_leaves_its_states_to_the_one_that_has_it(
        doves: Doves, start_doves: Callable[..., Running], machines_py: Path, tick_log: Path, tmp_path: Path,
        mode: str) -> None:
    run_mixed_fleet(doves, start_doves, str(tmp_path / "store"), machines_py, tick_log, tmp_path,
                    ("--mode", mode, *(SEMAPHORE if mode == "semaphore" else ())))
