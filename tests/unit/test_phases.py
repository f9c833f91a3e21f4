"""Phase timings: wrapped methods still do their work, their time goes to their phase, nested reads count once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from martian_doves.config import WorkerOptions
from martian_doves.loader import default_registry
from martian_doves.model import State
from martian_doves.phases import PHASES, PhaseTimer, combine, exclusive_seconds
from martian_doves.stores.directory import LeaseStore
from martian_doves.worker import Worker


class _Files:
    def read_state(self, name: str) -> str:
        return f"read {name}"


class _Store:
    def __init__(self) -> None:
        self.files = _Files()
        self.phase_points = (("files", "read_state", "read"), ("", "write", "write"))

    def claim(self) -> str:
        return self.files.read_state("x")

    def write(self) -> str:
        return self.files.read_state("y")  # a read inside a write is part of the write

    def commit(self) -> str:
        return self.write()


class _Registry:
    def tick(self, value: int) -> int:
        return value + 1


def test_wrapped_methods_return_as_before_and_count_once_in_the_innermost_timed_phase() -> None:
    timer = PhaseTimer()
    store, registry = _Store(), _Registry()
    timer.instrument(store, registry)
    assert store.claim() == "read x"
    assert store.commit() == "read y"
    assert registry.tick(1) == 2
    calls = {phase: totals["calls"] for phase, totals in timer.as_dict().items()}
    assert calls == {"claim": 1, "read": 1, "tick": 1, "write": 1, "commit": 1}


def test_a_batch_commit_counts_once_per_transition_it_commits() -> None:
    class _BatchStore(_Store):
        def commit_many(self, transitions: list[int], *, keep: bool = False) -> list[int]:
            return [t + 1 for t in transitions]

    timer = PhaseTimer()
    store = _BatchStore()
    timer.instrument(store, _Registry())
    assert store.commit_many([1, 2, 3], keep=True) == [2, 3, 4]
    assert timer.as_dict()["commit"]["calls"] == 3


def test_exclusive_seconds_take_the_read_out_of_the_claim_and_the_write_out_of_the_commit() -> None:
    totals: dict[str, Any] = {phase: {"calls": 1, "seconds": 1.0} for phase in PHASES}
    totals["claim"]["seconds"], totals["commit"]["seconds"] = 3.0, 5.0
    assert exclusive_seconds(totals) == {"claim": 2.0, "read": 1.0, "tick": 1.0, "write": 1.0, "commit": 4.0}
    assert combine([totals, totals])["commit"] == {"calls": 2, "seconds": 10.0}


def test_a_worker_on_a_timed_folder_store_times_every_phase_of_its_transitions(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path / "store")
    store.submit([State(f"m{i}.state", "countdown", {"count": 3, "tick_seconds": 0}) for i in range(4)])
    worker = Worker(store, default_registry(), WorkerOptions(name="w1"))
    timer = PhaseTimer()
    timer.instrument(store, worker.registry)
    worker.run()
    calls = {phase: totals["calls"] for phase, totals in timer.as_dict().items()}
    assert calls["commit"] == calls["tick"] == 12
    assert calls["write"] == 8  # the last tick of each machine writes nothing
    assert calls["read"] >= 4 and calls["claim"] >= 4
    store.close()
