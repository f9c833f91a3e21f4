"""The state graph machines declare in their source code (``doves graph --machines``), read, never run.

``handler_source`` reads what each handler may return; this module follows the states
it leads to and draws them: successors, timers, waits (with their event, then and
timeout), children and joins, the end. What cannot be told from the source leads to
an "unknown" node, with a note saying where and why, so the drawing never claims more
than the code says.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence

from martian_doves.graph import EdgeKind, Graph, NodeKind, wait_node
from martian_doves.handler_source import (
    End,
    Go,
    Outcome,
    Same,
    SourceReader,
    Spawns,
    WaitsFor,
    handler_outcomes,
)
from martian_doves.model import WaitFor
from martian_doves.registry import Registry


def _add(graph: Graph, state: str, outcome: Outcome) -> list[str]:
    """Draw one way ``state`` leads on; return the states it leads to."""
    if isinstance(outcome, End):
        graph.edge(state, graph.end().id, EdgeKind.END)
        return []
    if isinstance(outcome, Same):
        graph.edge(state, state, EdgeKind.NEXT)
        return []
    if isinstance(outcome, Go):
        graph.edge(state, graph.node(outcome.state).id, EdgeKind.TIMER if outcome.timer else EdgeKind.NEXT,
                   outcome.timer)
        return [outcome.state]
    if isinstance(outcome, WaitsFor):
        wait = wait_node(graph, state, WaitFor("", event=outcome.event or "an event"))
        graph.edge(state, wait.id, EdgeKind.NEXT)
        for then in outcome.then:
            graph.edge(wait.id, graph.node(then).id, EdgeKind.EVENT, outcome.event or "event")
        for on_timeout in outcome.on_timeout:
            graph.edge(wait.id, graph.node(on_timeout).id, EdgeKind.TIMEOUT, outcome.timeout)
        if outcome.timeout is not None and not outcome.on_timeout:
            graph.edge(wait.id, graph.failed().id, EdgeKind.TIMEOUT, outcome.timeout)
        return [*outcome.then, *outcome.on_timeout]
    if isinstance(outcome, Spawns):
        join = wait_node(graph, state, WaitFor(""))
        graph.edge(state, join.id, EdgeKind.NEXT)
        for child in dict.fromkeys(outcome.children):
            graph.edge(state, graph.node(child).id, EdgeKind.SPAWN)
        for then in outcome.then:
            graph.edge(join.id, graph.node(then).id, EdgeKind.JOIN)
        return [*outcome.children, *outcome.then]
    unknown = graph.node(f"doves.unknown:{state}", NodeKind.UNKNOWN, "?")
    graph.edge(state, unknown.id, EdgeKind.NEXT, "not known")
    graph.note(f"could not be determined statically: {outcome.why}")
    return []


def _source_order(registry: Registry, state: str) -> tuple[str, int, str]:
    handler = inspect.unwrap(registry.spec(state).handler)
    code = getattr(handler, "__code__", None)
    return (code.co_filename, code.co_firstlineno, state) if code is not None else ("~", 0, state)


def _title(registry: Registry, states: Sequence[str], chosen: bool) -> str:
    files = sorted({os.path.basename(_source_order(registry, s)[0]) for s in states if s in registry} - {"~"})
    where = f"declared in {', '.join(files)}" if files else "declared in code"
    return f"states reached from {', '.join(states)}, {where}" if chosen else f"state graph {where}"


def _add_starts(graph: Graph, states: Sequence[str], chosen: bool) -> None:
    """Start edges: to the chosen states; or to those nothing leads to, then one per cycle left unreached."""
    if chosen:
        for state in states:
            graph.edge(graph.start().id, state, EdgeKind.START)
    else:
        _add_entries(graph, states)
    # Start edges first: a reader (and Mermaid's layout) meets the beginning first.
    graph.edges = dict(sorted(graph.edges.items(), key=lambda item: item[1].kind is not EdgeKind.START))


def _add_entries(graph: Graph, states: Sequence[str]) -> None:
    entered = {e.target for e in graph.edges.values() if e.source != e.target}
    entries = [s for s in states if s not in entered]
    while True:
        for state in entries:
            graph.edge(graph.start().id, state, EdgeKind.START)
        reached = _reachable(graph, [graph.start().id])
        entries = [s for s in states if s not in reached][:1]
        if not entries:
            return


def _reachable(graph: Graph, sources: Sequence[str]) -> set[str]:
    seen, pending = set(sources), list(sources)
    while pending:
        node = pending.pop()
        for edge in graph.edges.values():
            if edge.source == node and edge.target not in seen:
                seen.add(edge.target)
                pending.append(edge.target)
    return seen


def declared_graph(registry: Registry, states: Sequence[str] | None = None, *, entries: bool = True,
                   title: str | None = None) -> Graph:
    """The state graph the handlers of ``registry`` declare in their source code.

    Args:
        registry: the machines.
        states: draw these states and every state they can lead to; None: every state
            of ``registry``.
        entries: ``states`` are where machines start: each gets a start edge. False (and
            always when ``states`` is None): start edges go to the states nothing else
            leads to, and to the first state (in source order) of each cycle nothing enters.
        title: the graph's title.

    Returns:
        A graph without counts. A state reached but with no machine in ``registry`` is
        drawn with a note; what a handler returns that cannot be told from its source
        leads to an "unknown" node, with a note saying where and why.
    """
    chosen = list(dict.fromkeys(states)) if states is not None else sorted(
        registry.names(), key=lambda s: _source_order(registry, s))
    entries = entries and states is not None
    graph = Graph(title or _title(registry, chosen, entries))
    graph.start()  # first, so renderers meet it first
    reader = SourceReader()
    pending = list(chosen)
    done: set[str] = set()
    while pending:
        state = pending.pop(0)
        if state in done:
            continue
        done.add(state)
        node = graph.node(state)
        if state not in registry:
            node.note = "no machine loaded for this state"
            graph.note(f"no machine is loaded for state {state!r}")
            continue
        for outcome in dict.fromkeys(handler_outcomes(reader, registry.spec(state).handler, state)):
            pending += _add(graph, state, outcome)
    _add_starts(graph, chosen, entries)
    return graph


__all__ = ["declared_graph"]
