"""Draw a LabGraph with matplotlib: the router on top, one bar per underlay segment, node boxes under
their segment (pod CIDRs and pods inside), and tunnel / route / BGP edges between the boxes.

Every node is one SVG group (`<g id="node-<name>">`), every external host `external-<name>`, every
segment `segment-<name>` and every edge `edge-<a>-<b>-<kind>`, so a figure can be checked by counting.
"""

from __future__ import annotations

import os

from lab.errors import LabError
from lab.graph.model import Edge, LabGraph, NodeBox

BOX_W = 2.6
GAP_X = 0.5
ROW_GAP = 0.6
MAX_COLUMNS = 10
MAX_PODS_SHOWN = 3
MANY_EDGES = 60
COLOURS = {"vxlan": "#1f77b4", "ipip": "#9467bd", "direct": "#2ca02c", "refused": "#d62728", "bgp": "#ff7f0e"}
KIND_TEXT = {"vxlan": "VXLAN tunnel", "ipip": "IPIP tunnel", "direct": "host-gw route (same segment)",
             "refused": "route refused by the kernel (no L2 adjacency)", "bgp": "BGP session"}


def _box_lines(box: NodeBox) -> list[str]:
    lines = [box.name + (f" ({box.role})" if box.role else ""), box.ip]
    if box.external:
        return lines + ["external host"]
    lines += [f"pods {c}" for c in box.pod_cidrs[:2]] + ([f"+{len(box.pod_cidrs) - 2} blocks"]
                                                          if len(box.pod_cidrs) > 2 else [])
    lines += [f"{p.key} {p.ip}" for p in box.pods[:MAX_PODS_SHOWN]]
    if len(box.pods) > MAX_PODS_SHOWN:
        lines.append(f"+{len(box.pods) - MAX_PODS_SHOWN} more pods")
    return lines


def _layout(graph: LabGraph) -> tuple[dict[str, tuple[float, float, float]], dict[str, tuple[float, float]], float,
                                      float]:
    """Box positions (x, y of the top-left corner, height), segment bars (x0, x1) at y=0; total width and depth."""
    line_h = 0.32
    height = max((len(_box_lines(b)) for b in graph.nodes), default=2) * line_h + 0.3
    boxes: dict[str, tuple[float, float, float]] = {}
    bars: dict[str, tuple[float, float]] = {}
    x = 0.0
    depth = 0.0
    for segment in graph.segments:
        members = [b for b in graph.nodes if b.segment == segment.name]
        columns = max(1, min(MAX_COLUMNS, len(members)))
        for i, box in enumerate(members):
            row, col = divmod(i, columns)
            top = -1.0 - row * (height + ROW_GAP)
            boxes[box.name] = (x + col * (BOX_W + GAP_X), top, height)
            depth = max(depth, -top + height)
        width = columns * (BOX_W + GAP_X) - GAP_X
        bars[segment.name] = (x, x + width)
        x += width + 2 * GAP_X
    return boxes, bars, max(x - 2 * GAP_X, BOX_W), depth


def _arc(a: tuple[float, float], b: tuple[float, float], rad: float, steps: int = 16) -> list[tuple[float, float]]:
    """The quadratic curve matplotlib's arc3 draws from a to b (control point off the midpoint by rad)."""
    (xa, ya), (xb, yb) = a, b
    cx, cy = (xa + xb) / 2 + rad * (yb - ya), (ya + yb) / 2 - rad * (xb - xa)
    points = []
    for t in (i / steps for i in range(steps + 1)):
        a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t * t
        points.append((a * xa + b * cx + c * xb, a * ya + b * cy + c * yb))
    return points


def _edge_style(edge: Edge, count: int) -> dict:
    alpha = 0.85 if count <= 12 else max(0.12, 6.0 / count)
    style = {"color": COLOURS[edge.kind], "alpha": alpha, "lw": 1.6 if count <= 30 else 0.6, "ls": "-"}
    if edge.kind == "refused":
        style["ls"] = "--"
    if edge.kind == "bgp" and edge.state not in ("Established", "configured"):
        style.update(ls=":", color="#7f7f7f")
    return style


