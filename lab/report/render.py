"""`lab report`: load one run (and optionally a second to compare), draw the figures, write HTML and Markdown."""

from __future__ import annotations

import os
from pathlib import Path

from lab.errors import LabError
from lab.report import document, figures, html, markdown
from lab.report.runs import load_run


def render(results_dir: str | os.PathLike[str], compare: str | os.PathLike[str] | None = None,
           output: str | os.PathLike[str] | None = None) -> Path:
    """Write report.html (self-contained), report.md and figures/*.png|svg; return the HTML's path.

    By default the report goes into the results directory; with `compare`, into
    <results dir>/compare-<other run>/ so the single-run report is kept.
    """
    runs = [load_run(results_dir, tag="A" if compare else "")]
    if compare is not None:
        runs.append(load_run(compare, tag="B"))
        if runs[0].results.path.resolve() == runs[1].results.path.resolve():
            raise LabError(f"--compare {compare}: that is the run being reported ({runs[0].results.path}); "
                           "comparing a run with itself shows nothing",
                           "give --compare another results directory (an earlier run, or one from another machine)")
    if output is None:
        base = runs[0].results.path
        out_html = (base / f"compare-{runs[1].results.path.name}" / "report.html") if compare else base / "report.html"
    else:
        out_html = Path(output)
        if out_html.suffix.lower() not in (".html", ".htm"):
            raise LabError(f"{out_html}: the report is an HTML file", "name it with .html, e.g. -o report.html")
    out_dir = out_html.parent
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"{out_dir}: cannot create the report's directory: {exc.strerror}",
                       "choose a writable place with -o") from None
    saved = figures.save_all(runs, out_dir / "figures")
    doc = document.build(runs, saved)
    out_html.write_text(html.render(doc), encoding="utf-8")
    out_html.with_suffix(".md").write_text(markdown.render(doc, out_dir), encoding="utf-8")
    return out_html
