"""Draw a LabGraph with matplotlib: the router on top, one bar per underlay segment, node boxes under
their segment (pod CIDRs and pods inside), and the tunnels, routes and BGP sessions between nodes.

Two ways to show the node-to-node edges:
- drawn, when every segment's nodes fit in one row and there are few edges: arcs below the boxes, each
  labelled where its label does not collide with another (a tunnel's VNI/port, a session's state when it
  is not Established), the labels shared by every edge of a kind going to the legend;
- summarised, otherwise (a 50-node full mesh is 1225 edges): each box lists its own edges ("VXLAN to all
  49 other nodes", "BGP mesh 49/49 Established") with what is wrong named in red, and the legend gives the
  totals. Segment drops to boxes in lower rows run in the gaps between columns, never across a box.

Every node is one SVG group (`<g id="node-<name>">`), every external host `external-<name>`, every
segment `segment-<name>` and every drawn edge `edge-<a>-<b>-<kind>`, so a figure can be checked by counting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from lab.errors import LabError
from lab.graph.model import Edge, LabGraph, NodeBox

BOX_W = 2.6
GAP_X = 0.6
ROW_GAP = 0.6
LINE_H = 0.2                   # one text line inside a box, in data units (1 unit = 0.75 inch)
MAX_COLUMNS = 10
MAX_PODS_SHOWN = 3
MAX_DRAWN_EDGES = 30           # more than this (or boxes in several rows): summarised in the boxes
MAX_LABELLED = 6               # per kind: label each edge up to this many
COLOURS = {"vxlan": "#1f77b4", "ipip": "#9467bd", "direct": "#2ca02c", "refused": "#d62728", "bgp": "#ff7f0e"}
KIND_TEXT = {"vxlan": "VXLAN tunnel", "ipip": "IPIP tunnel", "direct": "route straight to the node (same segment)",
             "refused": "no route or tunnel (kernel refused or lacks it)", "bgp": "BGP session"}
SHORT = {"vxlan": "VXLAN", "ipip": "IPIP", "direct": "direct route"}
BULGE = {"vxlan": 0.55, "ipip": 0.55, "direct": 0.75, "refused": 0.75, "bgp": 1.0}   # kinds apart on one pair
PROBLEM = "#d62728"
OK_STATES = ("Established", "configured")


@dataclass(frozen=True)
class Place:
    """Where a box sits: top-left corner, height, and its row and column within its segment."""

    x: float
    top: float
    height: float
    row: int


# -- what each box says ------------------------------------------------------------------------------
def _box_lines(box: NodeBox) -> list[str]:
    lines = [box.name + (f" ({box.role})" if box.role else ""), box.ip]
    if box.external:
        return lines + ["BGP router (ExaBGP)" if box.router else "external host"]
    lines += [f"pods {c}" for c in box.pod_cidrs[:2]] + ([f"+{len(box.pod_cidrs) - 2} blocks"]
                                                          if len(box.pod_cidrs) > 2 else [])
    lines += [f"{p.key} {p.ip}" for p in box.pods[:MAX_PODS_SHOWN]]
    if len(box.pods) > MAX_PODS_SHOWN:
        lines.append(f"+{len(box.pods) - MAX_PODS_SHOWN} more pods")
    return lines


def _names(names: list[str], most: int = 3) -> str:
    return ", ".join(sorted(names)[:most]) + (f" +{len(names) - most}" if len(names) > most else "")


def _summaries(graph: LabGraph) -> dict[str, list[tuple[str, bool]]]:
    """Per node: (line, is a problem) for each kind of edge it has, when edges are summarised in the boxes."""
    others = sum(1 for b in graph.nodes if not b.external) - 1
    found: dict[str, list[tuple[str, bool]]] = {b.name: [] for b in graph.nodes}
    for box in graph.nodes:
        mine = [e for e in graph.edges if box.name in (e.a, e.b)]
        for kind in ("vxlan", "ipip", "direct"):
            peers = [e.b if e.a == box.name else e.a for e in mine if e.kind == kind]
            if peers:
                whom = f"all {others} other nodes" if len(peers) == others else f"{len(peers)} nodes"
                found[box.name].append((f"{SHORT[kind]} to {whom}", False))
            one_way = [e.b if e.a == box.name else e.a for e in mine if e.kind == kind and e.state]
            if one_way:
                found[box.name].append((f"{SHORT[kind]} one-way: {_names(one_way)}", True))
        refused = [e.b if e.a == box.name else e.a for e in mine if e.kind == "refused"]
        if refused:
            found[box.name].append((f"no route to {_names(refused)}", True))
        for role in sorted({e.role for e in mine if e.kind == "bgp"}):
            sessions = [e for e in mine if e.kind == "bgp" and e.role == role]
            good = [e for e in sessions if e.state == "Established"]
            configured = all(e.state == "configured" for e in sessions)
            text = f"BGP {role}: {len(sessions)} sessions" if configured else \
                f"BGP {role}: {len(good)}/{len(sessions)} Established"
            if role != "mesh" and len(sessions) <= 3:
                text += f" ({_names([e.b if e.a == box.name else e.a for e in sessions])})"
            found[box.name].append((text, False))
            bad = [e for e in sessions if e.state not in OK_STATES]
            if bad:
                found[box.name].append((f"not Established: {_names([e.b if e.a == box.name else e.a for e in bad])}",
                                        True))
    return found


# -- layout --------------------------------------------------------------------------------------------
def _drawn(graph: LabGraph) -> bool:
    """Edges as arcs (few, every segment in one row), or summarised in the boxes."""
    one_row = all(sum(1 for b in graph.nodes if b.segment == s.name) <= MAX_COLUMNS for s in graph.segments)
    return one_row and len(graph.edges) <= MAX_DRAWN_EDGES


def _layout(graph: LabGraph, extra: dict[str, list[tuple[str, bool]]]
            ) -> tuple[dict[str, Place], dict[str, tuple[float, float]], float, float]:
    """Box places, segment bars (x0, x1) at y=0; total width and depth."""
    lines = max((len(_box_lines(b)) + len(extra.get(b.name, [])) for b in graph.nodes), default=2)
    height = lines * LINE_H + 0.45
    places: dict[str, Place] = {}
    bars: dict[str, tuple[float, float]] = {}
    x = depth = 0.0
    for segment in graph.segments:
        members = [b for b in graph.nodes if b.segment == segment.name]
        columns = max(1, min(MAX_COLUMNS, len(members)))
        for i, box in enumerate(members):
            row, col = divmod(i, columns)
            top = -1.0 - row * (height + ROW_GAP)
            places[box.name] = Place(x + GAP_X + col * (BOX_W + GAP_X), top, height, row)
            depth = max(depth, -top + height)
        width = GAP_X + columns * (BOX_W + GAP_X)
        bars[segment.name] = (x, x + width)
        x += width + GAP_X
    return places, bars, max(x - GAP_X, BOX_W), depth


def _arc(start: tuple[float, float], end: tuple[float, float], rad: float,
         steps: int = 16) -> list[tuple[float, float]]:
    """The quadratic curve matplotlib's arc3 draws from start to end (control point off the midpoint by rad)."""
    (xa, ya), (xb, yb) = start, end
    cx, cy = (xa + xb) / 2 + rad * (yb - ya), (ya + yb) / 2 - rad * (xb - xa)
    points = []
    for t in (i / steps for i in range(steps + 1)):
        wa, wc, wb = (1 - t) ** 2, 2 * (1 - t) * t, t * t
        points.append((wa * xa + wc * cx + wb * xb, wa * ya + wc * cy + wb * yb))
    return points


