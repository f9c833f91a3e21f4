"""The built-in machines keep the seed's payloads, messages and meaning.

They run through a real ``Worker`` on the memory store with ``tick_seconds: 0`` so the
seed's one-second (or ten-second) ticks cost nothing. The default pauses are checked
by recording the requested sleep instead of sleeping it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from martian_doves import builtin, codec
from martian_doves.clock import FakeClock
from martian_doves.config import WorkerOptions
from martian_doves.loader import default_registry
from martian_doves.model import State, Status
from martian_doves.stores.memory import MemoryStore
from martian_doves.worker import Worker

EXAMPLES = Path(builtin.__file__).resolve().parent / "examples"


def _run(*states: State) -> MemoryStore:
    store = MemoryStore(clock=FakeClock())
    assert all(r.added for r in store.submit(list(states)))
    worker = Worker(store, default_registry(entry_points=False), WorkerOptions(name="w"), clock=FakeClock())
    while worker.step().claimed:
        pass
    assert store.is_finished()
    return store


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "martian_doves.machines"]


@pytest.fixture(autouse=True)
def _capture_machine_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="martian_doves.machines")


def test_countdown_five_runs_five_ticks_and_four_successors(caplog: pytest.LogCaptureFixture) -> None:
    """The seed's countdown.state: count 5 gives 5 ticks, 4 successors, and the seed's messages."""
    store = _run(State("countdown.state", "countdown", {"count": 5, "tick_seconds": 0}))
    history = store.history("countdown.state")
    assert [e.name for e in history] == ["countdown.state"] + [f"countdown.state-{i}" for i in range(1, 5)]
    assert [e.payload["count"] for e in history if e.payload] == [5, 4, 3, 2, 1]
    assert all(e.status is Status.DONE for e in history)
    assert _messages(caplog) == [f" * From CountdownMachine: Counting down! {n} remaining." for n in range(4, -1, -1)]


def test_tick_seconds_is_carried_to_successors() -> None:
    """``tick_seconds`` stays in every successor so the whole lineage runs at the chosen speed."""
    store = _run(State("c.state", "countdown", {"count": 3, "tick_seconds": 0}))
    assert [e.payload for e in store.history("c.state")] == [
        {"count": 3, "tick_seconds": 0}, {"count": 2, "tick_seconds": 0}, {"count": 1, "tick_seconds": 0}]


def test_seed_payloads_have_no_extra_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``tick_seconds`` the successors hold exactly the seed's payload: ``{"count": n}``."""
    monkeypatch.setattr(builtin.time, "sleep", lambda seconds: None)
    store = _run(State("c.state", "countdown", {"count": 3}))
    assert [e.payload for e in store.history("c.state")] == [{"count": 3}, {"count": 2}, {"count": 1}]


def test_slow_countdown(caplog: pytest.LogCaptureFixture) -> None:
    """slow-countdown counts like countdown, with the SlowCountdownMachine messages."""
    store = _run(State("slow.state", "slow-countdown", {"count": 3, "tick_seconds": 0}))
    assert len(store.history("slow.state")) == 3
    assert _messages(caplog) == [f" * From SlowCountdownMachine: Counting down! {n} remaining." for n in (2, 1, 0)]


def test_simple_says_its_target_and_ends(caplog: pytest.LogCaptureFixture) -> None:
    """simple logs the seed's line for its target and has no successor."""
    store = _run(State("hello.state", "simple", {"target": "Hello.", "tick_seconds": 0}))
    assert [e.name for e in store.history("hello.state")] == ["hello.state"]
    assert _messages(caplog) == [" * From SimpleMachine: I am saying Hello."]


def test_traffic_light_cycles_through_states(caplog: pytest.LogCaptureFixture) -> None:
    """The multi-state example: green → yellow → red per cycle, payload carried, cycles counted down."""
    store = _run(State("traffic.state", "traffic-light-green", {"light": "Main St", "cycles": 2}))
    history = store.history("traffic.state")
    assert [e.state for e in history] == [
        "traffic-light-green", "traffic-light-yellow", "traffic-light-red",
        "traffic-light-green", "traffic-light-yellow", "traffic-light-red",
    ]
    assert [e.payload["cycles"] for e in history if e.payload] == [2, 2, 2, 1, 1, 1]
    assert all(e.payload and e.payload["light"] == "Main St" for e in history)
    assert _messages(caplog)[-1] == " * Traffic light Main St: red (0 cycles left)"


@pytest.mark.parametrize(
    ("state", "payload", "seconds"),
    [
        ("simple", {"target": "x"}, [1.0]),
        ("countdown", {"count": 1}, [1.0]),
        ("slow-countdown", {"count": 1}, [10.0]),
        ("countdown", {"count": 1, "tick_seconds": 0}, []),
        ("countdown", {"count": 1, "tick_seconds": 0.25}, [0.25]),
        ("countdown", {"count": 1, "tick_seconds": -3}, []),
        ("countdown", {"count": 1, "tick_seconds": "fast"}, []),
        ("countdown", {"count": 1, "tick_seconds": True}, []),
        ("traffic-light-green", {}, []),
    ],
    ids=["simple", "countdown", "slow-countdown", "zero", "custom", "negative", "not-a-number", "bool", "traffic"],
)
def test_tick_pauses(monkeypatch: pytest.MonkeyPatch, state: str, payload: dict[str, Any],
                     seconds: list[float]) -> None:
    """The seed's pauses (1 s, 10 s for slow-countdown); ``tick_seconds`` overrides them, and 0 (or
    anything that is not a positive number) means no pause, never a crash."""
    slept: list[float] = []
    monkeypatch.setattr(builtin.time, "sleep", slept.append)
    default_registry(entry_points=False).tick(state, payload)
    assert slept == seconds


def test_missing_count_is_an_error_the_worker_retries() -> None:
    """A countdown without ``count`` raises (a KeyError), which the worker treats as a failing tick."""
    with pytest.raises(KeyError):
        default_registry(entry_points=False).tick("countdown", {"tick_seconds": 0})


def test_packaged_examples_are_valid_states() -> None:
    """Every example shipped for ``doves demo`` decodes and names a built-in machine."""
    registry = default_registry(entry_points=False)
    files = sorted(EXAMPLES.glob("*.state"))
    assert {f.name for f in files} >= {"countdown.state", "hello.state", "goodbye.state", "howdoyoudo.state",
                                        "slowcountdown.state", "traffic.state"}
    for path in files:
        state = codec.decode(path.read_bytes(), path.name)
        registry.validate(state.state, state.payload)
    seed = codec.decode((EXAMPLES / "countdown.state").read_bytes(), "countdown.state")
    assert seed.payload == {"count": 5}
