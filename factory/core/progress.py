"""A one-line live progress display on a terminal (rich); nothing when output is not a terminal,
where the structured logs already say everything."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console


@contextmanager
def live(title: str) -> Iterator[Callable[[str], None]]:
    """Yields ``update(line)``: shows ``title: line`` in place while the block runs."""
    if not sys.stderr.isatty():
        yield lambda line: None
        return
    console = Console(stderr=True)
    with console.status(title) as status:
        yield lambda line: status.update(f"{title}: {line[: max(20, console.width - len(title) - 8)]}")