def _edge_style(edge: Edge) -> dict[str, Any]:
    style: dict[str, Any] = {"color": COLOURS[edge.kind], "alpha": 0.85, "lw": 1.6, "ls": "-"}
    if edge.kind == "refused" or (edge.kind != "bgp" and edge.state):
        style["ls"] = "--"
    if edge.kind == "direct":
        style.update(lw=1.0, alpha=0.6)
    if edge.kind == "bgp" and edge.state not in OK_STATES:
        style.update(ls=":", color="#7f7f7f")
    return style


def _edge_label(edge: Edge, shared: dict[str, str | None]) -> str:
    """What to write on an edge: its state when something is wrong, else its label unless every edge of its
    kind has the same one (that goes to the legend)."""
    if edge.kind == "bgp":
        return edge.state if edge.state not in OK_STATES else ""
    if edge.state and edge.kind != "refused":
        return edge.state
    return "" if shared.get(edge.kind) is not None else edge.label


# -- drawing -------------------------------------------------------------------------------------------
class Figure:
    """One figure being drawn: the axes, the font size, and the label boxes placed so far (no overlaps)."""

    def __init__(self, ax: Any, fontsize: float) -> None:
        self.ax, self.fontsize = ax, fontsize
        self.taken: list[tuple[float, float, float, float]] = []

    def free(self, x: float, y: float, text: str) -> bool:
        width, height = 0.075 * self.fontsize / 8 * len(text) + 0.1, 0.22 * self.fontsize / 8
        box = (x - width / 2, y - height, x + width / 2, y)
        if any(not (box[2] < t[0] or t[2] < box[0] or box[3] < t[1] or t[3] < box[1]) for t in self.taken):
            return False
        self.taken.append(box)
        return True


