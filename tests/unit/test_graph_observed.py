"""The state graph observed in a store's lineages: counts, failures, waits, timers, children, sampling."""

from __future__ import annotations

import pytest

from martian_doves.clock import FakeClock
from martian_doves.config import WorkerOptions
from martian_doves.contract import Next, Wait
from martian_doves.errors import ConfigError
from martian_doves.graph import END_ID, FAILED_ID, START_ID, EdgeKind, Graph, observed_graph
from martian_doves.loader import default_registry
from martian_doves.model import HistoryEntry, State
from martian_doves.registry import Registry
from martian_doves.retry import RetryPolicy
from martian_doves.stores.memory import MemoryStore
from martian_doves.worker import Worker


def _worker(store: MemoryStore, clock: FakeClock, registry: Registry | None = None) -> Worker:
    options = WorkerOptions(name="w1", retry=RetryPolicy(max_attempts=1, base_delay_seconds=0, jitter=0))
    return Worker(store, registry or default_registry(entry_points=False), options, clock=clock)


def _drain(worker: Worker) -> None:
    for _ in range(500):
        if worker.step().claimed == 0:
            return
    raise AssertionError("the worker never ran out of work")


def _count(graph: Graph, source: str, target: str, kind: EdgeKind | None = None) -> int | None:
    found = [e.count for e in graph.edges.values() if e.source == source and e.target == target
             and (kind is None or e.kind is kind)]
    assert len(found) <= 1, found
    return found[0] if found else None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def examples(clock: FakeClock) -> MemoryStore:
    """The examples, run to their ends: two orders paid, one timed out; one thumbnail of three failed."""
    store = MemoryStore(clock)
    store.submit([
        State("countdown.state", "countdown", {"count": 3, "tick_seconds": 0}),
        State("hello.state", "simple", {"target": "hi", "tick_seconds": 0}),
        State("traffic.state", "traffic-light-green", {"cycles": 2}),
        State("order-1.state", "shop-order-placed", {"order": 1, "pay_within_seconds": 60, "ship_after_seconds": 5}),
        State("order-2.state", "shop-order-placed", {"order": 2, "pay_within_seconds": 3}),
        State("order-3.state", "shop-order-placed", {"order": 3, "pay_within_seconds": 60, "ship_after_seconds": 5}),
        State("thumbnails.state", "thumbnails", {"images": ["cat.png", "dog.png", "corrupt.gif"]}),
    ])
    worker = _worker(store, clock)
    _drain(worker)
    store.send("order-1.state", "payment", {"amount": 12})
    store.send("order-3.state", "payment", {"amount": 7})
    _drain(worker)
    clock.advance(100)  # the timers fire, order-2's wait times out
    _drain(worker)
    return store


def test_the_examples_lineages_make_a_counted_graph(examples: MemoryStore) -> None:
    graph = observed_graph(examples)
    assert graph.observed and graph.notes == []
    assert _count(graph, START_ID, "countdown") == 1
    assert _count(graph, "countdown", "countdown") == 2
    assert _count(graph, "countdown", END_ID) == 1
    assert _count(graph, "traffic-light-red", "traffic-light-green") == 1
    assert _count(graph, "traffic-light-red", END_ID) == 1
    assert _count(graph, START_ID, "shop-order-placed") == 3
    wait = "doves.wait:shop-order-placed:payment"
    assert _count(graph, "shop-order-placed", wait) == 3
    assert _count(graph, wait, "shop-order-paid", EdgeKind.EVENT) == 2
    assert graph.edges[(wait, "shop-order-paid", EdgeKind.EVENT, "payment")].count == 2
    assert _count(graph, wait, "shop-order-cancelled", EdgeKind.TIMEOUT) == 1
    assert _count(graph, "shop-order-paid", "shop-order-shipped") == 2
    assert _count(graph, "thumbnails", "thumbnail", EdgeKind.SPAWN) == 3
    assert _count(graph, "thumbnail", FAILED_ID, EdgeKind.FAIL) == 1
    assert _count(graph, "thumbnail", END_ID) == 2
    assert _count(graph, "thumbnails", "doves.join:thumbnails") == 1
    assert _count(graph, "doves.join:thumbnails", "thumbnails-done", EdgeKind.JOIN) == 1
    assert START_ID not in {e.source for e in graph.edges.values() if e.target == "thumbnail"}  # children spawn
    assert all(not node.counts for node in graph.nodes.values())  # everything has settled


