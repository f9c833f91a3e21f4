"""Drawing a state graph (``graph.Graph``): Mermaid text, or a self-contained SVG picture.

Mermaid is what GitHub renders in a README (a ``flowchart``); the SVG is drawn here,
with ``graph_layout``'s layered layout, so no browser, network or external binary is
needed. Both show the same things: edge counts (observed graphs) or labels (events,
timers, timeouts), failures in red, waits and joins as hexagons, and what could not be
determined as notes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from martian_doves.graph import FAILED_ID, Edge, EdgeKind, Graph, Node, NodeKind
from martian_doves.graph_layout import Box, Link, Point, Route, layout
from martian_doves.text import one_line

#: Output formats of ``doves graph``.
FORMATS = ("mermaid", "svg", "json")

#: Edges drawn dashed: what happens later or elsewhere (a timer, a timeout, a child machine).
_DASHED = frozenset({EdgeKind.TIMER, EdgeKind.TIMEOUT, EdgeKind.SPAWN})


def _is_failure(edge: Edge) -> bool:
    """Drawn in red: what leads to the failed node."""
    return edge.target == FAILED_ID


def edge_text(edge: Edge) -> str | None:
    """What an edge says: its label, its count, both (``payment: 3``), or nothing."""
    label = None if edge.label is None else one_line(edge.label)
    if edge.count is None:
        return label
    return f"{label}: {edge.count}" if label else str(edge.count)


def node_lines(node: Node) -> list[str]:
    """What a node says: its label, then its states not yet settled (``2 pending · 1 waiting``)."""
    lines = [one_line(node.label)]
    if node.counts:
        lines.append(" · ".join(f"{count} {status.replace('_', ' ')}" for status, count in node.counts.items()))
    if node.note:
        lines.append(f"({one_line(node.note)})")
    return lines


# -- Mermaid --------------------------------------------------------------------------------------

_RED = "#b42318"
#: Fill, stroke and text colour of each kind of node, in Mermaid and SVG alike.
_COLOURS = {
    NodeKind.STATE: ("#f5f7fb", "#51607a", "#111827"),
    NodeKind.START: ("#1f2937", "#1f2937", "#ffffff"),
    NodeKind.END: ("#1f2937", "#1f2937", "#ffffff"),
    NodeKind.FAILED: ("#fde2e1", _RED, "#7a271a"),
    NodeKind.WAIT: ("#eef4ff", "#3b5bdb", "#1e3a8a"),
    NodeKind.JOIN: ("#eef4ff", "#3b5bdb", "#1e3a8a"),
    NodeKind.UNKNOWN: ("#fafafa", "#888888", "#444444"),
}
#: Each kind's Mermaid shape (its opening and closing brackets) and class; states keep the theme's colours.
_MERMAID_SHAPES = {
    NodeKind.STATE: ("(", ")", None),
    NodeKind.START: ("((", "))", "dovesStart"),
    NodeKind.END: ("(((", ")))", "dovesEnd"),
    NodeKind.FAILED: ("([", "])", "dovesFailed"),
    NodeKind.WAIT: ("{{", "}}", "dovesWait"),
    NodeKind.JOIN: ("{{", "}}", "dovesWait"),
    NodeKind.UNKNOWN: ("[/", "/]", "dovesUnknown"),
}


def _mermaid_style(kind: NodeKind) -> str:
    fill, stroke, colour = _COLOURS[kind]
    dashed = ",stroke-dasharray:4 3" if kind is NodeKind.UNKNOWN else ""
    return f"fill:{fill},stroke:{stroke},color:{colour}{dashed}"


def _mermaid_text(text: str) -> str:
    """Text for a quoted Mermaid label: entity codes for what its parser or HTML would take."""
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("&", "#amp;"), ("<", "#lt;"), (">", "#gt;"), ("|", "#124;")):
        text = text.replace(char, code)
    return text


def to_mermaid(graph: Graph) -> str:
    """The graph as a Mermaid ``flowchart`` (what GitHub draws from a ```` ```mermaid ```` block).

    The title and notes are ``%%`` comments: Mermaid does not draw them, a reader of the
    text sees them.
    """
    ids = {node_id: f"n{index}" for index, node_id in enumerate(graph.nodes)}
    lines = ["flowchart TD", f"    %% {one_line(graph.title)}"]
    lines += [f"    %% note: {one_line(note)}" for note in graph.notes]
    for node in graph.nodes.values():
        opening, closing, _ = _MERMAID_SHAPES[node.kind]
        label = "<br/>".join(_mermaid_text(line) for line in node_lines(node))
        lines.append(f'    {ids[node.id]}{opening}"{label}"{closing}')
    failures = []
    for index, edge in enumerate(graph.edges.values()):
        arrow = "-.->" if edge.kind in _DASHED else "-->"
        text = edge_text(edge)
        label = "" if text is None else f'|"{_mermaid_text(text)}"|'
        lines.append(f"    {ids[edge.source]} {arrow}{label} {ids[edge.target]}")
        if _is_failure(edge):
            failures.append(str(index))
    classes: dict[str, tuple[str, list[str]]] = {}
    for node in graph.nodes.values():
        name = _MERMAID_SHAPES[node.kind][2]
        if name is not None:
            classes.setdefault(name, (_mermaid_style(node.kind), []))[1].append(ids[node.id])
    for name, (style, members) in classes.items():
        lines.append(f"    classDef {name} {style}")
        lines.append(f"    class {','.join(members)} {name}")
    if failures:
        lines.append(f"    linkStyle {','.join(failures)} stroke:{_RED},color:{_RED}")
    return "\n".join(lines) + "\n"


# -- SVG ------------------------------------------------------------------------------------------

#: Font sizes, in pixels.
_FONT_PX = 13.0
_SMALL_PX = 11.0
_TITLE_PX = 14.0
_FONT = "Helvetica, Arial, sans-serif"
_LINE_PX = 15.0
_STROKE = "#5b6473"
#: Room a loop from a node back to itself takes on the node's right.
_LOOP_PX = 34.0


#: Character widths in ems, a little wider than DejaVu Sans (the widest of the usual sans-serif fonts), so
#: text fits whichever font draws it.
_NARROW_EMS = dict.fromkeys("ijl'|!", 0.3) | dict.fromkeys("ftr()[]{}/\\-", 0.42) | dict.fromkeys(" .,:;", 0.34)
_WIDE_EMS = dict.fromkeys("mwMW@%", 0.95)


def text_width(text: str, size_px: float, *, bold: bool = False) -> float:
    """About how wide ``text`` is in a sans-serif font (no font files here: an estimate per character)."""
    units = 0.0
    for char in text:
        if char in _NARROW_EMS:
            units += _NARROW_EMS[char]
        elif char in _WIDE_EMS:
            units += _WIDE_EMS[char]
        elif ord(char) > 0x2E7F:  # CJK and the like: a full em
            units += 1.0
        elif char.isupper():
            units += 0.74
        else:
            units += 0.63
    return units * size_px * (1.1 if bold else 1.0)


def _node_box(node: Node, loop_label: str | None) -> Box:
    lines = node_lines(node)
    if node.kind in (NodeKind.START, NodeKind.END):
        size = 44.0
        width, height = size, size
    else:
        widest = max(text_width(line, _FONT_PX if i == 0 else _SMALL_PX) for i, line in enumerate(lines))
        padding = 40.0 if node.kind in (NodeKind.WAIT, NodeKind.JOIN) else 26.0
        width, height = max(widest + padding, 56.0), 16.0 + _LINE_PX * len(lines)
    extra = 0.0 if loop_label is None else _LOOP_PX + (text_width(loop_label, _SMALL_PX) + 6 if loop_label else 0)
    return Box(node.id, width, height, extra, round=node.kind in (NodeKind.START, NodeKind.END))


def _path(points: Sequence[Point]) -> str:
    """A smooth path through ``points`` (Catmull-Rom as cubic Béziers)."""
    if len(points) == 2:
        (x0, y0), (x1, y1) = points
        return f"M{x0:.1f},{y0:.1f} L{x1:.1f},{y1:.1f}"
    parts = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    for i in range(len(points) - 1):
        p0, p1, p2 = points[max(i - 1, 0)], points[i], points[i + 1]
        p3 = points[min(i + 2, len(points) - 1)]
        c1 = (p1[0] + (p2[0] - p0[0]) / 6, p1[1] + (p2[1] - p0[1]) / 6)
        c2 = (p2[0] - (p3[0] - p1[0]) / 6, p2[1] - (p3[1] - p1[1]) / 6)
        parts.append(f"C{c1[0]:.1f},{c1[1]:.1f} {c2[0]:.1f},{c2[1]:.1f} {p2[0]:.1f},{p2[1]:.1f}")
    return " ".join(parts)


def _text(x: float, y: float, text: str, *, size: float = _FONT_PX, colour: str = "#111827",
          anchor: str = "middle", bold: bool = False) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size:g}" fill="{colour}" text-anchor="{anchor}"'
            f' dominant-baseline="central"{weight}>{escape(text)}</text>')


def _shape(node: Node, box: Box, center: Point) -> list[str]:
    fill, stroke, colour = _COLOURS[node.kind]
    x, y = center
    w, h = box.width, box.height
    dashed = ' stroke-dasharray="4 3"' if node.kind is NodeKind.UNKNOWN or node.note else ""
    style = f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"{dashed}'
    out = [f"<g><title>{escape(one_line(node.id if node.kind is NodeKind.STATE else node.label))}</title>"]
    if node.kind in (NodeKind.START, NodeKind.END):
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{h / 2:.1f}" {style}/>')
        if node.kind is NodeKind.END:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{h / 2 - 4:.1f}" fill="none" stroke="#ffffff"'
                       ' stroke-width="1.5"/>')
        out.append(_text(x, y, node.label, size=_SMALL_PX, colour=colour))
    else:
        if node.kind in (NodeKind.WAIT, NodeKind.JOIN):
            left, right, top, bottom, cut = x - w / 2, x + w / 2, y - h / 2, y + h / 2, 12.0
            corners = [(left, y), (left + cut, top), (right - cut, top), (right, y), (right - cut, bottom),
                       (left + cut, bottom)]
            out.append(f'<polygon points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in corners)}" {style}/>')
        else:
            out.append(f'<rect x="{x - w / 2:.1f}" y="{y - h / 2:.1f}" width="{w:.1f}" height="{h:.1f}" rx="10"'
                       f" {style}/>")
        lines = node_lines(node)
        first = y - _LINE_PX * (len(lines) - 1) / 2
        for i, line in enumerate(lines):
            out.append(_text(x, first + i * _LINE_PX, line, size=_FONT_PX if i == 0 else _SMALL_PX,
                             colour=colour))
    out.append("</g>")
    return out


def _label(at: Point, text: str, colour: str) -> list[str]:
    width, height = text_width(text, _SMALL_PX) + 8, 16.0
    x, y = at
    return [f'<rect x="{x - width / 2:.1f}" y="{y - height / 2:.1f}" width="{width:.1f}" height="{height:.1f}"'
            ' rx="3" fill="#ffffff" fill-opacity="0.92"/>', _text(x, y, text, size=_SMALL_PX, colour=colour)]


def _edge(edge: Edge, route: Route, box: Box) -> list[str]:
    red = _is_failure(edge)
    colour = _RED if red else _STROKE
    dash = ' stroke-dasharray="6 4"' if edge.kind in _DASHED else ""
    marker = "doves-arrow-red" if red else "doves-arrow"
    text = edge_text(edge)
    if route.loop:
        x, y = route.points[0]
        right, far, rise = x + box.width / 2, x + box.width / 2 + _LOOP_PX - 6, box.height / 2 + 6
        d = (f"M{right:.1f},{y - 5:.1f} C{right + 12:.1f},{y - 5:.1f} {far:.1f},{y - rise:.1f} {far:.1f},{y:.1f}"
             f" C{far:.1f},{y + rise:.1f} {right + 12:.1f},{y + 5:.1f} {right + 1:.1f},{y + 5:.1f}")
        label_at: Point | None = (far + 6 + text_width(text or "", _SMALL_PX) / 2 + 4, y)
    else:
        d, label_at = _path(route.points), route.label_at
    out = [f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.5"{dash} marker-end="url(#{marker})"/>']
    if text and label_at is not None:
        out += _label(label_at, text, _RED if red else "#374151")
    return out


def _arrow(name: str, colour: str) -> str:
    return (f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6"'
            f' orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>')


def to_svg(graph: Graph) -> str:
    """The graph as a self-contained SVG picture (a white background, so it reads in dark mode too)."""
    loops = {e.source: edge_text(e) or "" for e in graph.edges.values() if e.source == e.target}
    boxes = [_node_box(node, loops.get(node.id)) for node in graph.nodes.values()]
    edges = list(graph.edges.values())
    links = []
    for edge in edges:
        text = edge_text(edge)
        width = 0.0 if not text else text_width(text, _SMALL_PX) + 10
        links.append(Link(edge.source, edge.target, width, 18.0 if text else 0.0))
    placed = layout(boxes, links)
    title_px = 34.0
    notes = [one_line(note) for note in graph.notes]
    width = max(placed.width, text_width(one_line(graph.title), _TITLE_PX, bold=True) + 32,
                *(text_width(note, _SMALL_PX) + 32 for note in notes))
    height = title_px + placed.height + _LINE_PX * len(notes) + (8 if notes else 0)
    width, height = math.ceil(width), math.ceil(height)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' font-family={quoteattr(_FONT)} role="img">',
        f"<title>{escape(one_line(graph.title))}</title>",
        f"<defs>{_arrow('doves-arrow', _STROKE)}{_arrow('doves-arrow-red', _RED)}</defs>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        _text(16, 20, one_line(graph.title), size=_TITLE_PX, anchor="start", bold=True),
        f'<g transform="translate(0,{title_px:g})">',
    ]
    by_id = {box.id: box for box in boxes}
    for edge, route in zip(edges, placed.routes, strict=True):
        out += _edge(edge, route, by_id[edge.source])
    for node, box in zip(graph.nodes.values(), boxes, strict=True):
        out += _shape(node, box, placed.centers[node.id])
    out.append("</g>")
    for i, note in enumerate(notes):
        out.append(_text(16, title_px + placed.height + 4 + i * _LINE_PX, note, size=_SMALL_PX,
                         colour="#6b7280", anchor="start"))
    out.append("</svg>")
    return "\n".join(out) + "\n"


__all__ = ["FORMATS", "edge_text", "node_lines", "text_width", "to_mermaid", "to_svg"]
