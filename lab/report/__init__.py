"""Plotted reports of experiment results: `lab.report.render(results_dir, compare=None, output=None)`."""

from lab.report.render import render

__all__ = ["render"]