def _draw_router(fig: Figure, graph: LabGraph, width: float) -> float:
    from matplotlib.patches import FancyBboxPatch
    router_x = width / 2
    gateways = ", ".join(s.gateway for s in graph.segments)
    label = f"router ({graph.name}._underlay)\n{gateways}"
    router_w = max(3.2, 0.13 * max(len(line) for line in label.splitlines()))
    fig.ax.add_patch(FancyBboxPatch((router_x - router_w / 2, 1.3), router_w, 0.8, boxstyle="round,pad=0.05",
                                    fc="#eeeeee", ec="k", gid="router"))
    fig.ax.text(router_x, 1.7, label, ha="center", va="center", fontsize=fig.fontsize)
    return router_x


def _draw_segments(fig: Figure, graph: LabGraph, bars: dict[str, tuple[float, float]], router_x: float) -> None:
    from matplotlib.lines import Line2D
    for segment in graph.segments:
        x0, x1 = bars[segment.name]
        fig.ax.add_line(Line2D([x0, x1], [0, 0], lw=5, color="#555555", solid_capstyle="butt",
                               gid=f"segment-{segment.name}"))
        fig.ax.add_line(Line2D([(x0 + x1) / 2, router_x], [0, 1.3], lw=1, color="#555555"))
        fig.ax.text(x0, 0.15, f"{segment.name} {segment.cidr} (mtu {segment.mtu})", fontsize=fig.fontsize,
                    va="bottom")


def _drop(place: Place) -> tuple[list[float], list[float]]:
    """The line from the segment bar to a box: straight down for the first row; for lower rows down the gap
    left of the box (between columns, so it crosses no box above) and then into the box's left side."""
    centre = place.x + BOX_W / 2
    if place.row == 0:
        return [centre, centre], [0, place.top]
    gap = place.x - GAP_X / 2
    y = place.top - 0.25
    return [gap, gap, place.x], [0, y, y]


