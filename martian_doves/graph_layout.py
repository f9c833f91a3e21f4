"""A small layered (Sugiyama-style) layout for drawing state graphs as SVG, in pure Python.

The steps are the classic ones, as dagre and Graphviz's ``dot`` take them, kept small:

1. cycles are broken by reversing the edges a depth-first search finds going back;
2. nodes get ranks by the longest path from a source; every rank of nodes is followed
   by a rank of edge labels (dagre's trick: a label is a node of its own, so no label
   lands on another or on a node);
3. edges longer than one rank go through dummy nodes, one per rank crossed;
4. the order within each rank is improved by barycenter sweeps, keeping the order with
   the fewest crossings;
5. x positions pull each node towards the mean of its neighbours, with the spacing
   kept exactly (isotonic regression, pool-adjacent-violators), so long edges run
   straight and the layout stays compact.

It is deterministic: the same boxes and links in the same order give the same drawing.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Vertical room between a rank of nodes and the next rank of labels.
RANK_GAP = 22.0
#: Horizontal room between two nodes of one rank.
NODE_GAP = 30.0
#: Horizontal room next to an edge's dummy node.
DUMMY_GAP = 14.0
#: Ordering sweeps (each one down and one up).
SWEEPS = 8
#: Positioning sweeps.
POSITION_SWEEPS = 12
#: Vertex visits the sweeps may make in all: a graph with many long edges (many dummy
#: vertices) gets fewer sweeps, so drawing it stays a matter of seconds.
SWEEP_BUDGET = 200_000


def _sweeps(wanted: int, vertices: int) -> int:
    return max(1, min(wanted, SWEEP_BUDGET // max(1, 2 * vertices)))

Point = tuple[float, float]


@dataclass(frozen=True)
class Box:
    """A node to place: its size, and room kept on its right (for a loop back to itself)."""

    id: str
    width: float
    height: float
    right_extra: float = 0.0
    #: Drawn as a circle or an ellipse: edges end on its curve, not on its bounding box.
    round: bool = False


@dataclass(frozen=True)
class Link:
    """An edge to route; a label of that size is placed on it (width 0: no label)."""

    source: str
    target: str
    label_width: float = 0.0
    label_height: float = 0.0


@dataclass
class Route:
    """Where an edge runs: its points from source to target, and its label's centre."""

    points: list[Point]
    label_at: Point | None = None
    #: A link from a node to itself: drawn as a loop on the node's right.
    loop: bool = False


@dataclass
class Layout:
    """The result: node centres by id, one route per link (in order), and the drawing's size."""

    centers: dict[str, Point]
    routes: list[Route]
    width: float
    height: float


@dataclass
class _Vertex:
    id: str
    left: float
    right: float
    height: float
    rank: int = 0
    dummy: bool = False
    round: bool = False
    up: list[str] = field(default_factory=list)
    down: list[str] = field(default_factory=list)


def _reversed_links(boxes: Sequence[Box], links: Sequence[Link]) -> set[int]:
    """Indexes of the links a depth-first search (in the given order) finds going back up."""
    out: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for index, link in enumerate(links):
        if link.source != link.target:
            out[link.source].append((index, link.target))
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    back: set[int] = set()
    for box in boxes:
        if box.id in state:
            continue
        stack = [(box.id, iter(out[box.id]))]
        state[box.id] = 1
        while stack:
            node, edges = stack[-1]
            step = next(edges, None)
            if step is None:
                state[node] = 2
                stack.pop()
                continue
            index, target = step
            if state.get(target) == 1:
                back.add(index)
            elif target not in state:
                state[target] = 1
                stack.append((target, iter(out[target])))
    return back


