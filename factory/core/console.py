"""The live view on a terminal: a row per image with its steps, the run's progress and estimate, and the
summary table after.

A row shows the image's current step, a tick and a duration per finished step, the platform being built,
each warning once, and for a failure the step, platform and error with where the full log is; the header
`k/N images, elapsed, about M min left`. Only the CLI starts it, and only where log.live_wanted says so (a
terminal, CI unset, no -v, not json): meanwhile the full readable log goes to a file under the state folder.
Digests are shortened and tag lists folded for display only; the report and the log keep them whole."""

from __future__ import annotations

import io
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from factory.core import log, progress

WIDTH = 100  # the summary and plan tables keep to this many columns
DIGEST_HEX = 12  # "sha256:4ea43e03dea9"
KEEP_LOGS = 20  # run logs kept in the state folder's runs/ (the oldest are removed)
LAST_REPORT = "last-report.json"  # the previous run's report in runs/: where the time estimate comes from
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
# Log keys that say nothing in a one-line warning under an image (the image is the row it is under).
_QUIET_KEYS = frozenset({"event", "level", "timestamp", "image", "logger", "exc_info", "stack_info"})


def short_digest(text: str) -> str:
    """``sha256:`` and the first 12 hex digits of every digest in ``text``."""
    return _DIGEST.sub(lambda m: f"sha256:{m[1][:DIGEST_HEX]}", text)


