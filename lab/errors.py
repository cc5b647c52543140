"""Errors the lab reports to its user: each says what is wrong and what to do next."""

from __future__ import annotations

from typing import overload


class LabError(Exception):
    """An error with a message for the user and an optional hint on what to do next."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class TopologyError(LabError):
    """A topology that cannot be built: names the file, line and field at fault."""

    def __init__(self, file: str, field: str, message: str, line: int | None = None,
                 hint: str | None = None) -> None:
        message, hint, field = _cut(message, MAX_MESSAGE), _cut(hint, MAX_MESSAGE), _cut(field, 120)
        where = f"{file}:{line}" if line else file
        text = f"{where}: {field}: {message}" if field else f"{where}: {message}"
        super().__init__(text, hint)
        self.file = file
        self.field = field
        self.line = line
        self.reason = message


MAX_MESSAGE = 400  # characters: an error quotes values, and a value may be huge


@overload
def _cut(text: str, limit: int) -> str: ...
@overload
def _cut(text: None, limit: int) -> None: ...
def _cut(text: str | None, limit: int) -> str | None:
    """`text` cut to `limit` characters, with '...' where it was cut (None stays None)."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit - 3] + "..."


class ApplyError(LabError):
    """The kernel refused part of a plan; the lab has been rolled back."""


class NotRootError(LabError):
    """The lab needs CAP_NET_ADMIN."""
