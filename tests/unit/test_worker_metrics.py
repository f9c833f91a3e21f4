"""The workers' metrics by state name (issue 10, item 2): labels stay bounded, queue waits are measured."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from martian_doves.metrics import OTHER_STATE, WorkerMetrics
from martian_doves.model import WAIT_STATE, Claim, State
from martian_doves.steps import Event


def _claim(name: str, state: str, due_at: float | None = None) -> Claim:
    return Claim(State(name, state, {}), f"token-{name}", "w-1", due_at=due_at)


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_transitions_and_tick_seconds_carry_the_state_name() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, states=["resize", "upload"])
    for name, state in (("a.state", "resize"), ("b.state", "resize"), ("c.state", "upload")):
        claim = _claim(name, state)
        metrics(Event.CLAIMED, claim)
        metrics(Event.COMMITTED, claim)
    failing = _claim("d.state", "upload")
    metrics(Event.CLAIMED, failing)
    metrics(Event.FAILED, failing)
    assert _value(registry, "doves_transitions_total", state="resize", outcome="committed") == 2
    assert _value(registry, "doves_transitions_total", state="upload", outcome="committed") == 1
    assert _value(registry, "doves_transitions_total", state="upload", outcome="failed") == 1
    assert _value(registry, "doves_tick_seconds_count", state="resize") == 2
    assert _value(registry, "doves_tick_seconds_count", state="upload") == 2
    # Every machine's series exists from the start, at 0.
    assert registry.get_sample_value("doves_transitions_total", {"state": "resize", "outcome": "lost"}) == 0


def test_state_names_without_a_machine_add_no_series() -> None:
    """Bad input (thousands of made-up state names) must not grow the label set: they count as ``other``."""
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, states=["resize"])
    for index in range(50):
        claim = _claim(f"x{index}.state", f"made-up-{index}")
        metrics(Event.CLAIMED, claim)
        metrics(Event.FAILED, claim)
    wait = _claim("w.state", WAIT_STATE)
    metrics(Event.CLAIMED, wait)
    metrics(Event.COMMITTED, wait)
    assert _value(registry, "doves_transitions_total", state=OTHER_STATE, outcome="failed") == 50
    assert _value(registry, "doves_transitions_total", state=WAIT_STATE, outcome="committed") == 1
    states = {sample.labels["state"] for family in registry.collect() if family.name == "doves_transitions"
              for sample in family.samples}
    assert states == {"resize", OTHER_STATE, WAIT_STATE, "doves.join"}


def test_queue_wait_runs_from_due_to_claim_and_skips_claims_that_do_not_say() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, states=["resize"])
    metrics(Event.CLAIMED, _claim("a.state", "resize", due_at=time.time() - 42))
    metrics(Event.CLAIMED, _claim("b.state", "resize", due_at=None))  # chained, or taken over
    assert _value(registry, "doves_queue_wait_seconds_count", state="resize") == 1
    waited = _value(registry, "doves_queue_wait_seconds_sum", state="resize")
    assert waited >= 42
    assert _value(registry, "doves_queue_wait_seconds_bucket", state="resize", le="30.0") == 0
    assert _value(registry, "doves_queue_wait_seconds_bucket", state="resize", le="60.0") == 1
