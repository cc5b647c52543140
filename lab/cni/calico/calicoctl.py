"""`calicoctl node status` (v3.28), rendered from BIRD's `show protocols` rows.

calicoctl reads each row back as whitespace-separated fields, keeps the BGP protocols named
`Global_*`, `Node_*` or `Mesh_*` (Calico's names for its peers), and prints them with
olekukonko/tablewriter's defaults, which `_table` reproduces: upper-case centred headings,
cells padded by one space, numbers right-aligned, and cells wider than 30 columns wrapped
into lines of minimal raggedness.
"""

from __future__ import annotations

import re
import unicodedata

from lab.bgp.birdc import ProtocolRow

_PEER_NAME = re.compile(r"^(Global|Node|Mesh)_(.+)$")
_PORT_SUFFIX = re.compile(r"_port_\d+$")
_PEER_TYPES = {"Global": "global", "Mesh": "node-to-node mesh", "Node": "node specific"}
_HEADINGS = ("Peer address", "Peer type", "State", "Since", "Info")
_MAX_WIDTH = 30                                     # tablewriter's MaxColWidth
_PENALTY = 100_000                                  # tablewriter's penalty for a too-long line
_DECIMAL = re.compile(r"^-?(?:\d{1,3}(?:,\d{3})*|\d+)(?:\.\d+)?$")


def _peer(row: ProtocolRow) -> list[str] | None:
    """The table cells for one row, or None if calicoctl skips it."""
    columns = f"{row.name} {row.proto} {row.table} {row.state} {row.since} {row.info}".split()
    if len(columns) < 6 or columns[1] != "BGP":
        return None
    match = _PEER_NAME.match(columns[0])
    if not match:
        return None
    kind, suffix = match.groups()
    address = _PORT_SUFFIX.sub("", suffix).replace("_", ".")
    return [address, _PEER_TYPES[kind], columns[3], columns[4], " ".join(columns[5:])]


def _width(text: str) -> int:
    """Terminal columns taken by `text` (wide East Asian characters count two)."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def _wrap(text: str, limit: int) -> list[str]:
    """Split `text` into lines of at most `limit` columns, minimising the squared slack."""
    words = text.replace("\n", " ").split(" ")
    limit = max([limit, *(_width(w) for w in words)])
    count = len(words)
    length = [[0] * count for _ in range(count)]    # length[i][j]: words i..j joined by spaces
    for i in range(count):
        length[i][i] = _width(words[i])
        for j in range(i + 1, count):
            length[i][j] = length[i][j - 1] + 1 + _width(words[j])
    cost = [2**31 - 1] * count
    breaks = [0] * count
    for i in range(count - 1, -1, -1):
        if length[i][count - 1] <= limit:
            cost[i], breaks[i] = 0, count
            continue
        for j in range(i + 1, count):
            slack = limit - length[i][j - 1]
            total = slack * slack + cost[j] + (_PENALTY if length[i][j - 1] > limit else 0)
            if total < cost[i]:
                cost[i], breaks[i] = total, j
    lines, i = [], 0
    while i < count:
        lines.append(" ".join(words[i:breaks[i]]))
        i = breaks[i]
    return lines


def _cell_lines(text: str) -> tuple[list[str], int]:
    """A cell's lines after wrapping, and the width it asks of its column."""
    raw = text.split("\n")
    width = min(max(_width(line) for line in raw), _MAX_WIDTH)
    lines: list[str] = []
    for index, paragraph in enumerate(raw):
        if index:
            lines.append(" ")
        lines.extend(_wrap(paragraph, width))
    return lines, max([width, *(_width(line) for line in lines)])


def _pad_right(text: str, width: int) -> str:
    """Left-align `text` in `width` columns."""
    return text + " " * (width - _width(text))


def _pad_left(text: str, width: int) -> str:
    """Right-align `text` in `width` columns."""
    return " " * (width - _width(text)) + text


def _centre(text: str, width: int) -> str:
    """Centre `text` in `width` columns; the odd space goes to the right."""
    gap = width - _width(text)
    return " " * (gap // 2) + text + " " * (gap - gap // 2) if gap > 0 else text


def _table(headings: tuple[str, ...], rows: list[list[str]]) -> str:
    """Render a table the way tablewriter's defaults do."""
    header = [_cell_lines(h) for h in headings]
    body = [[_cell_lines(cell) for cell in row] for row in rows]
    widths = [max(cell[1] for cell in column) for column in zip(header, *body, strict=False)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"
    out = [rule]
    for line in range(max(len(lines) for lines, _ in header)):
        texts = [lines[line].upper() if line < len(lines) else "" for lines, _ in header]
        out.append("|" + "".join(f" {_centre(t, w)} |" for t, w in zip(texts, widths, strict=False)) + "\n")
    out.append(rule)
    for row in body:
        height = max(len(lines) for lines, _ in row)
        for line in range(height):
            cells = []
            for (lines, _), width in zip(row, widths, strict=False):
                text = lines[line] if line < len(lines) else "  "
                align = _pad_left if _DECIMAL.match(text.strip()) else _pad_right
                cells.append(f" {align(text, width)} |")
            out.append("|" + "".join(cells) + "\n")
    out.append(rule)
    return "".join(out)


def node_status(rows: list[ProtocolRow] | None) -> str:
    """What `calicoctl node status` prints, given BIRD's `show protocols` (None: BIRD not running)."""
    out = "Calico process is running.\n"
    if rows is None:
        return out + "\nThe BGP backend process (BIRD) is not running.\n\n"
    peers = [cells for row in rows if (cells := _peer(row)) is not None]
    out += "\nIPv4 BGP status\n"
    out += _table(_HEADINGS, peers) if peers else "No IPv4 peers found.\n"
    out += "\nIPv6 BGP status\nNo IPv6 peers found.\n"
    return out + "\n"