def _draw_boxes(fig: Figure, graph: LabGraph, places: dict[str, Place],
                extra: dict[str, list[tuple[str, bool]]]) -> dict[str, tuple[float, float]]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyBboxPatch
    bottoms = {}
    for box in graph.nodes:
        place = places[box.name]
        bottoms[box.name] = (place.x + BOX_W / 2, place.top - place.height)
        xs, ys = _drop(place)
        fig.ax.add_line(Line2D(xs, ys, lw=0.8, color="#999999", zorder=0.8))
        face = "#fff7e6" if box.external else ("#e8f0ff" if not box.role else "#ffe8e8")
        problem = any(bad for _, bad in extra.get(box.name, []))
        gid = f"{'external' if box.external else 'node'}-{box.name}"
        fig.ax.add_patch(FancyBboxPatch((place.x, place.top - place.height), BOX_W, place.height,
                                        boxstyle="round,pad=0.03", fc=face, ec=PROBLEM if problem else "k",
                                        lw=1.8 if problem else 1.0, gid=gid, zorder=1))
        lines = _box_lines(box)
        fig.ax.text(place.x + 0.1, place.top - 0.12, lines[0], fontsize=fig.fontsize, weight="bold", va="top",
                    zorder=2)
        y = place.top - 0.42
        for text, colour, weight in [(line, "black", "normal") for line in lines[1:]] + [
                (text, PROBLEM if bad else "#1a4d80", "bold" if bad else "normal")
                for text, bad in extra.get(box.name, [])]:
            fig.ax.text(place.x + 0.1, y, text, fontsize=fig.fontsize * 0.85, va="top", zorder=2, color=colour,
                        weight=weight)
            y -= LINE_H
    return bottoms


def _draw_edges(fig: Figure, graph: LabGraph, bottoms: dict[str, tuple[float, float]]) -> None:
    from matplotlib.patches import FancyArrowPatch
    shared = _shared_labels(graph)
    counts = {k: sum(1 for e in graph.edges if e.kind == k) for k in COLOURS}
    for edge in sorted(graph.edges, key=lambda e: abs(bottoms[e.a][0] - bottoms[e.b][0])):
        start, end = sorted((bottoms[edge.a], bottoms[edge.b]))
        span = max(abs(end[0] - start[0]), 1.0)
        rad = (min(0.6, 2.2 / span) if abs(start[1] - end[1]) < 1e-6 else 0.15) * BULGE[edge.kind]   # below boxes
        style = _edge_style(edge)
        fig.ax.add_patch(FancyArrowPatch(start, end, connectionstyle=f"arc3,rad={rad}", arrowstyle="-",
                                         color=style["color"], alpha=style["alpha"], lw=style["lw"], ls=style["ls"],
                                         gid=f"edge-{edge.a}-{edge.b}-{edge.kind}", zorder=0.5))
        text = _edge_label(edge, shared)
        if text and (counts[edge.kind] <= MAX_LABELLED or edge.state not in ("", *OK_STATES)):
            _label_on_arc(fig, _arc(start, end, rad), text, style["color"])


def _label_on_arc(fig: Figure, points: list[tuple[float, float]], text: str, colour: str) -> None:
    """Write `text` on the arc, at the first of a few spots along it where it overlaps no other label."""
    last = len(points) - 1
    for t in (0.5, 0.35, 0.65, 0.25, 0.75, 0.15, 0.85):
        x, y = points[round(t * last)]
        if fig.free(x, y, text):
            fig.ax.text(x, y, text, fontsize=fig.fontsize * 0.8, ha="center", va="top", color=colour,
                        bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 0.5}, zorder=3)
            return


def _shared_labels(graph: LabGraph) -> dict[str, str | None]:
    """Per kind, the label every edge of that kind has (None when they differ)."""
    labels: dict[str, set[str]] = {}
    for edge in graph.edges:
        labels.setdefault(edge.kind, set()).add(edge.label)
    return {kind: next(iter(found)) if len(found) == 1 else None for kind, found in labels.items()}


def _legend(fig: Figure, graph: LabGraph) -> None:
    from matplotlib.lines import Line2D
    shared = _shared_labels(graph)
    handles = []
    for kind in [k for k in COLOURS if any(e.kind == k for e in graph.edges)]:
        edges = [e for e in graph.edges if e.kind == kind]
        detail = shared.get(kind) or ""
        if kind == "bgp":
            roles = ", ".join(sorted({e.role for e in edges}))
            good = sum(1 for e in edges if e.state in OK_STATES)
            state = "configured (lab not running)" if all(e.state == "configured" for e in edges) else \
                f"{good} Established"
            handles.append(Line2D([], [], color=COLOURS[kind], label=f"{KIND_TEXT[kind]} ({roles}): {len(edges)}, "
                                  f"{state}"))
            if good < len(edges):
                handles.append(Line2D([], [], color="#7f7f7f", ls=":", label=f"BGP session not Established: "
                                      f"{len(edges) - good}"))
            continue
        handles.append(Line2D([], [], color=COLOURS[kind], ls="--" if kind == "refused" else "-",
                              label=f"{KIND_TEXT[kind]}: {len(edges)}" + (f", {detail}" if detail and kind != "refused"
                                                                          else "")))
    if handles:           # in the band kept free below the drawing (legend_rows)
        fig.ax.legend(handles=handles, loc="lower right", fontsize=fig.fontsize, framealpha=0.9)


