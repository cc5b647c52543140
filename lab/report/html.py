"""The self-contained HTML report: inline CSS, figures as data: URIs, no script, no external URL."""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path

from lab.report.document import Document, Table, status_sentence
from lab.report.orderings import INCONCLUSIVE, NOT_MEASURED, NOT_REPRODUCED, PARTLY, REPRODUCED, REPRODUCED_OVERLAP

CSS = """
:root { --ink:#1d2733; --muted:#5b6775; --line:#d9dee4; --bg:#ffffff; --soft:#f4f6f8; --accent:#1f5fa8;
        --ok:#1e7b34; --warn:#9a6200; --bad:#b3261e; }
* { box-sizing: border-box; }
body { margin:0; background:var(--soft); color:var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 48px; background: var(--bg); min-height: 100vh; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 6px; }
.sub { color: var(--muted); margin: 0 0 14px; }
.badge { display:inline-block; padding: 1px 9px; border-radius: 10px; font-size: 13px; font-weight: 600;
         color:#fff; background: var(--ok); vertical-align: middle; }
.badge.incomplete, .badge.unknown { background: var(--bad); }
.banner { border-left: 5px solid var(--bad); background:#fdecea; padding: 10px 14px; margin: 12px 0; }
nav { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; margin: 14px 0; }
nav a { margin-right: 16px; color: var(--accent); text-decoration: none; font-weight: 600; }
figure { margin: 18px 0 28px; }
figure img { display:block; max-width: 100%; height: auto; margin: 0 auto; border: 1px solid var(--line);
             border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 6px; }
figcaption b { color: var(--ink); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 4px; font-size: 13.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.hl td { background: #eef4fb; font-weight: 600; }
.tablewrap { overflow-x: auto; max-height: 560px; overflow-y: auto; border: 1px solid var(--line); border-radius: 4px; }
.tablewrap.full { max-height: none; }
.note { color: var(--muted); font-size: 13px; margin: 4px 0 12px; }
.status { font-weight: 700; white-space: nowrap; }
.status.ok { color: var(--ok); } .status.warn { color: var(--warn); } .status.bad { color: var(--bad); }
.status.na { color: var(--muted); }
ul.caveats li, ul.warnings li { margin: 4px 0; }
ul.warnings li { color: var(--warn); }
details summary { cursor: pointer; color: var(--accent); font-weight: 600; margin: 4px 0; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; border-top: 1px solid var(--line);
         padding-top: 8px; }
"""

STATUS_CLASS = {REPRODUCED: "ok", REPRODUCED_OVERLAP: "warn", INCONCLUSIVE: "warn", PARTLY: "warn",
                NOT_REPRODUCED: "bad", NOT_MEASURED: "na"}
SHOWN_WARNINGS = 6
NUMERIC = re.compile(r"^-?[\d,]+(\.\d+)?( |$)")


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _table(table: Table, heading: str = "h3") -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = []
    for r_i, row in enumerate(table.rows):
        cells = "".join(f'<td class="num">{escape(c)}</td>' if table.numeric and i > 0 and NUMERIC.match(c)
                        else f"<td>{escape(c)}</td>" for i, c in enumerate(row))
        body.append(f'<tr class="hl">{cells}</tr>' if r_i in table.highlight else f"<tr>{cells}</tr>")
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    return (f"<{heading}>{escape(table.title)}</{heading}>"
            f'<div class="tablewrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
            f"{note}")


