"""Drawing state graphs: Mermaid text, the SVG picture and the layered layout under it."""

from __future__ import annotations

import itertools
import random
import re
import xml.etree.ElementTree as ET

import pytest

from martian_doves.graph import EdgeKind, Graph, NodeKind
from martian_doves.graph_layout import Box, Layout, Link, _crossings, _Vertex, layout
from martian_doves.graph_render import edge_text, node_lines, text_width, to_mermaid, to_svg
from martian_doves.graph_source import declared_graph
from martian_doves.loader import default_registry

SVG = "{http://www.w3.org/2000/svg}"
#: State names a store may hold, and no output may be broken by.
HOSTILE = ['a"b', "x<script>alert(1)</script>", "#35;", "end", "|pipe|", "ünï 漢字", "a]b)c}d", "%%", "-->",
           "a&amp;b", "line\nbreak", "tab\tesc\x1b[31m"]


def _observed() -> Graph:
    graph = Graph("observed", observed=True)
    start = graph.start().id
    graph.node("count")
    graph.edge(start, "count", EdgeKind.START, count=4)
    graph.edge("count", "count", EdgeKind.NEXT, count=12)
    graph.edge("count", graph.end().id, EdgeKind.END, count=3)
    graph.edge("count", graph.failed().id, EdgeKind.FAIL, count=1)
    graph.nodes["count"].counts["pending"] = 2
    graph.nodes["count"].counts["in_progress"] = 1
    return graph


def _hostile() -> Graph:
    graph = Graph('hostile "title"\n<b>')
    start = graph.start().id
    for name in HOSTILE:
        graph.node(name).counts["waiting"] = 1
        graph.edge(start, name, EdgeKind.START, name, count=2)
    graph.note('a "note" <with> %% \n everything')
    return graph


# -- text ---------------------------------------------------------------------------------------


def test_edges_say_their_label_and_count_and_nodes_their_unsettled_states() -> None:
    graph = _observed()
    assert [edge_text(e) for e in graph.edges.values()] == ["4", "12", "3", "1"]
    assert node_lines(graph.nodes["count"]) == ["count", "2 pending · 1 in progress"]
    declared = declared_graph(default_registry(entry_points=False), ["shop-order-placed"])
    assert {edge_text(e) for e in declared.edges.values()} == {None, "payment", "timeout", "timer"}


def test_text_width_grows_with_the_text_and_the_font() -> None:
    assert 0 < text_width("il", 13) < text_width("mw", 13) < text_width("mw", 20)
    assert text_width("state", 13, bold=True) > text_width("state", 13)


# -- Mermaid ------------------------------------------------------------------------------------

_MERMAID_LINE = re.compile(
    r"flowchart TD"
    r"|    %% [^\n]*"
    r'|    n\d+(\(|\(\(|\(\(\(|\(\[|\{\{|\[/)"[^"]*"(\)|\)\)|\)\)\)|\]\)|\}\}|/\])'
    r'|    n\d+ (-->|-\.->)(\|"[^"|]*"\|)? n\d+'
    r"|    classDef dovesStart fill:#1f2937,stroke:#1f2937,color:#ffffff"
    r"|    classDef dovesEnd fill:#1f2937,stroke:#1f2937,color:#ffffff"
    r"|    classDef dovesFailed fill:#fde2e1,stroke:#b42318,color:#7a271a"
    r"|    classDef dovesWait fill:#eef4ff,stroke:#3b5bdb,color:#1e3a8a"
    r"|    classDef dovesUnknown [^\n]*"
    r"|    class n\d+(,n\d+)* dovesStart|    class n\d+(,n\d+)* dovesEnd|    class n\d+(,n\d+)* dovesFailed"
    r"|    class n\d+(,n\d+)* dovesWait|    class n\d+(,n\d+)* dovesUnknown"
    r"|    linkStyle \d+(,\d+)* stroke:#b42318,color:#b42318"
)


def _check_mermaid(text: str) -> list[str]:
    lines = text.splitlines()
    for line in lines:
        assert _MERMAID_LINE.fullmatch(line), line
    return lines


