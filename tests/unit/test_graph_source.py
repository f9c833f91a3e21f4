"""The state graph declared in handlers' source: every form a handler may return, read without running it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from martian_doves.graph import EdgeKind, Graph, NodeKind
from martian_doves.graph_source import declared_graph
from martian_doves.loader import default_registry
from martian_doves.registry import Registry

#: Handlers returning every form the contract reads, through the ways code reaches them. None of them
#: may run while the graph is drawn: each one would raise.
MACHINES = '''
import dataclasses
import enum
from dataclasses import dataclass

from martian_doves import contract
from martian_doves.contract import Next, Spawn, Wait
from martian_doves.registry import machine

GO_ON = "tricky-end"

class Step(enum.StrEnum):
    NEXT = "tricky-enum-target"

@dataclass
class Order:
    n: int

def _boom():
    raise AssertionError("a handler ran while its graph was drawn")

def _go(target, payload):
    return (target, payload)

def _maybe(payload, count):
    return None if count == 0 else dict(payload)

@machine("tricky-start")
def start(payload):
    _boom()
    if payload["a"]:
        return ("tricky-tuple", payload)
    if payload["b"]:
        return "tricky-bare-tuple", payload
    if payload["c"]:
        return Next("tricky-timer", payload, after=30)
    if payload["d"]:
        return contract.Next(state="tricky-next", payload=payload)
    if payload["e"]:
        return _go("tricky-helper", payload)
    if payload["f"]:
        return (GO_ON, payload)
    if payload["g"]:
        return (Step.NEXT, payload)
    target = "tricky-local-a" if payload["h"] else "tricky-local-b"
    if payload["i"]:
        return (target, payload)
    if payload["j"]:
        return ("tricky-" + payload["k"], payload)
    return _maybe(payload, payload["count"])

@machine("tricky-tuple")
def tuple_(payload):
    _boom()
    return {**payload, "x": 1}

@machine("tricky-bare-tuple")
def bare(payload):
    _boom()
    return payload

@machine("tricky-timer")
def timer(payload):
    _boom()
    return Wait("payment", then="tricky-paid", timeout=60)

@machine("tricky-next")
def next_(payload):
    _boom()
    return Wait("letter", then="tricky-paid", on_timeout="tricky-end", timeout=5)

@machine("tricky-helper")
def helper(payload):
    _boom()
    return Spawn([("tricky-child", {}), ("tricky-child", {}), ("tricky-other-child", {})], then="tricky-joined")

@machine("tricky-enum-target")
def enum_target(payload):
    match payload:
        case {"x": 1}:
            return None
        case _:
            raise ValueError("no")

@machine("tricky-typed", payload=Order)
def typed(order):
    return dataclasses.replace(order, n=order.n - 1) if order.n else None

@machine("tricky-end")
def end(payload):
    return None

@machine("tricky-paid")
def paid(payload):
    return Order(1)

@machine("tricky-local-a")
def local_a(payload):
    pass

@machine("tricky-local-b")
def local_b(payload):
    while True:
        return None

@machine("tricky-child")
def child(payload):
    return None

@machine("tricky-joined")
def joined(payload):
    return None

@machine("tricky-mystery")
def mystery(payload):
    return payload["next"]
'''


@pytest.fixture
def tricky(tmp_path: Path) -> Registry:
    path = tmp_path / "tricky.py"
    path.write_text(textwrap.dedent(MACHINES))
    return default_registry([str(path)], entry_points=False)


def _edges(graph: Graph, source: str) -> set[tuple[str, str, str | None]]:
    return {(e.target, e.kind.value, e.label) for e in graph.edges.values() if e.source == source}


def test_the_seed_machines_loop_on_themselves_and_end() -> None:
    """A dict returned through helpers (``_countdown`` → ``_carry``) is the same state again; ``simple``
    never returns, so it ends."""
    graph = declared_graph(default_registry(entry_points=False), ["simple", "countdown", "slow-countdown"])
    assert _edges(graph, "doves.start") == {("simple", "start", None), ("countdown", "start", None),
                                            ("slow-countdown", "start", None)}
    assert _edges(graph, "simple") == {("doves.end", "end", None)}
    assert _edges(graph, "countdown") == {("countdown", "next", None), ("doves.end", "end", None)}
    assert _edges(graph, "slow-countdown") == {("slow-countdown", "next", None), ("doves.end", "end", None)}
    assert graph.notes == []


def test_the_traffic_light_cycles() -> None:
    graph = declared_graph(default_registry(entry_points=False), ["traffic-light-green"])
    assert _edges(graph, "traffic-light-green") == {("traffic-light-yellow", "next", None)}
    assert _edges(graph, "traffic-light-yellow") == {("traffic-light-red", "next", None)}
    assert _edges(graph, "traffic-light-red") == {("traffic-light-green", "next", None), ("doves.end", "end", None)}
    assert next(iter(graph.edges.values())).kind is EdgeKind.START  # the beginning comes first


def test_the_order_waits_for_its_payment_then_ships_on_a_timer() -> None:
    graph = declared_graph(default_registry(entry_points=False), ["shop-order-placed"])
    wait = "doves.wait:shop-order-placed:payment"
    assert graph.nodes[wait].kind is NodeKind.WAIT and graph.nodes[wait].label == "wait for payment"
    assert _edges(graph, "shop-order-placed") == {(wait, "next", None)}
    assert _edges(graph, wait) == {("shop-order-paid", "event", "payment"),
                                   ("shop-order-cancelled", "timeout", "timeout")}
    assert _edges(graph, "shop-order-paid") == {("shop-order-shipped", "timer", "timer")}
    assert set(graph.nodes) == {"doves.start", "shop-order-placed", wait, "shop-order-paid", "shop-order-cancelled",
                                "shop-order-shipped", "doves.end"}


def test_thumbnails_spawn_children_and_join() -> None:
    graph = declared_graph(default_registry(entry_points=False), ["thumbnails"])
    join = "doves.join:thumbnails"
    assert graph.nodes[join].kind is NodeKind.JOIN
    assert _edges(graph, "thumbnails") == {(join, "next", None), ("thumbnail", "spawn", None)}
    assert _edges(graph, join) == {("thumbnails-done", "join", None)}
    assert _edges(graph, "thumbnail") == {("doves.end", "end", None)}


def test_every_form_of_return_is_read_without_running_a_handler(tricky: Registry) -> None:
    graph = declared_graph(tricky, ["tricky-start"])
    assert _edges(graph, "tricky-start") == {
        ("tricky-tuple", "next", None), ("tricky-bare-tuple", "next", None),
        ("tricky-timer", "timer", "after 30 s"), ("tricky-next", "next", None),
        ("tricky-helper", "next", None),  # the helper's parameter is bound to the caller's argument
        ("tricky-end", "next", None),  # a module constant
        ("tricky-enum-target", "next", None),  # an enum member
        ("tricky-local-a", "next", None), ("tricky-local-b", "next", None),  # a local assigned either
        ("doves.unknown:tricky-start", "next", "not known"),  # a name built at run time
        ("tricky-start", "next", None), ("doves.end", "end", None),  # through _maybe: dict(...) or None
    }
    assert _edges(graph, "tricky-tuple") == {("tricky-tuple", "next", None)}
    assert _edges(graph, "tricky-bare-tuple") == {("tricky-bare-tuple", "next", None)}  # the payload itself
    timer_wait = "doves.wait:tricky-timer:payment"
    assert _edges(graph, timer_wait) == {("tricky-paid", "event", "payment"),
                                         ("doves.failed", "timeout", "timeout 60 s")}
    letter_wait = "doves.wait:tricky-next:letter"
    assert _edges(graph, letter_wait) == {("tricky-paid", "event", "letter"), ("tricky-end", "timeout", "timeout 5 s")}
    assert _edges(graph, "tricky-helper") == {("doves.join:tricky-helper", "next", None),
                                              ("tricky-child", "spawn", None), ("tricky-other-child", "spawn", None)}
    assert _edges(graph, "doves.join:tricky-helper") == {("tricky-joined", "join", None)}
    assert _edges(graph, "tricky-enum-target") == {("doves.end", "end", None)}  # match: a case returns, one raises
    assert _edges(graph, "tricky-paid") == {("tricky-paid", "next", None)}  # a payload record
    assert _edges(graph, "tricky-local-a") == {("doves.end", "end", None)}  # falls off its end
    assert _edges(graph, "tricky-local-b") == {("doves.end", "end", None)}
    assert graph.nodes["tricky-other-child"].note == "no machine loaded for this state"
    assert graph.nodes["doves.unknown:tricky-start"].kind is NodeKind.UNKNOWN
    assert any("tricky.py:" in note and "computed at run time" in note and "'tricky-' + payload['k']" in note
               for note in graph.notes), graph.notes
    assert "no machine is loaded for state 'tricky-other-child'" in graph.notes


def test_typed_handlers_and_replace_stay_in_their_state(tricky: Registry) -> None:
    graph = declared_graph(tricky, ["tricky-typed"])
    assert _edges(graph, "tricky-typed") == {("tricky-typed", "next", None), ("doves.end", "end", None)}


def test_a_value_from_elsewhere_is_unknown_and_said(tricky: Registry) -> None:
    graph = declared_graph(tricky, ["tricky-mystery"])
    assert _edges(graph, "tricky-mystery") == {("doves.unknown:tricky-mystery", "next", "not known")}
    (note,) = graph.notes
    assert note.startswith("could not be determined statically: tricky.py:") and "payload['next']" in note


def test_lambdas_methods_and_callable_objects_are_read() -> None:
    class Light:
        def __call__(self, payload: dict[str, object]) -> tuple[str, dict[str, object]]:
            return ("lamp-off", payload)

    registry = Registry()
    registry.register("lamp-on", Light())
    registry.register("lamp-off", lambda payload: None)
    registry.register("lamp-builtin", print)
    graph = declared_graph(registry, ["lamp-on", "lamp-builtin"])
    assert _edges(graph, "lamp-on") == {("lamp-off", "next", None)}
    assert _edges(graph, "lamp-off") == {("doves.end", "end", None)}
    assert _edges(graph, "lamp-builtin") == {("doves.unknown:lamp-builtin", "next", "not known")}
    assert any("not a Python function" in note for note in graph.notes)


def test_without_chosen_states_entries_are_what_nothing_leads_to_and_one_per_cycle() -> None:
    """Every loaded state is drawn; starts go to states nothing else leads to, and to the first
    state (in source order) of a cycle nothing enters: the traffic light's green."""
    graph = declared_graph(default_registry(entry_points=False))
    starts = [e.target for e in graph.edges.values() if e.kind is EdgeKind.START]
    assert starts == ["simple", "countdown", "slow-countdown", "shop-order-placed", "thumbnails",
                      "traffic-light-green"]
    assert "thumbnail" not in starts  # reached by Spawn
    assert graph.title == "state graph declared in builtin.py"


def test_recursion_and_deep_helpers_stop_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "loops.py"
    path.write_text(textwrap.dedent('''
        from martian_doves.registry import machine

        def again(payload):
            return again(payload)

        @machine("loops")
        def loops(payload):
            return again(payload)
    '''))
    graph = declared_graph(default_registry([str(path)], entry_points=False), ["loops"])
    assert _edges(graph, "loops") == {("doves.unknown:loops", "next", "not known")}
    assert any("recursive" in note for note in graph.notes)