def fold_tags(tags: Sequence[str]) -> str:
    """"static-noshell-v1.0.0 (+7 tags)": the first tag (the immutable one), and how many more."""
    if not tags:
        return "no tag"
    return tags[0] + (f" (+{len(tags) - 1} tags)" if len(tags) > 1 else "")


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def time_left(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return "under a minute left" if seconds < 60 else f"about {math.ceil(seconds / 60)} min left"


def compact(event: Mapping[str, Any]) -> str:
    """A log event as one short line: its ``warning`` (gates) or else its message, then its other fields;
    digests shortened, whitespace runs made one space."""
    text = str(event.get("warning") or event.get("event", ""))
    fields = [f"{k}={v}" for k, v in event.items() if k not in _QUIET_KEYS and k != "warning"]
    return " ".join(short_digest(" ".join([text, *fields])).split())


@dataclass
class _Row:
    name: str
    state: str = "waiting"  # waiting | running | done
    steps: list[tuple[str, float, bool]] = field(default_factory=list)  # finished: name, seconds, ok
    step: str = ""
    step_started: float = 0.0
    platform: str = ""
    line: str = ""
    started: float = 0.0
    seconds: float = 0.0
    outcome: progress.Outcome | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Phase:
    name: str
    started: float
    seconds: float | None = None
    ok: bool = True


class LiveView:
    """The progress.Progress of a terminal. Events come from the command's thread, rendering from rich's
    refresh thread: one lock around both."""

    def __init__(self, title: str, log_path: Path, previous: Mapping[str, float], console: Console, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.title = title
        self.log_path = log_path
        self.previous = dict(previous)  # image -> seconds it took last time
        self.console = console
        self.clock = clock
        self.started = clock()
        self.rows: dict[str, _Row] = {}
        self.phases: list[_Phase] = []
        self.general: list[str] = []  # warnings of no image
        self.final = False
        self._lock = threading.RLock()

    # --- progress.Progress -----------------------------------------------------------------------

    def units(self, names: Sequence[str]) -> None:
        with self._lock:
            for name in names:
                self.rows.setdefault(name, _Row(name))

    def unit_started(self, name: str) -> None:
        with self._lock:
            row = self.rows.setdefault(name, _Row(name))
            row.state, row.started = "running", self.clock()

    def unit_done(self, name: str, outcome: progress.Outcome) -> None:
        with self._lock:
            row = self.rows.setdefault(name, _Row(name))
            row.state, row.outcome, row.step, row.line = "done", outcome, "", ""
            row.seconds = self.clock() - row.started if row.started else 0.0

    def step_started(self, unit: str, step: str) -> None:
        with self._lock:
            row = self.rows.setdefault(unit, _Row(unit, state="running", started=self.clock()))
            row.step, row.step_started, row.line = step, self.clock(), ""

    def step_done(self, unit: str, step: str, seconds: float, *, ok: bool) -> None:
        with self._lock:
            row = self.rows.setdefault(unit, _Row(unit))
            row.steps.append((step, seconds, ok))
            row.step = ""

    def activity(self, line: str, platform: str | None) -> None:
        with self._lock:
            row = self._running()
            if row is not None:
                row.line = line.strip()
                row.platform = platform or row.platform

    def phase_started(self, name: str) -> None:
        with self._lock:
            self.phases.append(_Phase(name, self.clock()))

    def phase_done(self, name: str, seconds: float, *, ok: bool) -> None:
        with self._lock:
            for p in self.phases:
                if p.name == name and p.seconds is None:
                    p.seconds, p.ok = seconds, ok

    def warning_event(self, event: Mapping[str, Any]) -> None:
        """A warning logged while the view runs: once, under its image (the running one when it names none)."""
        message = compact(event)
        with self._lock:
            row = self.rows.get(str(event.get("image") or "")) or self._running()
            shown = row.warnings if row is not None else self.general
            if message not in shown:
                shown.append(message)

    def _running(self) -> _Row | None:
        return next((r for r in self.rows.values() if r.state == "running"), None)

    # --- the estimate ----------------------------------------------------------------------------

    def seconds_left(self) -> float | None:
        """What the images not done yet took last time (the mean of the known ones for an image not seen
        before), less what the running one has already spent; None when nothing is known."""
        with self._lock:
            known = list(self.previous.values()) + [r.seconds for r in self.rows.values() if r.state == "done"]
            if not known:
                return None
            mean = sum(known) / len(known)
            left = 0.0
            for r in self.rows.values():
                if r.state == "done":
                    continue
                expected = self.previous.get(r.name, mean)
                spent = self.clock() - r.started if r.state == "running" else 0.0
                left += max(expected - spent, 0.0)
            return left

    # --- rendering -------------------------------------------------------------------------------

    def render(self) -> Group:
        with self._lock:
            width = max(40, self.console.width)
            lines = [self._header(), *self._phase_line()]
            rows = [self._row_lines(r, width, ticks=True) for r in self.rows.values()]
            if not self.final and sum(map(len, rows)) + len(lines) + 2 > self.console.height:
                rows = [self._row_lines(r, width, ticks=False) for r in self.rows.values()]
            lines += [line for row in rows for line in row]
            lines += [Text(f"! {w}", style="yellow", no_wrap=True, overflow="ellipsis") for w in self.general]
            if not any(r.outcome and r.outcome.status == "failed" for r in self.rows.values()):
                lines.append(Text(f"full log: {self.log_path}", style="dim", no_wrap=True, overflow="ellipsis"))
            return Group(*lines)

    def _header(self) -> Text:
        elapsed = duration(self.clock() - self.started)
        header = Text(self.title, style="bold")
        if self.rows:
            done = sum(r.state == "done" for r in self.rows.values())
            left = "" if self.final or done == len(self.rows) else time_left(self.seconds_left())
            header.append(f"  {done}/{len(self.rows)} images  {elapsed} elapsed" + (f"  {left}" if left else ""))
        else:
            header.append(f"  {elapsed} elapsed")
        return header

    def _phase_line(self) -> list[Text]:
        if not self.phases:
            return []
        line = Text()
        for p in self.phases:
            icon, style = self._icon(p.seconds is None, p.ok)
            spent = p.seconds if p.seconds is not None else self.clock() - p.started
            line.append(f"{icon} ", style=style).append(f"{p.name} {duration(spent)}  ")
        return [line]

    def _icon(self, running: bool, ok: bool) -> tuple[str, str]:
        if running:
            return SPINNER[int(self.clock() * 10) % len(SPINNER)], "cyan"
        return ("✓", "green") if ok else ("✗", "red")

    def _row_lines(self, r: _Row, width: int, *, ticks: bool) -> list[Text]:
        name = f"{r.name:{max(len(n) for n in self.rows)}}"
        out = self._outcome_line(r, name) if r.state == "done" else self._progress_line(r, name)
        lines = [out]
        indent = "    "
        if r.outcome and r.outcome.error:
            style = "red" if r.outcome.status == "failed" else "dim"
            lines.append(Text(f"{indent}{short_digest(r.outcome.error)}", style=style, no_wrap=True,
                              overflow="ellipsis"))
            if r.outcome.status == "failed":
                lines.append(Text(f"{indent}full log: {self.log_path}", style="dim", no_wrap=True,
                                  overflow="ellipsis"))
        if ticks or r.state == "running":
            lines += [Text(line, style="dim") for line in tick_lines(r.steps, width, indent)]
        if r.state == "running" and r.line and ticks:
            lines.append(Text(indent + short_digest(r.line), style="dim italic", no_wrap=True, overflow="ellipsis"))
        lines += [Text(f"{indent}! {w}", style="yellow", no_wrap=True, overflow="ellipsis") for w in r.warnings]
        return lines

    def _progress_line(self, r: _Row, name: str) -> Text:
        if r.state == "waiting":
            return Text(f"· {name}  waiting", style="dim")
        icon, style = self._icon(True, True)
        doing = r.step or "…"
        where = f" {r.platform}" if r.platform and "build" in r.step else ""
        spent = duration(self.clock() - r.step_started) if r.step else ""
        return Text(f"{icon} ", style=style).append(name, style="bold").append(f"  {doing}{where} {spent}")

    def _outcome_line(self, r: _Row, name: str) -> Text:
        o = r.outcome or progress.Outcome("done")
        icon, style = {"failed": ("✗", "red"), "skipped": ("-", "yellow")}.get(o.status, ("✓", "green"))
        what = o.status
        if o.status == "failed":
            what = f"failed at {o.step}" + (f" [{o.platform}]" if o.platform else "")
        elif o.version:
            what += f" {o.version}"
        return Text(f"{icon} ", style=style).append(name, style="bold").append(f"  {what}  {duration(r.seconds)}")

    @contextmanager
    def running(self) -> Iterator[LiveView]:
        # Anything else written to stdout or stderr meanwhile is shown above the view, not through it.
        live = Live(get_renderable=self.render, console=self.console, refresh_per_second=4,
                    vertical_overflow="visible")
        with live:
            try:
                yield self
            finally:
                with self._lock:
                    self.final = True
                live.refresh()


def tick_lines(steps: Sequence[tuple[str, float, bool]], width: int, indent: str) -> list[str]:
    """"✓ build 4.1s  ✓ test 0.6s ..." over as few lines of ``width`` as the ticks need (none is split)."""
    lines: list[str] = []
    current = ""
    for name, seconds, ok in steps:
        tick = f"{'✓' if ok else '✗'} {name} {duration(seconds)}"
        if current and len(indent) + len(current) + 2 + len(tick) > width:
            lines.append(indent + current)
            current = tick
        else:
            current = f"{current}  {tick}" if current else tick
    if current:
        lines.append(indent + current)
    return lines


@dataclass(frozen=True)
class SummaryRow:
    image: str
    result: str
    version: str
    seconds: float
    detail: tuple[str, ...]  # what was built, or why nothing was: parts a line may break between


def summary_table(rows: Sequence[SummaryRow], width: int = WIDTH) -> str:
    """The end of a run as a table of at most ``width`` columns: the detail column breaks between its parts."""
    headers = ("image", "result", "version", "time", "built, or why not")
    cells = [(r.image, r.result, r.version or "-", duration(r.seconds)) for r in rows]
    fixed = sum(max(len(c[i]) for c in [headers[:4], *cells]) for i in range(4)) + 2 * 4
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for name in headers:
        table.add_column(name, no_wrap=name != headers[-1], justify="right" if name == "time" else "left",
                         overflow="fold")
    for r, c in zip(rows, cells, strict=True):
        room = max(20, width - fixed)
        detail = "\n".join(join_parts([ellipsis(short_digest(p), 2 * room) for p in r.detail], room))
        table.add_row(*map(Text, (*c, detail)))  # Text: a "[linux/arm64]" in an error is no rich markup
    return to_text(table, width)


def ellipsis(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, "…" at the end when cut (the report and the log keep it whole)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def join_parts(parts: Sequence[str], width: int) -> list[str]:
    """``parts`` joined by spaces into lines of at most ``width`` (a longer part has a line of its own)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += " " + part
        else:
            lines.append(part)
    return lines


def to_text(renderable: Any, width: int = WIDTH) -> str:
    """A rich renderable as plain text of at most ``width`` columns (no colour, trailing spaces cut)."""
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, force_terminal=False, legacy_windows=False).print(renderable)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


def runs_dir(state_dir: Path) -> Path:
    """Where the live view's run logs and the last report (the next estimate's source) are kept."""
    return state_dir / "runs"


def new_log(state_dir: Path, command: str, *, keep: int = KEEP_LOGS) -> Path:
    """A new log file for this run under ``runs_dir``; the oldest beyond ``keep`` are removed."""
    runs = runs_dir(state_dir)
    runs.mkdir(parents=True, exist_ok=True)
    logs = sorted(runs.glob("*.log"))  # named by their UTC start: oldest first
    for old in logs[: max(0, len(logs) - (keep - 1))]:
        old.unlink(missing_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return runs / f"{stamp}-{command}.log"


@contextmanager
def live_view(title: str, log_path: Path, previous: Mapping[str, float]) -> Iterator[LiveView]:
    """The block's events on the terminal (stderr), its log lines into ``log_path``."""
    view = LiveView(title, log_path, previous, Console(stderr=True))
    with log.to_file(log_path, view.warning_event), progress.showing(view), view.running():
        yield view