def legend_rows(graph: LabGraph) -> int:
    kinds = {e.kind for e in graph.edges}
    bad = any(e.kind == "bgp" and e.state not in OK_STATES for e in graph.edges)
    return len(kinds) + int(bad)


def _caption(fig: Figure, graph: LabGraph, y: float) -> None:
    """Summarised edges: one line per kind under the boxes, saying what each box's lines stand for."""
    nodes = sum(1 for b in graph.nodes if not b.external)
    shared = _shared_labels(graph)
    lines = []
    for kind in [k for k in COLOURS if any(e.kind == k for e in graph.edges)]:
        count = sum(1 for e in graph.edges if e.kind == kind)
        mesh = " - between every two nodes" if count == nodes * (nodes - 1) // 2 else ""
        detail = f", {shared[kind]}" if shared.get(kind) and kind not in ("refused", "bgp") else ""
        lines.append(f"{KIND_TEXT[kind]}s: {count}{mesh}{detail}")
    if lines:
        fig.ax.text(0, y, "too many edges to draw; each box lists its own.  " + ";  ".join(lines),
                    fontsize=fig.fontsize, va="top", color="#1a4d80")


def _title(graph: LabGraph) -> str:
    nodes = sum(1 for b in graph.nodes if not b.external)
    tunnels = sum(1 for e in graph.edges if e.kind in ("vxlan", "ipip"))
    title = f"lab {graph.name}: {graph.mode}, {nodes} nodes" + (f", {tunnels} tunnels" if tunnels else "")
    return title + "\n" + ("live - " if graph.live else "") + "; ".join(graph.sources)


def render(graph: LabGraph, output: str) -> str:
    """Write the figure to `output` (.svg or .png); returns the path."""
    fmt = os.path.splitext(output)[1].lower().lstrip(".")
    if fmt not in ("svg", "png"):
        raise LabError(f"-o {output}: unknown figure format {fmt or '(none)'!r}", "name the file .svg or .png")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise LabError(f"-o {output}: directory {directory} does not exist", "create it or write the figure elsewhere")
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"      # text stays text: searchable, and smaller files
    from matplotlib import pyplot as plt

    drawn = _drawn(graph)
    extra = {} if drawn else _summaries(graph)
    places, bars, width, depth = _layout(graph, extra)
    below = (2.2 if drawn else 1.4) + 0.32 * legend_rows(graph)
    fig_w = max(8.0, min(60.0, (width + 2) * 0.75))
    fig_h = max(5.0, (depth + below + 2.6) * 0.75)
    figure, ax = plt.subplots(figsize=(fig_w, fig_h))
    ax.set_xlim(-1, width + 1)
    ax.set_ylim(-depth - below, 2.6)
    ax.axis("off")
    fig = Figure(ax, 8 * (1.0 if len(graph.nodes) <= 12 else 0.85))
    router_x = _draw_router(fig, graph, width)
    _draw_segments(fig, graph, bars, router_x)
    bottoms = _draw_boxes(fig, graph, places, extra)
    if drawn:
        _draw_edges(fig, graph, bottoms)
    else:
        _caption(fig, graph, -depth - 0.3)
    _legend(fig, graph)
    title = _title(graph)
    ax.set_title(title, fontsize=10)
    figure.tight_layout()
    metadata = {"Title": title} if fmt == "png" else {"Title": title, "Date": None}
    figure.savefig(output, format=fmt, dpi=110 if fmt == "png" else None, metadata=metadata)
    plt.close(figure)
    return output