def test_states_not_settled_are_counted_on_their_nodes_and_a_waiting_timer_is_a_timer(clock: FakeClock) -> None:
    store = MemoryStore(clock)
    store.submit([State(f"order-{n}.state", "shop-order-placed", {"order": n, "ship_after_seconds": 50 * 10 ** n})
                  for n in range(3)] + [State("later.state", "countdown", {"count": 2, "tick_seconds": 0})])
    builtin = default_registry(entry_points=False)
    orders = Registry(builtin.spec(name) for name in builtin.names() if name.startswith("shop-order-"))
    worker = _worker(store, clock, orders)  # it cannot run the countdown, which stays pending
    _drain(worker)
    store.send("order-0.state", "payment", {})
    store.send("order-1.state", "payment", {})
    _drain(worker)
    graph = observed_graph(store)
    assert graph.nodes["countdown"].counts == {"pending": 1}
    assert graph.nodes["doves.wait:shop-order-placed:payment"].counts == {"waiting": 1}
    assert graph.nodes["shop-order-shipped"].counts == {"scheduled": 2}
    assert _count(graph, "shop-order-paid", "shop-order-shipped", EdgeKind.TIMER) == 2

    clock.advance(60)
    _drain(worker)  # one timer fired and ran: while the other waits, both count as timers
    graph = observed_graph(store, states=["shop-order-placed"])
    assert _count(graph, "shop-order-paid", "shop-order-shipped", EdgeKind.TIMER) == 2
    assert _count(graph, "shop-order-paid", "shop-order-shipped", EdgeKind.NEXT) is None
    assert _count(graph, "shop-order-shipped", END_ID) == 1
    assert "countdown" not in graph.nodes  # only the machines that start in shop-order-placed


def test_a_wait_that_times_out_with_nowhere_to_go_is_a_failure(clock: FakeClock) -> None:
    registry = Registry()
    registry.register("ask", lambda payload: Wait("answer", then="answered", timeout=5, payload=payload))
    registry.register("answered", lambda payload: None)
    store = MemoryStore(clock)
    store.submit([State("q.state", "ask", {})])
    worker = _worker(store, clock, registry)
    _drain(worker)
    clock.advance(10)
    _drain(worker)
    graph = observed_graph(store)
    assert _count(graph, "doves.wait:ask:answer", FAILED_ID, EdgeKind.TIMEOUT) == 1


def test_a_large_store_is_sampled_and_says_so(clock: FakeClock) -> None:
    store = MemoryStore(clock)
    for n in range(5):
        store.submit([State(f"c{n}.state", "countdown", {"count": 2, "tick_seconds": 0})])
        clock.advance(1)
    _drain(_worker(store, clock))
    graph = observed_graph(store, limit=2)
    assert _count(graph, START_ID, "countdown") == 2
    assert graph.notes == ["read the newest 2 machines (the limit, --limit): a sample of the store"]
    assert observed_graph(store, limit=5).notes == []  # the whole store: no sample
    assert _count(observed_graph(store, ["c0.state-1"]), START_ID, "countdown") == 1  # any state names its machine


def test_a_store_that_cannot_name_its_machines_is_refused() -> None:
    class Nameless:
        description = "nameless"

        def history(self, name: str) -> list[HistoryEntry]:
            return []

    with pytest.raises(ConfigError, match="nameless cannot list its machines"):
        observed_graph(Nameless())  # type: ignore[arg-type]


def test_a_child_whose_spawner_is_gone_starts_from_the_start(clock: FakeClock, examples: MemoryStore) -> None:
    class Forgetful:
        """The examples' store, with the thumbnails machine's lineage gone."""

        description = "forgetful"

        def history(self, name: str) -> list[HistoryEntry]:
            return [] if name.startswith("thumbnails.state") and "+" not in name else examples.history(name)

        def machine_names(self, limit: int | None = None) -> list[str]:
            return examples.machine_names(limit)

    graph = observed_graph(Forgetful())  # type: ignore[arg-type]
    assert _count(graph, START_ID, "thumbnail") == 3
    assert graph.notes == ["3 child machines whose spawning state is gone are drawn from the start"]


def test_a_timer_seen_while_waiting(clock: FakeClock) -> None:
    registry = Registry()
    registry.register("soon", lambda payload: Next("later", payload, after=30))
    registry.register("later", lambda payload: None)
    store = MemoryStore(clock)
    store.submit([State("t.state", "soon", {})])
    _drain(_worker(store, clock, registry))
    graph = observed_graph(store)
    assert _count(graph, "soon", "later", EdgeKind.TIMER) == 1
    assert graph.nodes["later"].counts == {"scheduled": 1}
