"""Small helpers the conformance tests share: states, submits, claims and workers on a store."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from martian_doves.config import WorkerOptions
from martian_doves.model import Claim, State, Status
from martian_doves.registry import Registry
from martian_doves.retry import RetryPolicy
from martian_doves.stores.base import Store
from martian_doves.worker import Worker

if TYPE_CHECKING:
    from conftest import ShiftedClock


def _count_down(payload: dict[str, Any]) -> dict[str, Any] | None:
    count = int(payload["count"]) - 1
    return {"count": count} if count > 0 else None


def _registry(**extra: Callable[[Any], Any]) -> Registry:
    registry = Registry()
    registry.register("count", _count_down)
    for name, handler in extra.items():
        registry.register(name, handler)
    return registry


def _state(name: str, count: int = 1, state: str = "count") -> State:
    return State(name, state, {"count": count})


def _submit(store: Store, *states: State) -> None:
    results = store.submit(list(states))
    assert [r.added for r in results] == [True] * len(states), results


def _claim_one(store: Store, worker: str = "w1") -> Claim:
    claims = store.claim(worker, 1)
    assert len(claims) == 1, claims
    return claims[0]


def _worker(store: Store, clock: ShiftedClock, name: str = "w1", registry: Registry | None = None,
            **options: Any) -> Worker:
    options.setdefault("retry", RetryPolicy(max_attempts=3, base_delay_seconds=0, jitter=0))
    return Worker(store, registry or _registry(), WorkerOptions(name=name, **options), clock=clock)


def _drain(worker: Worker) -> None:
    """Step until nothing is claimable and the store is finished (no retries pending)."""
    for _ in range(1000):
        if worker.step().claimed == 0 and worker.store.is_finished():
            return
    raise AssertionError("the store never finished")


def _lineage(store: Store, name: str) -> list[tuple[str, Status, int | None]]:
    return [(e.name, e.status, (e.payload or {}).get("count")) for e in store.history(name)]