def test_mermaid_draws_shapes_labels_counts_and_failures_in_red() -> None:
    lines = _check_mermaid(to_mermaid(_observed()))
    assert lines[:2] == ["flowchart TD", "    %% observed"]
    assert '    n0(("start"))' in lines
    assert '    n1("count<br/>2 pending · 1 in progress")' in lines
    assert '    n2((("end")))' in lines and '    n3(["failed"])' in lines
    assert '    n0 -->|"4"| n1' in lines and '    n1 -->|"12"| n1' in lines and '    n1 -->|"1"| n3' in lines
    assert "    linkStyle 3 stroke:#b42318,color:#b42318" in lines


def test_mermaid_draws_waits_as_hexagons_and_later_things_dashed() -> None:
    lines = _check_mermaid(to_mermaid(declared_graph(default_registry(entry_points=False), ["shop-order-placed"])))
    assert '    n2{{"wait for payment"}}' in lines
    assert '    n2 -.->|"timeout"| n4' in lines and '    n3 -.->|"timer"| n5' in lines
    assert "    class n2 dovesWait" in lines


def test_mermaid_keeps_hostile_names_inside_their_quotes() -> None:
    text = to_mermaid(_hostile())
    lines = _check_mermaid(text)
    assert len(lines) == 2 + 1 + 1 + len(HOSTILE) * 2 + 2  # header, note, start, nodes and edges, class
    assert '    n1("a#quot;b<br/>1 waiting")' in lines
    assert '    n2("x#lt;script#gt;alert(1)#lt;/script#gt;<br/>1 waiting")' in lines
    assert '    n3("#35;35;<br/>1 waiting")' in lines  # what Mermaid shows as "#35;"
    assert "\x1b" not in text and "line\\nbreak" in text  # one line each, escape codes escaped
    assert lines[1] == '    %% hostile "title"\\n<b>'


# -- SVG ----------------------------------------------------------------------------------------


def _texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_svg_is_well_formed_and_shows_every_label_and_count() -> None:
    svg = to_svg(_observed())
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.find(f"{SVG}title") is not None
    assert {"observed", "start", "count", "2 pending · 1 in progress", "end", "failed", "4", "12", "3", "1"} \
        <= set(_texts(svg))
    assert 'stroke="#b42318"' in svg  # the failure edge is red
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing to fetch


def test_svg_escapes_hostile_names_and_is_the_same_every_time() -> None:
    svg = to_svg(_hostile())
    texts = _texts(svg)
    for name in HOSTILE:
        assert name.replace("\n", "\\n").replace("\t", "\\t").replace("\x1b", "\\x1b") in texts
    assert to_svg(_hostile()) == svg


def _node_rects(svg: str) -> list[tuple[float, float, float, float]]:
    """(left, top, right, bottom) of each rectangle drawn for a node (inside a group with a title)."""
    boxes = []
    for group in ET.fromstring(svg).iter(f"{SVG}g"):
        rect = group.find(f"{SVG}rect")
        if group.find(f"{SVG}title") is not None and rect is not None:
            x, y = float(rect.get("x", 0)), float(rect.get("y", 0))
            boxes.append((x, y, x + float(rect.get("width", 0)), y + float(rect.get("height", 0))))
    return boxes


def test_svg_of_every_example_keeps_nodes_apart_and_inside_the_picture() -> None:
    svg = to_svg(declared_graph(default_registry(entry_points=False)))
    root = ET.fromstring(svg)
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    boxes = _node_rects(svg)
    assert len(boxes) == 13  # the states (the wait and the join are polygons, start and end circles)
    for (l1, t1, r1, b1), (l2, t2, r2, b2) in itertools.combinations(boxes, 2):
        assert r1 <= l2 or r2 <= l1 or b1 <= t2 or b2 <= t1, "two nodes overlap"
    assert all(0 <= left and right <= width and 0 <= top and bottom <= height - 34
               for left, top, right, bottom in boxes)


# -- layout -------------------------------------------------------------------------------------


def _overlaps(placed: Layout, boxes: list[Box]) -> list[tuple[str, str]]:
    found = []
    for a, b in itertools.combinations(boxes, 2):
        (ax, ay), (bx, by) = placed.centers[a.id], placed.centers[b.id]
        apart_x = (ax + a.width / 2 + a.right_extra <= bx - b.width / 2
                   or bx + b.width / 2 + b.right_extra <= ax - a.width / 2)
        apart_y = abs(ay - by) >= (a.height + b.height) / 2
        if not (apart_x or apart_y):
            found.append((a.id, b.id))
    return found


