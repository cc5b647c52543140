"""report.md: the same Document as the HTML report, with the figures as relative PNG links."""

from __future__ import annotations

from pathlib import Path

from lab.report.document import Document, Table, status_sentence


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(table: Table) -> list[str]:
    lines = [f"### {table.title}", "", "| " + " | ".join(_cell(c) for c in table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    for i, row in enumerate(table.rows):
        cells = [_cell(c) for c in row]
        if i in table.highlight and cells:
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    if table.note:
        lines += ["", table.note]
    return lines + [""]


def render(doc: Document, output_dir: Path) -> str:
    lines = [f"# {doc.title}", "", " · ".join(doc.subtitle) + f" · **{doc.status}**", ""]
    if doc.status != "complete":
        lines += [f"> **{status_sentence(doc.status)}.** {doc.status_reason or 'It did not record that it finished.'} "
                  "Figures and tables show only what was measured.", ""]
    for note in doc.notes:
        lines += [note, ""]
    if doc.mode_captions:
        lines += ["How each mode moves packets and programs routes:", ""] + [f"- {c}" for c in doc.mode_captions] + [""]
    lines += ["## Published orderings", "", "| Published ordering | This run | What was measured | Source |",
              "|---|---|---|---|"]
    lines += [f"| {_cell(v.claim)} | **{v.status}** | {_cell(v.detail)} | {_cell(v.source)} |" for v in doc.verdicts]
    lines += ["", "## Caveats and warnings", ""] + [f"- {c}" for c in doc.caveats] + [""]
    if doc.warnings:
        lines += [f"Statistical warnings on the headline metrics ({len(doc.warnings)}):", ""]
        lines += [f"- {w}" for w in doc.warnings] + [""]
    if doc.other_warnings:
        lines += [f"{len(doc.other_warnings)} more warnings on other metrics and companions are in summary.json.", ""]
    lines += ["## Figures", ""]
    for fig in doc.figures:
        rel = fig.png.relative_to(output_dir).as_posix() if fig.png.is_relative_to(output_dir) else str(fig.png)
        lines += [f"![{fig.title}]({rel})", "", f"*{fig.title}.* {fig.caption}", ""]
    lines += ["## Summary tables", ""]
    for table in doc.summary_tables:
        lines += _table(table)
    if doc.compare_tables:
        lines += ["## Run against run", ""]
        for table in doc.compare_tables:
            lines += _table(table)
    lines += ["## Environment", ""]
    for table in doc.environment_tables:
        lines += _table(table)
    lines += [f"Generated {doc.generated}.", ""]
    return "\n".join(lines)
