"""What a long command is doing now, for whoever shows it: the events the pipelines emit and where they go.

The events: the run's images, each image's steps and their durations, the platform being built, a
nightly's phases.

The CLI puts a view in place (``showing``) only on a terminal: factory.core.console's live view. Otherwise
every event goes to ``Quiet`` and the structured logs alone say what happened, as they always did: no event
here writes a log line, so CI's JSON lines are the same with or without a view. ``live`` is the build step's
one-line spinner when no view is in place, as before."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from rich.console import Console


@dataclass(frozen=True)
class Outcome:
    """How one unit of work (an image) ended: its status (published, up-to-date, pushed, failed, skipped),
    and for a failure the step, the platform and the error."""

    status: str
    version: str = ""
    step: str = ""
    platform: str = ""
    error: str = ""


class Progress(Protocol):
    def units(self, names: Sequence[str]) -> None:
        """The run's units (images), in the order they will be done."""

    def unit_started(self, name: str) -> None: ...

    def unit_done(self, name: str, outcome: Outcome) -> None: ...

    def step_started(self, unit: str, step: str) -> None: ...

    def step_done(self, unit: str, step: str, seconds: float, *, ok: bool) -> None: ...

    def activity(self, line: str, platform: str | None) -> None:
        """A line of the running step's output (buildx), and the platform it is about when it says."""

    def phase_started(self, name: str) -> None: ...

    def phase_done(self, name: str, seconds: float, *, ok: bool) -> None: ...


class Quiet:
    """No view: every event goes nowhere."""

    def units(self, names: Sequence[str]) -> None:
        pass

    def unit_started(self, name: str) -> None:
        pass

    def unit_done(self, name: str, outcome: Outcome) -> None:
        pass

    def step_started(self, unit: str, step: str) -> None:
        pass

    def step_done(self, unit: str, step: str, seconds: float, *, ok: bool) -> None:
        pass

    def activity(self, line: str, platform: str | None) -> None:
        pass

    def phase_started(self, name: str) -> None:
        pass

    def phase_done(self, name: str, seconds: float, *, ok: bool) -> None:
        pass


_QUIET = Quiet()
# The view of this invocation, set by the CLI for the duration of one command (a ContextVar, not a
# module global: a test or a thread that sets none sees Quiet).
_current: ContextVar[Progress] = ContextVar("factory_progress", default=_QUIET)


def current() -> Progress:
    return _current.get()


@contextmanager
def showing(view: Progress) -> Iterator[Progress]:
    """Send the events of the block to ``view``."""
    token = _current.set(view)
    try:
        yield view
    finally:
        _current.reset(token)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """One phase of a command (the nightly's drift, commits, plan, publish), timed for the view."""
    view = current()
    view.phase_started(name)
    start = time.monotonic()
    ok = False
    try:
        yield
        ok = True
    finally:
        view.phase_done(name, time.monotonic() - start, ok=ok)


@contextmanager
def live(title: str, *, platforms: Sequence[str] = (),
         platform_of: Callable[[str], str | None] = lambda line: None) -> Iterator[Callable[[str], None]]:
    """Yields ``update(line)`` for the output of a long step. With a view in place each line goes to it,
    with its platform (``platform_of(line)``, else the only one of ``platforms``); else on a terminal
    ``title: line`` is shown in place while the block runs, and off a terminal nothing."""
    view = current()
    if view is not _QUIET:
        only = platforms[0] if len(platforms) == 1 else None
        yield lambda line: view.activity(line, platform_of(line) or only)
        return
    if not sys.stderr.isatty():
        yield lambda line: None
        return
    console = Console(stderr=True)
    with console.status(title) as status:
        yield lambda line: status.update(f"{title}: {line[: max(20, console.width - len(title) - 8)]}")