def test_a_chain_runs_top_to_bottom_and_a_cycle_goes_back_up() -> None:
    boxes = [Box(n, 80, 30) for n in "abc"]
    placed = layout(boxes, [Link("a", "b"), Link("b", "c"), Link("c", "a", 20, 16)])
    ys = [placed.centers[n][1] for n in "abc"]
    assert ys == sorted(ys) and len(set(ys)) == 3
    back = placed.routes[2]
    assert back.points[0][1] < placed.centers["c"][1] and back.points[-1][1] > placed.centers["a"][1]
    assert back.label_at is not None


def test_edges_end_on_the_boxes_and_labels_sit_apart_from_nodes() -> None:
    boxes = [Box("top", 60, 30), Box("left", 60, 30), Box("right", 60, 30), Box("round", 40, 40, round=True)]
    links = [Link("top", "left", 30, 16), Link("top", "right", 30, 16), Link("left", "round"), Link("right", "round")]
    placed = layout(boxes, links)
    for box, link, route in zip([boxes[0]] * 2 + boxes[1:3], links, placed.routes, strict=True):
        x, y = placed.centers[box.id]
        sx, sy = route.points[0]
        assert abs(sy - (y + box.height / 2)) < 0.01 or abs(abs(sx - x) - box.width / 2) < 0.01
        if route.label_at is not None:
            ly = route.label_at[1]
            assert all(abs(ly - placed.centers[b.id][1]) >= (b.height + link.label_height) / 2 for b in boxes)
    rx, ry = placed.centers["round"]
    for route in placed.routes[2:]:
        ex, ey = route.points[-1]
        assert abs(((ex - rx) ** 2 + (ey - ry) ** 2) ** 0.5 - 20) < 0.01  # on the circle, not its corner


def test_a_loop_gets_room_on_its_right() -> None:
    boxes = [Box("s", 40, 30), Box("loop", 60, 30, right_extra=50), Box("t", 60, 30)]
    placed = layout(boxes, [Link("s", "loop"), Link("s", "t"), Link("loop", "loop")])
    assert placed.routes[2].loop and placed.routes[2].points == [placed.centers["loop"]]
    assert not _overlaps(placed, boxes)


@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_never_overlap(seed: int) -> None:
    rng = random.Random(seed)
    boxes = [Box(f"n{i}", rng.uniform(40, 160), rng.choice((30, 45)), rng.choice((0, 0, 40))) for i in range(14)]
    links = [Link(rng.choice(boxes).id, rng.choice(boxes).id, rng.choice((0, 30)), 16) for _ in range(24)]
    placed = layout(boxes, links)
    assert not _overlaps(placed, boxes)
    assert len(placed.routes) == len(links)
    assert all(0 <= x - b.width / 2 and x + b.width / 2 + b.right_extra <= placed.width
               for b in boxes for x in [placed.centers[b.id][0]])
    assert layout(boxes, links) == placed  # deterministic


def test_kinds_of_nodes_have_their_shapes() -> None:
    graph = declared_graph(default_registry(entry_points=False), ["thumbnails"])
    svg = to_svg(graph)
    assert svg.count("<polygon") == 1  # the join
    assert svg.count("<circle") == 3  # start, and end's two rings
    assert graph.nodes["doves.join:thumbnails"].kind is NodeKind.JOIN


@pytest.mark.parametrize("seed", range(20))
def test_crossings_are_counted_as_pairs_of_edges_that_cross(seed: int) -> None:
    rng = random.Random(seed)
    upper = [f"u{i}" for i in range(rng.randint(1, 6))]
    lower = [f"l{i}" for i in range(rng.randint(1, 6))]
    vertices = {v: _Vertex(v, 1, 1, 1) for v in upper + lower}
    for _ in range(rng.randint(0, 14)):
        vertices[rng.choice(upper)].down.append(rng.choice(lower))
    position = {v: i for i, v in enumerate(lower)}
    edges = [(i, position[t]) for i, v in enumerate(upper) for t in vertices[v].down]
    crossing = sum(1 for a, b in itertools.combinations(edges, 2) if (a[0] - b[0]) * (a[1] - b[1]) < 0)
    assert _crossings(upper, lower, vertices) == crossing