def render(graph: LabGraph, output: str) -> str:
    """Write the figure to `output` (.svg or .png); returns the path."""
    fmt = os.path.splitext(output)[1].lower().lstrip(".")
    if fmt not in ("svg", "png"):
        raise LabError(f"-o {output}: unknown figure format {fmt or '(none)'!r}", "name the file .svg or .png")
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"      # text stays text: searchable, and smaller files
    from matplotlib import pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    boxes, bars, width, depth = _layout(graph)
    scale = 1.0 if len(graph.nodes) <= 12 else 0.8
    fig_w = max(8.0, min(60.0, (width + 2) * 0.75))
    fig_h = max(5.0, (depth + 4.8) * 0.75)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    ax.set_xlim(-1, width + 1)
    ax.set_ylim(-depth - 2.2, 2.6)
    ax.axis("off")
    fontsize = 8 * scale
    router_x = width / 2
    gateways = ", ".join(s.gateway for s in graph.segments)
    label = f"router ({graph.name}._underlay)\n{gateways}"
    router_w = max(3.2, 0.13 * max(len(line) for line in label.splitlines()))
    ax.add_patch(FancyBboxPatch((router_x - router_w / 2, 1.3), router_w, 0.8, boxstyle="round,pad=0.05",
                                fc="#eeeeee", ec="k", gid="router"))
    ax.text(router_x, 1.7, label, ha="center", va="center", fontsize=fontsize)
    for segment in graph.segments:
        x0, x1 = bars[segment.name]
        line = Line2D([x0, x1], [0, 0], lw=5, color="#555555", solid_capstyle="butt", gid=f"segment-{segment.name}")
        ax.add_line(line)
        ax.add_line(Line2D([(x0 + x1) / 2, router_x], [0, 1.3], lw=1, color="#555555"))
        ax.text(x0, 0.15, f"{segment.name} {segment.cidr} (mtu {segment.mtu})", fontsize=fontsize, va="bottom")
    bottoms = {}
    for box in graph.nodes:
        x, top, height = boxes[box.name]
        bottoms[box.name] = (x + BOX_W / 2, top - height)
        ax.add_line(Line2D([x + BOX_W / 2, x + BOX_W / 2], [0, top], lw=0.8, color="#999999"))
        face = "#fff7e6" if box.external else ("#e8f0ff" if not box.role else "#ffe8e8")
        gid = f"{'external' if box.external else 'node'}-{box.name}"
        ax.add_patch(FancyBboxPatch((x, top - height), BOX_W, height, boxstyle="round,pad=0.03", fc=face, ec="k",
                                    lw=1.0, gid=gid))
        lines = _box_lines(box)
        ax.text(x + 0.1, top - 0.12, lines[0], fontsize=fontsize, weight="bold", va="top")
        ax.text(x + 0.1, top - 0.44, "\n".join(lines[1:]), fontsize=fontsize * 0.85, va="top", linespacing=1.25)
    count = len(graph.edges)
    many: dict[str, list] = {}
    for edge in graph.edges:
        (xa, ya), (xb, yb) = bottoms[edge.a], bottoms[edge.b]
        if xa > xb:
            (xa, ya), (xb, yb) = (xb, yb), (xa, ya)
        span = max(abs(xb - xa), 1.0)
        rad = min(0.6, 2.2 / span) if abs(ya - yb) < 1e-6 else 0.15   # bulge below the boxes
        style = _edge_style(edge, count)
        if count > MANY_EDGES:        # one collection per kind: thousands of patches would take seconds
            many.setdefault(edge.kind, []).append(_arc((xa, ya), (xb, yb), rad))
            continue
        ax.add_patch(FancyArrowPatch((xa, ya), (xb, yb), connectionstyle=f"arc3,rad={rad}", arrowstyle="-",
                                     color=style["color"], alpha=style["alpha"], lw=style["lw"], ls=style["ls"],
                                     gid=f"edge-{edge.a}-{edge.b}-{edge.kind}", zorder=0.5))
        if count <= 8 and edge.kind == "bgp":
            ax.text((xa + xb) / 2, min(ya, yb) - rad * span / 2 - 0.05, edge.state, fontsize=fontsize * 0.8,
                    ha="center", va="top", color=style["color"])
    for kind, arcs in many.items():
        style = _edge_style(next(e for e in graph.edges if e.kind == kind), count)
        ax.add_collection(LineCollection(arcs, colors=style["color"], alpha=style["alpha"], linewidths=style["lw"],
                                         linestyles=style["ls"], gid=f"edges-{kind}", zorder=0.5))
    kinds = sorted({e.kind for e in graph.edges})
    handles = [Line2D([], [], color=COLOURS[k], ls="--" if k == "refused" else "-", label=KIND_TEXT[k]) for k in kinds]
    bgp = [e for e in graph.edges if e.kind == "bgp"]
    if bgp:
        states: dict[str, int] = {}
        for e in bgp:
            states[e.state] = states.get(e.state, 0) + 1
        roles = sorted({e.role for e in bgp})
        handles.append(Line2D([], [], color="#7f7f7f", ls=":", label="BGP session not Established"))
        summary = f"BGP ({', '.join(roles)}): " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    else:
        summary = ""
    tunnels = sum(1 for e in graph.edges if e.kind in ("vxlan", "ipip"))
    title = f"lab {graph.name}: {graph.mode}, {sum(1 for b in graph.nodes if not b.external)} nodes"
    title += f", {tunnels} tunnels" if tunnels else ""
    title += f"; {summary}" if summary else ""
    title += " (live)" if graph.live else " (from the topology file)"
    ax.set_title(title, fontsize=10)
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=fontsize, framealpha=0.9)
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise LabError(f"-o {output}: directory {directory} does not exist", "create it or write the figure elsewhere")
    metadata = {"Title": title} if fmt == "png" else {"Title": title, "Date": None}
    fig.savefig(output, format=fmt, dpi=110 if fmt == "png" else None, metadata=metadata)
    plt.close(fig)
    return output

