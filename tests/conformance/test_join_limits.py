"""A join's successor may be larger than a state, on every store: ``--max-join-bytes``.

A handler's return is held to ``--max-state-bytes``; the successor a join builds from its
children (one entry per child, each child within that limit) may reach ``--max-join-bytes``
(64 MiB by default). A join over even that bound, and a join's handler that passes its
input on unchanged, fail their machine with ``bad_return`` and a message that says what to
do; the worker goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from contract_helpers import _submit

from martian_doves import codec
from martian_doves.config import WorkerOptions
from martian_doves.contract import Spawn
from martian_doves.model import JOIN_STATE, State, Status
from martian_doves.registry import Registry
from martian_doves.retry import RetryPolicy
from martian_doves.stores.base import Store
from martian_doves.worker import Worker

if TYPE_CHECKING:
    from conftest import TimeTravel


def _fan_out(store: Store, travel: TimeTravel, children: int, child_bytes: int,
             then: Any) -> tuple[Worker, list[dict[str, Any]]]:
    """A worker whose ``batch`` spawns ``children`` children that each end with ``child_bytes`` of payload."""
    joined: list[dict[str, Any]] = []

    def collect(p: dict[str, Any]) -> Any:
        joined.append(p)
        return then(p)

    registry = Registry()
    registry.register("batch", lambda p: Spawn([("item", {"i": i}) for i in range(p["n"])], then="collect",
                                               payload=p))
    registry.register("item", lambda p: {**p, "blob": "x" * child_bytes} if "blob" not in p else None)
    registry.register("collect", collect)
    registry.register("summary", lambda p: None)
    worker = Worker(store, registry, WorkerOptions(name="w1", retry=RetryPolicy(max_attempts=1, base_delay_seconds=0,
                                                                                  jitter=0)),
                    clock=travel.worker_clock())
    _submit(store, State("big.state", "batch", {"n": children}))
    return worker, joined


def _run(worker: Worker) -> None:
    for _ in range(200):
        if worker.step().claimed == 0:
            return
    raise AssertionError("the worker never ran out of work")


def test_a_join_larger_than_a_state_runs_with_default_limits(model_store: Store, travel: TimeTravel) -> None:
    """Children each well within the state limit whose results add up to more than it: the join
    runs with every entry, and its handler's summary ends the machine."""
    child_bytes = codec.DEFAULT_MAX_STATE_BYTES // 3
    worker, joined = _fan_out(model_store, travel, 4, child_bytes, lambda p: ("summary", {"n": len(p["children"])}))
    _run(worker)
    assert len(joined) == 1
    children = joined[0]["children"]
    assert [c["status"] for c in children] == ["done"] * 4
    assert all(len(c["payload"]["blob"]) == child_bytes for c in children)
    history = [(e.state, e.status) for e in model_store.history("big.state")]
    assert history == [("batch", Status.DONE), (JOIN_STATE, Status.DONE), ("collect", Status.DONE),
                       ("summary", Status.DONE)]
    assert model_store.status().failed == 0


def test_a_join_handler_passing_the_children_on_is_told_to_return_a_summary(model_store: Store,
                                                                           travel: TimeTravel) -> None:
    """The join's handler may not return its (larger than a state) input unchanged: ``bad_return``,
    with a message that says to return a summary."""
    worker, joined = _fan_out(model_store, travel, 4, codec.DEFAULT_MAX_STATE_BYTES // 3,
                              lambda p: ("summary", p))
    _run(worker)
    assert len(joined) == 1
    status = model_store.status()
    assert status.failed == 1
    name, code, message = status.recent_failures[0]
    assert (name, code) == ("big.state-2", "bad_return")
    assert "--max-state-bytes" in message and "summary" in message and "\n" not in message


@pytest.mark.store_limits(max_state_bytes=20_000, max_join_bytes=50_000)
def test_a_join_over_the_join_limit_fails_its_machine_not_the_worker(model_store: Store, travel: TimeTravel) -> None:
    """Children whose results add up to more than ``--max-join-bytes``: the join fails with
    ``bad_return`` naming the setting; the children ended, and the worker goes on."""
    worker, joined = _fan_out(model_store, travel, 4, 15_000, lambda p: None)
    _run(worker)
    assert joined == []
    status = model_store.status()
    assert status.failed == 1
    name, code, message = status.recent_failures[0]
    assert (name, code) == ("big.state-1", "bad_return")
    assert "--max-join-bytes" in message and "\n" not in message
    assert [e.status for e in model_store.history("big.state+3.state")][-1] is Status.DONE
    _submit(model_store, State("after.state", "collect", {}))
    _run(worker)
    assert [e.status for e in model_store.history("after.state")] == [Status.DONE]
