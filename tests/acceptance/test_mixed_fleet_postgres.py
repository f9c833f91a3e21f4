"""A fleet is only as narrow as its widest worker, on a PostgreSQL store (see ``mixed_fleet.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from acceptance_helpers import Doves, Running
from mixed_fleet import run_mixed_fleet

pytest.importorskip("psycopg")


def test_a_worker_without_the_machine_leaves_its_states_to_the_one_that_has_it(
        doves: Doves, start_doves: Callable[..., Running], machines_py: Path, tick_log: Path, tmp_path: Path,
        pg_url: str) -> None:
    run_mixed_fleet(doves, start_doves, pg_url, machines_py, tick_log, tmp_path)
