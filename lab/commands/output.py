"""What several commands print the same way: tables, and warnings as kubectl prints them."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def table(headers: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())


def warn(warnings: Iterable[str]) -> None:
    """Warnings as kubectl prints the API server's: on stderr, each after `Warning: `."""
    for warning in warnings:
        print(f"Warning: {warning}", file=sys.stderr)
