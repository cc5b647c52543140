"""Progress shown to a person while the lab waits or works: one library (rich), on standard error.

On a terminal this draws a spinner or a bar that updates in place; elsewhere (pipes, CI logs) rich
draws nothing live, and only the lines the caller prints remain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console


def console() -> Console:
    return Console(stderr=True, highlight=False)


@contextmanager
def spinner(text: str) -> Iterator[Callable[[str], None]]:
    """A spinner showing `text`; the block receives a function that replaces the text."""
    with console().status(text) as status:
        yield lambda new: status.update(new)