def render(doc: Document) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(doc.title)}</title>",
        '<link rel="icon" href="data:,">',
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>{escape(doc.title)}</h1>",
        f'<p class="sub">{" · ".join(escape(s) for s in doc.subtitle)} · '
        f'<span class="badge {escape(doc.status)}">{escape(doc.status)}</span></p>',
    ]
    if doc.status != "complete":
        parts.append(f'<div class="banner"><b>{escape(status_sentence(doc.status))}.</b> '
                     f'{escape(doc.status_reason or "It did not record that it finished.")} '
                     f"Figures and tables show only what was measured.</div>")
    sections = [("orderings", "Published orderings"), ("caveats", "Caveats and warnings"), ("figures", "Figures"),
                ("summary", "Summary tables")]
    if doc.compare_tables:
        sections.append(("compare", "Run against run"))
    sections.append(("environment", "Environment"))
    parts.append("<nav>" + "".join(f'<a href="#{i}">{escape(t)}</a>' for i, t in sections) + "</nav>")
    if doc.notes:
        parts.append("<h2 id=\"notes\">Notes</h2>" + "".join(f"<p>{escape(n)}</p>" for n in doc.notes))
    if doc.mode_captions:
        parts.append('<h3 id="modes">How each mode moves packets and programs routes</h3><ul>'
                     + "".join(f"<li>{escape(c)}</li>" for c in doc.mode_captions) + "</ul>")

    parts.append('<h2 id="orderings">Published orderings</h2>'
                 '<p class="note">What the reference (anchors.md) reports on real clusters, and whether this run '
                 'reproduced it.</p><div class="tablewrap full"><table><thead><tr><th>Published ordering</th>'
                 '<th>This run</th><th>What was measured</th><th>Source</th></tr></thead><tbody>')
    for v in doc.verdicts:
        parts.append(f'<tr><td>{escape(v.claim)}</td><td class="status {STATUS_CLASS.get(v.status, "na")}">'
                     f"{escape(v.status)}</td><td>{escape(v.detail)}</td><td>{escape(v.source)}</td></tr>")
    parts.append("</tbody></table></div>")

    parts.append('<h2 id="caveats">Caveats and warnings</h2><ul class="caveats">'
                 + "".join(f"<li>{escape(c)}</li>" for c in doc.caveats) + "</ul>")
    if doc.warnings or doc.other_warnings:
        shown, rest = doc.warnings[:SHOWN_WARNINGS], doc.warnings[SHOWN_WARNINGS:] + doc.other_warnings
        parts.append(f"<h3>Statistical warnings on the headline metrics ({len(doc.warnings)})</h3>"
                     '<p class="note">Latency p50, throughput, connection rate and CPU per Gbit: where the data do '
                     "not support the order a figure shows.</p><ul class=\"warnings\">"
                     + "".join(f"<li>{escape(w)}</li>" for w in shown) + "</ul>")
        if rest:
            parts.append(f"<details><summary>{len(rest)} more (other metrics and companions)</summary>"
                         "<ul class=\"warnings\">" + "".join(f"<li>{escape(w)}</li>" for w in rest)
                         + "</ul></details>")

    parts.append('<h2 id="figures">Figures</h2>')
    if not doc.figures:
        parts.append('<p class="note">No figure: the run holds no samples.</p>')
    for fig in doc.figures:
        parts.append(f'<figure id="fig-{escape(fig.name)}"><img src="{data_uri(fig.png)}" '
                     f'alt="{escape(fig.title)}"><figcaption><b>{escape(fig.title)}.</b> {escape(fig.caption)} '
                     f"(Vector version: figures/{escape(fig.svg.name)}.)</figcaption></figure>")

    parts.append('<h2 id="summary">Summary tables</h2><p class="note">Mean with its 95% confidence interval '
                 "(Student t over repetition means), median and the 5th–95th percentile range (linear "
                 "interpolation) of all samples, and the ratio to the baseline mode with a Fieller 95% interval."
                 "</p>")
    parts += [_table(t) for t in doc.summary_tables]
    if doc.compare_tables:
        parts.append('<h2 id="compare">Run against run</h2>')
        parts += [_table(t) for t in doc.compare_tables]
    parts.append('<h2 id="environment">Environment</h2>')
    parts += [_table(t) for t in doc.environment_tables]
    parts.append(f"<footer>Generated {escape(doc.generated)}. Self-contained: figures are embedded; PNG and SVG "
                 f"copies are in figures/ next to this file, with report.md.</footer>")
    parts.append("</main></body></html>")
    return "\n".join(parts)
