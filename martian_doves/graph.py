"""State graphs of machines: which state leads to which, as data for ``doves graph``.

Two sources build the same ``Graph``: the lineages a store keeps (``observed_graph``:
what happened, with counts and failures) and the handlers' source code
(``graph_source.declared_graph``: what can happen). ``graph_render`` draws either
as Mermaid or SVG.

A graph has the machines' states as nodes, plus a start, an end and a failed node,
and one node per wait (``Wait``: a ``doves.wait`` entry) and per join (``Spawn``:
a ``doves.join`` entry), so the machine model's steps show where they happen. An
edge says how one step leads to the next (``EdgeKind``) and, in an observed graph,
how often it did.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from martian_doves.errors import ConfigError
from martian_doves.model import JOIN_STATE, WAIT_STATE, HistoryEntry, Status, WaitFor
from martian_doves.stores.base import LineageStore

if TYPE_CHECKING:
    from martian_doves.stores.base import Store

#: How many machines (lineages) ``doves graph STORE`` reads at most, unless told otherwise.
DEFAULT_LIMIT = 1000

#: Node ids of the graph's own nodes. State names starting with ``doves.`` are reserved,
#: so no machine's state can take one of these ids.
START_ID = "doves.start"
END_ID = "doves.end"
FAILED_ID = "doves.failed"


class NodeKind(enum.StrEnum):
    """What a node stands for."""

    #: A machine's state: a handler.
    STATE = "state"
    #: Where machines begin (roots submitted to a store).
    START = "start"
    #: Where a machine ends (its handler returned None).
    END = "end"
    #: Where a state failed.
    FAILED = "failed"
    #: A machine waiting for an event (``Wait``), or its timeout.
    WAIT = "wait"
    #: A machine waiting for its child machines to end (``Spawn``).
    JOIN = "join"
    #: Where a handler leads could not be told from its source.
    UNKNOWN = "unknown"


class EdgeKind(enum.StrEnum):
    """How one step leads to the next."""

    #: A root's first state.
    START = "start"
    #: A successor at once (another state, or the same one again).
    NEXT = "next"
    #: A successor that runs later (``Next(after=...)`` or ``at=``).
    TIMER = "timer"
    #: A wait's event arrived: its ``then`` state runs.
    EVENT = "event"
    #: A wait's timeout passed first: its ``on_timeout`` state runs (or the machine fails).
    TIMEOUT = "timeout"
    #: A child machine's first state (``Spawn``).
    SPAWN = "spawn"
    #: Every child ended: the join's ``then`` state runs.
    JOIN = "join"
    #: The machine ends.
    END = "end"
    #: The state failed.
    FAIL = "fail"


@dataclass
class Node:
    """One node of a graph."""

    #: Unique in its graph: a state's name, or an id starting with ``doves.``.
    id: str
    kind: NodeKind
    #: What the node shows (the state's name, "wait for payment" ...).
    label: str
    #: Observed graphs: how many states are in this node now, by status (pending, waiting ...).
    counts: dict[str, int] = field(default_factory=dict)
    #: Something to say about the node ("no machine loaded for this state").
    note: str | None = None

    def as_dict(self) -> dict[str, object]:
        document: dict[str, object] = {"id": self.id, "kind": self.kind.value, "label": self.label}
        if self.counts:
            document["counts"] = dict(self.counts)
        if self.note:
            document["note"] = self.note
        return document


@dataclass
class Edge:
    """One edge of a graph: ``source`` leads to ``target``."""

    source: str
    target: str
    kind: EdgeKind
    #: The event's name, a timer's delay, a timeout ...; None when the kind says it all.
    label: str | None = None
    #: Observed graphs: how many times it happened; None in a declared graph.
    count: int | None = None

    @property
    def key(self) -> tuple[str, str, EdgeKind, str | None]:
        return self.source, self.target, self.kind, self.label

    def as_dict(self) -> dict[str, object]:
        document: dict[str, object] = {"source": self.source, "target": self.target, "kind": self.kind.value}
        if self.label is not None:
            document["label"] = self.label
        if self.count is not None:
            document["count"] = self.count
        return document


@dataclass
class Graph:
    """Nodes and edges, in the order they were first met (renderers keep it, so output is stable)."""

    #: What the graph shows, one line.
    title: str
    #: True for a graph observed in a store (edges carry counts).
    observed: bool = False
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: dict[tuple[str, str, EdgeKind, str | None], Edge] = field(default_factory=dict)
    #: What the graph could not show, or only partly: one line each, for the reader.
    notes: list[str] = field(default_factory=list)

    def node(self, node_id: str, kind: NodeKind = NodeKind.STATE, label: str | None = None) -> Node:
        """The node ``node_id``, added first if it is not there yet."""
        found = self.nodes.get(node_id)
        if found is None:
            found = self.nodes[node_id] = Node(node_id, kind, label if label is not None else node_id)
        return found

    def start(self) -> Node:
        return self.node(START_ID, NodeKind.START, "start")

    def end(self) -> Node:
        return self.node(END_ID, NodeKind.END, "end")

    def failed(self) -> Node:
        return self.node(FAILED_ID, NodeKind.FAILED, "failed")

    def edge(self, source: str, target: str, kind: EdgeKind, label: str | None = None, *,
             count: int | None = None) -> Edge:
        """Add the edge ``source`` → ``target`` (both nodes must exist), or add ``count`` to it."""
        assert source in self.nodes and target in self.nodes, (source, target)
        new = Edge(source, target, kind, label, count)
        found = self.edges.get(new.key)
        if found is None:
            self.edges[new.key] = new
            return new
        if count is not None:
            found.count = (found.count or 0) + count
        return found

    def note(self, text: str) -> None:
        """Say something about the graph once (repeated notes are kept once)."""
        if text not in self.notes:
            self.notes.append(text)

    def as_dict(self) -> dict[str, object]:
        """``doves graph --format json``."""
        return {
            "title": self.title,
            "observed": self.observed,
            "nodes": [node.as_dict() for node in self.nodes.values()],
            "edges": [edge.as_dict() for edge in self.edges.values()],
            "notes": list(self.notes),
        }


# -- the graph observed in a store ---------------------------------------------------------------


def wait_node(graph: Graph, source: str, wait: WaitFor) -> Node:
    """The node of a wait (or join) made by state ``source``: one per state and what it waits for."""
    if wait.is_join:
        return graph.node(f"{JOIN_STATE}:{source}", NodeKind.JOIN, "wait for children")
    return graph.node(f"{WAIT_STATE}:{source}:{wait.event}", NodeKind.WAIT, f"wait for {wait.event}")


def timeout_label(seconds: float | None) -> str:
    """``timeout``, or ``timeout 60 s`` when the delay is known."""
    return "timeout" if seconds is None else f"timeout {seconds:g} s"


class _Lineages:
    """Walks lineages (``Store.history``) into a graph: one machine each, children included."""

    def __init__(self, store: Store, graph: Graph, states: Collection[str] | None) -> None:
        self.store = store
        self.graph = graph
        self.states = None if states is None else frozenset(states)
        #: The state (handler) name of every state file walked, for the spawn edges of children.
        self.state_of: dict[str, str] = {}
        #: Roots of the machines walked.
        self.walked: set[str] = set()
        #: Roots of machines that are children of the machines chosen by ``states``.
        self.wanted_children: set[str] = set()
        #: Child machines whose spawning state could not be read.
        self.orphans = 0
        #: Spawning states whose lineage was read for their children's spawn edges.
        self._spawners_read: set[str] = set()

    def walk(self, names: Iterable[str], limit: int) -> tuple[int, bool]:
        """Walk the machines of ``names`` (and their children) until ``limit`` machines were read.

        Returns:
            How many machines were read, and whether some were left unread.
        """
        queue = deque(names)
        read = 0
        while queue and read < limit:
            entries = self.store.history(queue.popleft())
            if not entries or entries[0].name in self.walked:
                continue
            self.walked.add(entries[0].name)
            read += 1
            if not self._chosen(entries[0]):
                continue
            self._add(entries)
            for entry in entries:
                self.wanted_children.update(entry.children)
                queue.extend(entry.children)
        return read, any(name not in self.walked for name in queue)

    def _spawner_state(self, spawner: str) -> str | None:
        """The state of the state file that spawned a child machine (read once per lineage)."""
        if spawner not in self.state_of and spawner not in self._spawners_read:
            self._spawners_read.add(spawner)
            for entry in self.store.history(spawner):
                self.state_of.setdefault(entry.name, entry.state)
        return self.state_of.get(spawner)

    def _chosen(self, root: HistoryEntry) -> bool:
        return self.states is None or root.state in self.states or root.name in self.wanted_children

    def _node_of(self, entries: Sequence[HistoryEntry], index: int) -> str:
        entry = entries[index]
        if entry.state in (WAIT_STATE, JOIN_STATE) and entry.wait is not None and index > 0:
            return wait_node(self.graph, entries[index - 1].state, entry.wait).id
        return self.graph.node(entry.state).id

    def _add(self, entries: Sequence[HistoryEntry]) -> None:
        graph = self.graph
        for entry in entries:
            self.state_of[entry.name] = entry.state
        first = entries[0]
        node = self._node_of(entries, 0)
        spawner = None if first.origin is None else self._spawner_state(first.origin.parent)
        if spawner is None:
            graph.edge(graph.start().id, node, EdgeKind.START, count=1)
        else:
            graph.edge(graph.node(spawner).id, node, EdgeKind.SPAWN, count=1)
        if first.origin is not None and spawner is None:
            self.orphans += 1
        for index, entry in enumerate(entries):
            node = self._node_of(entries, index)
            if index + 1 < len(entries):
                following = entries[index + 1]
                kind, label = _step(entry, following)
                graph.edge(node, self._node_of(entries, index + 1), kind, label, count=1)
            elif entry.status is Status.DONE:
                graph.edge(node, graph.end().id, EdgeKind.END, count=1)
            elif entry.status is Status.FAILED:
                # The worker fails an event wait only when its timeout passes with nowhere to go.
                kind = EdgeKind.TIMEOUT if entry.wait is not None and not entry.wait.is_join else EdgeKind.FAIL
                graph.edge(node, graph.failed().id, kind, "timeout" if kind is EdgeKind.TIMEOUT else None, count=1)
            else:
                counts = graph.nodes[node].counts
                counts[entry.status.value] = counts.get(entry.status.value, 0) + 1


def _step(entry: HistoryEntry, following: HistoryEntry) -> tuple[EdgeKind, str | None]:
    """How ``entry`` led to ``following``, its successor, as far as the lineage tells."""
    wait = entry.wait
    if entry.state == WAIT_STATE and wait is not None:
        if entry.event is not None:
            return EdgeKind.EVENT, entry.event.name
        return EdgeKind.TIMEOUT, "timeout"
    if entry.state == JOIN_STATE and wait is not None:
        return EdgeKind.JOIN, None
    if following.not_before is not None and following.status is Status.SCHEDULED:
        return EdgeKind.TIMER, None
    return EdgeKind.NEXT, None


def _merge_timers(graph: Graph) -> None:
    """A transition seen as a timer once is a timer: fold its already-fired runs into that edge.

    A lineage shows a timer only while it is due later; once it fired, the successor
    looks like any other.
    """
    timers = {(e.source, e.target): e for e in graph.edges.values() if e.kind is EdgeKind.TIMER}
    for key, edge in list(graph.edges.items()):
        timer = timers.get((edge.source, edge.target))
        if edge.kind is EdgeKind.NEXT and timer is not None:
            timer.count = (timer.count or 0) + (edge.count or 0)
            del graph.edges[key]


def observed_graph(store: Store, names: Iterable[str] | None = None, *, limit: int = DEFAULT_LIMIT,
                   states: Collection[str] | None = None, title: str | None = None) -> Graph:
    """The state graph of machines in ``store`` as their lineages show it.

    Args:
        store: where the lineages are (``Store.history``).
        names: machines to read, by root name (any state of a lineage works too); None:
            the newest ``limit`` machines of the store (``LineageStore.machine_names``).
        limit: read at most this many machines (child machines count as machines).
        states: keep only machines whose first state is one of these (and their children).
        title: the graph's title; the store's description if None.

    Returns:
        Counted edges: how many machines started in each state, went from one state to
        the next, waited, timed out, spawned children, ended or failed; each node's
        states still pending, scheduled, waiting or in progress.

    Raises:
        ConfigError: ``names`` is None and the store cannot name its machines.
    """
    if names is None:
        if not isinstance(store, LineageStore):
            raise ConfigError(f"{store.description} cannot list its machines, so no graph can be read from it")
        names = store.machine_names(limit + 1)  # one more than read: whether the store holds more
    graph = Graph(title or f"machines observed in {store.description}", observed=True)
    graph.start()  # first, so renderers meet it first
    lineages = _Lineages(store, graph, states)
    read, more = lineages.walk(names, limit)
    _merge_timers(graph)
    if lineages.orphans:
        graph.note(f"{lineages.orphans} child machines whose spawning state is gone are drawn from the start")
    if more:
        graph.note(f"read the newest {read} machines (the limit, --limit): a sample of the store")
    if len(graph.nodes) == 1:
        graph.note("no machine found")
    return graph


__all__ = [
    "DEFAULT_LIMIT",
    "END_ID",
    "FAILED_ID",
    "START_ID",
    "Edge",
    "EdgeKind",
    "Graph",
    "Node",
    "NodeKind",
    "observed_graph",
    "timeout_label",
    "wait_node",
]
