"""A campaign's flow drawn as SVG on the server: no JavaScript, no external CSS.

Drawn from :func:`campaigns.flow.flow_of`, the graph the checker and the tick read, so the
picture is the campaign as it runs: one box per item of ``steps:`` in file order, top to bottom
(action steps as rectangles, ``branch`` and ``split`` as hexagons, waits as pills), then ``end``.
A node that may go on with the next one has a straight arrow down to it (``edge-next``); each
jump (a branch case, a split path, a response's ``goto``) is an arrow routed on the right, in
its own lane, labelled where it leaves (``edge-jump``). Shorter jumps get the inner lanes.

Each node is ``<g class="node node-KIND" data-step="KEY" data-index="N">`` (no ``data-step``
for a plain wait without an id); each edge ``<g class="edge edge-next|edge-jump" data-from
data-to>``, naming nodes by key, ``#N`` for a wait without an id, or ``end``. Every text goes
through ``Markup.format``, which escapes it; long texts are cut, whole in the ``<title>``. The
``<style>`` inside is global once the SVG is inlined in a page, so its rules all start with
``svg.flow-diagram``; the arrowheads are markers ``#flow-arrow`` and ``#flow-jump`` (one
diagram per page keeps those ids unique).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from markupsafe import Markup

from campaigns.flow import CHOICE_KINDS, Jump, Node, flow_of
from campaigns.shapes import END, Campaign, Split, Step, Until, Wait, WaitFor
from dsl.explain import duration_text  # as `engine explain` writes a wait's at_most

MARGIN, WIDTH, GAP = 16, 240, 34  # page margin, widest box, room for the arrow between two boxes
GUTTER, LANE, PORT = 112, 14, 18  # room for jump labels, between two lanes, between two ports
LINE, TIP = 14, 14  # a line of text; how far a hexagon's side points out
CX, RIGHT = MARGIN + WIDTH // 2, MARGIN + WIDTH  # the boxes' middle; the widest's right side
WIDTHS = {"wait": 180, END: 80}  # narrower than an action; the others are WIDTH wide
STATS = (("sent", ("sent",)), ("opens", ("opened", "opens")), ("clicks", ("clicked", "clicks")))

STYLE = """
svg.flow-diagram text { font: 13px system-ui, sans-serif; fill: #1f2937; text-anchor: middle; }
svg.flow-diagram .kind, svg.flow-diagram .stats { font-size: 11px; fill: #4b5563; }
svg.flow-diagram .id { font-weight: 600; }
svg.flow-diagram .shape { stroke-width: 1.5; fill: #eef2ff; stroke: #4f46e5; }
svg.flow-diagram .node-activity .shape { fill: #ecfdf5; stroke: #047857; }
svg.flow-diagram .node-branch .shape, svg.flow-diagram .node-split .shape { fill: #fffbeb; stroke: #b45309; }
svg.flow-diagram .node-wait .shape { fill: #f3f4f6; stroke: #6b7280; }
svg.flow-diagram .node-wait_for .shape { fill: #faf5ff; stroke: #7e22ce; }
svg.flow-diagram .node-end .shape { fill: #1f2937; stroke: #1f2937; }
svg.flow-diagram .node-end text { fill: #ffffff; font-weight: 600; }
svg.flow-diagram .edge path { fill: none; stroke: #4b5563; stroke-width: 1.5; stroke-linejoin: round; }
svg.flow-diagram .edge-jump path { stroke: #b45309; }
svg.flow-diagram .edge text { font-size: 11px; fill: #92400e; text-anchor: start; }
"""


@dataclass(frozen=True)
class Box:
    """Where one node is drawn: its top, size, text lines and the ports on its right side."""

    ref: str  # the node's key, "#N" for a wait without an id, or END
    index: int  # the node's place in the file (END: after the last)
    kind: str
    shape: str  # rect | hex | pill
    top: int
    width: int
    height: int
    lines: tuple[tuple[str, str], ...]  # (css class, text)
    ports: tuple[int, ...]  # y where jumps arrive (first), then where each of its jumps leaves

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return CX + self.width // 2

    def edge(self, y: int) -> int:
        """The x where a horizontal line at ``y`` meets the shape's right side."""
        off, half = abs(y - (self.top + self.height / 2)), self.height / 2
        if self.shape == "hex":
            return round(self.right - TIP * off / half)
        if self.shape == "pill":
            return round(self.right - half + math.sqrt(max(half * half - off * off, 0)))
        return self.right


def flow_svg(campaign: Campaign, stats: Mapping[str, Mapping[str, Any]] | None = None) -> Markup:
    """The campaign's flow as an ``<svg>`` element; ``stats``: per action step key, counts such
    as ``sent``, ``opens`` (or ``opened``) and ``clicks`` (or ``clicked``) to show under it."""
    flow = flow_of(campaign)
    boxes, top = [], MARGIN
    for node in flow.nodes:
        boxes.append(_box(node, top, stats or {}))
        top = boxes[-1].bottom + GAP
    end = Box(END, len(boxes), "end", "pill", top, WIDTHS[END], 28, (("text", "end"),), (top + 14,))

    edges, jumps = [], []
    for node, box, after in zip(flow.nodes, boxes, [*boxes[1:], end]):
        if node.falls_through:
            edges.append(_next_edge(box, after, _fall_label(node)))
        for port, jump in zip(box.ports[1:], node.jumps):
            found = flow.node(jump.target) if jump.target != END else None  # follows renamed_from
            target = end if jump.target == END else boxes[found.index] if found is not None else None
            if target is not None:  # else an unknown step: the checker's error, not drawn
                jumps.append((box, port, target, _jump_label(node, jump), jump.reason))
    lanes = _lanes([tuple(sorted((port, target.ports[0]))) for _, port, target, _, _ in jumps])
    for (box, port, target, label, reason), lane in zip(jumps, lanes):
        edges.append(_jump_edge(box, port, target, RIGHT + GUTTER + lane * LANE, label, reason))

    width = RIGHT + (GUTTER + max(lanes) * LANE if lanes else 0) + MARGIN
    title = f"Flow of campaign {_name(campaign)}"
    return Markup(
        '<svg xmlns="http://www.w3.org/2000/svg" class="flow-diagram" role="img" aria-label="{title}" '
        'width="{w}" height="{h}" viewBox="0 0 {w} {h}"><title>{title}</title><style>{style}</style>'
        "<defs>{arrows}</defs>{edges}{nodes}</svg>"
    ).format(title=title, w=width, h=end.bottom + MARGIN, style=Markup(STYLE), arrows=_arrows(),
             edges=Markup("").join(edges), nodes=Markup("").join(_node(b) for b in [*boxes, end]))


# --- layout ----------------------------------------------------------------------------------


def _box(node: Node, top: int, stats: Mapping[str, Mapping[str, Any]]) -> Box:
    item, kind = node.item, node.kind
    if isinstance(item, Step):
        action = item.action
        what = f"activity · {action.kind}" if kind == "activity" else kind  # type: ignore[union-attr]
        variants = len(getattr(action, "variants", None) or {})
        what += f" · {variants} variant{'s' * (variants != 1)}" if variants else ""
        lines = [("kind", what), ("id", item.id)]
        counts = _stats_text(stats.get(item.id))
        lines += [("stats", counts)] if counts else []
        shape = "rect"
    elif kind in CHOICE_KINDS:
        lines, shape = [("kind", kind), ("id", node.key or "")], "hex"
    else:
        wait = item.wait  # type: ignore[union-attr]
        lines, shape = [("text", _wait_text(item))], "pill"  # type: ignore[arg-type]
        if isinstance(wait, WaitFor):
            most = f"at most {duration_text(wait.at_most)}"
            lines.append(("kind", f"{item.id} · {most}" if item.id is not None else most))
        elif item.id is not None:
            lines.insert(0, ("id", item.id))
    ports = len(node.jumps)
    height = max(LINE * (len(lines) + 1), PORT * (ports + 2) if ports else 0)
    # where jumps arrive (above), then one port for each jump leaving it, evenly spaced
    spots = [top + height * (i + 1) // (ports + 2) for i in range(ports + 1)] if ports else [top + height // 2]
    ref = node.key if node.key is not None else f"#{node.index}"
    width = WIDTHS.get(kind, WIDTH)
    return Box(ref, node.index, kind, shape, top, width, height, tuple(lines), tuple(spots))


def _lanes(spans: list[tuple[int, int]]) -> list[int]:
    """A lane for each jump's vertical span (0: nearest the boxes), none shared by two that
    overlap; the shorter spans first, so a short jump is not crossed by a long one's ends."""
    taken: list[list[tuple[int, int]]] = []
    lanes = [0] * len(spans)
    for i in sorted(range(len(spans)), key=lambda i: (spans[i][1] - spans[i][0], spans[i])):
        low, high = spans[i]
        free = (n for n, used in enumerate(taken) if all(high < a or low > b for a, b in used))
        lane = next(free, len(taken))
        if lane == len(taken):
            taken.append([])
        taken[lane].append(spans[i])
        lanes[i] = lane
    return lanes


# --- texts -----------------------------------------------------------------------------------


def _wait_text(wait: Wait) -> str:
    """A wait in a few words: ``wait 3d``, ``wait until 09:00``, ``wait for COND``."""
    value = wait.wait
    if isinstance(value, WaitFor):
        return f"wait for {' '.join(value.for_.split())}"
    if isinstance(value, Until):
        return f"wait until {value.until}"
    return f"wait {duration_text(value)}"


def _stats_text(row: Mapping[str, Any] | None) -> str:
    """``sent 120 · opens 40 · clicks 8``, of the counts ``row`` has."""
    parts = []
    for word, keys in STATS:
        value = next((row[k] for k in keys if row.get(k) is not None), None) if row else None
        if value is not None:
            parts.append(f"{word} {value}")
    return " · ".join(parts)


def _jump_label(node: Node, jump: Jump) -> str:
    if isinstance(node.item, Split):
        return f"{jump.label} {_share(node.item, jump.label)}"
    return jump.label


def _fall_label(node: Node) -> str:
    """What goes on with the next node, when not everything does: a split's paths without a
    ``goto``, or a branch's "otherwise" (no case held)."""
    if isinstance(node.item, Split):
        paths = node.item.split.items()
        return ", ".join(f"{key} {_share(node.item, key)}" for key, path in paths if path.goto is None)
    return "otherwise" if node.kind == "branch" else ""


def _share(split: Split, key: str) -> str:
    total = sum(path.weight for path in split.split.values())
    return f"{round(100 * split.split[key].weight / total, 1):g}%"


def _name(campaign: Campaign) -> str:
    if campaign.name:
        return campaign.name
    return PurePath(campaign.document.path).stem if campaign.document is not None else "(unnamed)"


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


# --- drawing ---------------------------------------------------------------------------------


def _node(box: Box) -> Markup:
    left, right, top, bottom = CX - box.width // 2, box.right, box.top, box.bottom
    mid = top + box.height // 2
    if box.shape == "hex":
        corners = ((left + TIP, top), (right - TIP, top), (right, mid), (right - TIP, bottom),
                   (left + TIP, bottom), (left, mid))
        shape = Markup('<polygon class="shape" points="{}"/>').format(" ".join(f"{x},{y}" for x, y in corners))
    else:
        radius = box.height // 2 if box.shape == "pill" else 4
        shape = Markup('<rect class="shape" x="{}" y="{}" width="{}" height="{}" rx="{}"/>').format(
            left, top, box.width, box.height, radius)
    first = mid - LINE * len(box.lines) // 2 + 11
    texts = Markup("").join(Markup('<text class="{}" x="{}" y="{}">{}</text>').format(
        cls, CX, first + LINE * i, _cut(text, box.width // 8)) for i, (cls, text) in enumerate(box.lines))
    step = Markup(' data-step="{}"').format(box.ref) if not box.ref.startswith("#") else ""
    return Markup('<g class="node node-{}"{} data-index="{}"><title>{}</title>{}{}</g>').format(
        box.kind, step, box.index, " ".join(t for _, t in box.lines), shape, texts)


def _next_edge(box: Box, after: Box, label: str) -> Markup:
    middle = (box.bottom + after.top) // 2
    text = Markup('<text x="{}" y="{}">{}</text>').format(CX + 6, middle + 4, _cut(label, 24))
    return Markup('<g class="edge edge-next" data-from="{}" data-to="{}"><path d="M{} {}V{}" '
                  'marker-end="url(#flow-arrow)"/>{}</g>').format(
        box.ref, after.ref, CX, box.bottom, after.top - 1, text if label else "")


def _jump_edge(box: Box, port: int, target: Box, lane: int, label: str, reason: str) -> Markup:
    """From a port on ``box``'s right, out to its lane, along it, and into ``target``'s right side."""
    start, arrive = box.edge(port), target.ports[0]
    path = f"M{start} {port}H{lane}V{arrive}H{target.edge(arrive) + 1}"
    return Markup('<g class="edge edge-jump jump-{}" data-from="{}" data-to="{}" data-label="{}"><title>{}</title>'
                  '<path d="{}" marker-end="url(#flow-jump)"/><text x="{}" y="{}">{}</text></g>').format(
        reason, box.ref, target.ref, label, f"{label}: {box.ref} → {target.ref}", path, start + 4, port - 4,
        _cut(label, GUTTER // 7))


def _arrows() -> Markup:
    return Markup("").join(Markup(
        '<marker id="{}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto">'
        '<path d="M0 0L10 5L0 10z" fill="{}"/></marker>').format(name, colour)
        for name, colour in (("flow-arrow", "#4b5563"), ("flow-jump", "#b45309")))