def _ranks(boxes: Sequence[Box], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest path from a source, in node ranks (0, 1, 2 ...), over acyclic ``edges``."""
    incoming: dict[str, int] = {box.id: 0 for box in boxes}
    out: dict[str, list[str]] = defaultdict(list)
    for source, target in edges:
        out[source].append(target)
        incoming[target] += 1
    rank = {box.id: 0 for box in boxes}
    ready = [box.id for box in boxes if incoming[box.id] == 0]
    while ready:
        node = ready.pop(0)
        for target in out[node]:
            rank[target] = max(rank[target], rank[node] + 1)
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    return rank


def _crossings(upper: Sequence[str], lower: Sequence[str], vertices: dict[str, _Vertex]) -> int:
    """Crossings between two neighbouring ranks: inversions among the edges' lower ends, counted
    with a Fenwick tree (n log n: an observed graph may have many edges between two ranks)."""
    position = {v: i for i, v in enumerate(lower)}
    ends = [end for _, end in sorted((i, position[t]) for i, v in enumerate(upper) for t in vertices[v].down)]
    tree = [0] * (len(lower) + 1)
    count = 0
    for seen, end in enumerate(ends):
        at, not_above = end + 1, 0
        while at > 0:  # how many ends seen so far are at or left of this one
            not_above += tree[at]
            at -= at & -at
        count += seen - not_above
        at = end + 1
        while at <= len(lower):
            tree[at] += 1
            at += at & -at
    return count


def _total_crossings(ranks: list[list[str]], vertices: dict[str, _Vertex]) -> int:
    return sum(_crossings(ranks[r], ranks[r + 1], vertices) for r in range(len(ranks) - 1))


def _order(ranks: list[list[str]], vertices: dict[str, _Vertex]) -> list[list[str]]:
    """Barycenter sweeps; the order with the fewest crossings met."""
    best, best_count = [list(r) for r in ranks], _total_crossings(ranks, vertices)
    for sweep in range(_sweeps(SWEEPS, len(vertices)) * 2):
        downward = sweep % 2 == 0
        indexes = range(1, len(ranks)) if downward else range(len(ranks) - 2, -1, -1)
        for r in indexes:
            neighbour_rank = ranks[r - 1] if downward else ranks[r + 1]
            position = {v: i for i, v in enumerate(neighbour_rank)}

            def barycenter(item: tuple[int, str], position: dict[str, int] = position,
                           downward: bool = downward) -> float:
                index, vertex = item
                near = vertices[vertex].up if downward else vertices[vertex].down
                return sum(position[n] for n in near) / len(near) if near else float(index)

            ranks[r] = [v for _, v in sorted(enumerate(ranks[r]), key=barycenter)]
        count = _total_crossings(ranks, vertices)
        if count < best_count:
            best, best_count = [list(r) for r in ranks], count
    return best


def _pava(desired: Sequence[float], offsets: Sequence[float]) -> list[float]:
    """Positions closest to ``desired`` (least squares) with ``x[i+1] - x[i] >= offsets[i+1] - offsets[i]``."""
    blocks: list[list[float]] = []  # [mean, weight, size]
    for value in (d - o for d, o in zip(desired, offsets, strict=True)):
        blocks.append([value, 1.0, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, weight, size = blocks.pop()
            previous = blocks[-1]
            total = previous[1] + weight
            previous[0] = (previous[0] * previous[1] + mean * weight) / total
            previous[1], previous[2] = total, previous[2] + size
    flat = [mean for mean, _, size in blocks for _ in range(int(size))]
    return [y + o for y, o in zip(flat, offsets, strict=True)]


def _spacing(rank: Sequence[str], vertices: dict[str, _Vertex]) -> list[float]:
    """Cumulative least distance of each vertex's centre from the first one's."""
    offsets = [0.0]
    for a, b in itertools.pairwise(rank):
        gap = NODE_GAP if not (vertices[a].dummy or vertices[b].dummy) else DUMMY_GAP
        offsets.append(offsets[-1] + vertices[a].right + gap + vertices[b].left)
    return offsets


def _weight(a: _Vertex, b: _Vertex) -> float:
    """How hard an edge segment pulls its ends into line: long edges (dummy to dummy) most, so they run straight."""
    return 8.0 if a.dummy and b.dummy else 2.0 if a.dummy or b.dummy else 1.0


def _positions(ranks: list[list[str]], vertices: dict[str, _Vertex]) -> dict[str, float]:
    x: dict[str, float] = {}
    for rank in ranks:
        x.update(zip(rank, _spacing(rank, vertices), strict=True))
    for sweep in range(_sweeps(POSITION_SWEEPS, len(vertices)) * 2):
        for rank in ranks if sweep % 2 == 0 else reversed(ranks):
            desired = []
            for vertex in rank:
                own = vertices[vertex]
                near = [(x[n], _weight(own, vertices[n])) for n in own.up + own.down]
                total = sum(w for _, w in near)
                desired.append(sum(p * w for p, w in near) / total if near else x[vertex])
            x.update(zip(rank, _pava(desired, _spacing(rank, vertices)), strict=True))
    return x


def _clip(center: Point, box: _Vertex, toward: Point) -> Point:
    """Where the segment from a box's centre towards ``toward`` leaves the box."""
    (cx, cy), (tx, ty) = center, toward
    dx, dy = tx - cx, ty - cy
    if dx == 0 and dy == 0:
        return center
    half_width, half_height = box.left, box.height / 2  # the node itself: what is on its right is not
    if box.round:
        scale = 1 / math.hypot(dx / half_width, dy / half_height)
        return cx + dx * min(scale, 1.0), cy + dy * min(scale, 1.0)
    scale = min(half_width / abs(dx) if dx else float("inf"), half_height / abs(dy) if dy else float("inf"))
    return cx + dx * min(scale, 1.0), cy + dy * min(scale, 1.0)


def _chains(links: Sequence[Link], back: set[int], vertices: dict[str, _Vertex],
            ) -> tuple[list[list[str]], list[str | None]]:
    """Each link's vertices from source to target, a dummy in every rank between; and its label's dummy.

    Adds the dummies to ``vertices`` and links neighbouring vertices (``up``, ``down``).
    """
    chains: list[list[str]] = []
    label_vertex: list[str | None] = []
    for index, link in enumerate(links):
        if link.source == link.target:
            chains.append([link.source])
            label_vertex.append(None)
            continue
        upper, lower = (link.target, link.source) if index in back else (link.source, link.target)
        low, high = vertices[upper].rank, vertices[lower].rank
        middle = (low + high) // 2 if ((low + high) // 2) % 2 == 1 else (low + high) // 2 - 1
        chain, labelled = [upper], None
        for rank in range(low + 1, high):
            has_label = rank == middle and link.label_width > 0
            half_width = link.label_width / 2 if has_label else 1.0
            dummy = _Vertex(f"\0{index}:{rank}", half_width, half_width, link.label_height if has_label else 0.0,
                            rank, dummy=True)
            vertices[dummy.id] = dummy
            chain.append(dummy.id)
            labelled = dummy.id if has_label else labelled
        chain.append(lower)
        for above, below in itertools.pairwise(chain):
            vertices[above].down.append(below)
            vertices[below].up.append(above)
        chains.append(chain[::-1] if index in back else chain)
        label_vertex.append(labelled)
    return chains, label_vertex


def layout(boxes: Sequence[Box], links: Sequence[Link], *, margin: float = 16.0) -> Layout:
    """Place ``boxes`` in ranks, top to bottom, and route ``links`` between them.

    Args:
        boxes: the nodes, in the order to prefer (the first is placed first, at the top).
        links: the edges; several between the same nodes are routed apart.
        margin: room around the drawing.

    Returns:
        Centres, routes (one per link, in order) and the drawing's size.
    """
    back = _reversed_links(boxes, links)
    forward = [(link.target, link.source) if i in back else (link.source, link.target)
               for i, link in enumerate(links) if link.source != link.target]
    node_rank = _ranks(boxes, forward)
    vertices = {b.id: _Vertex(b.id, b.width / 2, b.width / 2 + b.right_extra, b.height, 2 * node_rank[b.id],
                              round=b.round) for b in boxes}
    chains, label_vertex = _chains(links, back, vertices)
    rank_count = max((v.rank for v in vertices.values()), default=0) + 1
    ranks: list[list[str]] = [[] for _ in range(rank_count)]
    for each in vertices.values():
        ranks[each.rank].append(each.id)
    ranks = _order(ranks, vertices)
    x = _positions(ranks, vertices)
    shift = margin - min((x[v.id] - v.left for v in vertices.values()), default=0.0)
    y: dict[str, float] = {}
    top = margin
    for row in ranks:
        height = max((vertices[v].height for v in row), default=0.0)
        for member in row:
            y[member] = top + height / 2
        top += height + RANK_GAP
    centers = {v: (x[v] + shift, y[v]) for v in vertices}
    routes = []
    for chain, labelled in zip(chains, label_vertex, strict=True):
        if len(chain) == 1:
            routes.append(Route([centers[chain[0]]], loop=True))
            continue
        points = [centers[v] for v in chain]
        points[0] = _clip(points[0], vertices[chain[0]], points[1])
        points[-1] = _clip(points[-1], vertices[chain[-1]], points[-2])
        routes.append(Route(points, centers[labelled] if labelled else None))
    width = max((x[v.id] + shift + v.right for v in vertices.values()), default=0.0) + margin
    return Layout({b.id: centers[b.id] for b in boxes}, routes, width, max(top - RANK_GAP + margin, 2 * margin))


__all__ = ["Box", "Layout", "Link", "Route", "layout"]
