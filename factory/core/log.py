"""Structured logging: JSON lines when not on a TTY (CI) or when asked, readable on a terminal; while a
terminal shows the live view (factory.core.console), the readable logs go to a file instead."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "console"]


def resolve_format(fmt: LogFormat, stream: TextIO | None = None) -> Literal["json", "console"]:
    if fmt != "auto":
        return fmt
    stream = stream or sys.stderr
    return "console" if stream.isatty() and not os.environ.get("CI") else "json"


def live_wanted(fmt: LogFormat, verbosity: int, stream: TextIO | None = None) -> bool:
    """The live view instead of log lines: only where a person reads the readable logs (a terminal, CI
    unset, not --log-format json) and has not asked for the logs themselves (-v)."""
    return verbosity == 0 and resolve_format(fmt, stream) == "console" and (stream or sys.stderr).isatty()


def configure(fmt: LogFormat = "auto", verbosity: int = 0, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    level = logging.DEBUG if verbosity > 0 else logging.INFO
    renderer = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if resolve_format(fmt, stream) == "json"
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    _configure(renderer, level, stream)


def _configure(renderer: structlog.typing.Processor, level: int, stream: TextIO,
               before: tuple[structlog.typing.Processor, ...] = ()) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            *before,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


@contextmanager
def to_file(path: Path, on_warning: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """For the block: every log line, debug ones too, readable (no colours) into ``path`` instead of
    stderr, and each warning's event also to ``on_warning`` (the live view shows it under its image).
    The previous configuration is back afterwards."""
    previous = structlog.get_config()

    def forward(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if event.get("level") == "warning":
            on_warning(dict(event))
        return event

    with path.open("a", encoding="utf-8") as stream:
        _configure(structlog.dev.ConsoleRenderer(colors=False), logging.DEBUG, stream, (forward,))
        try:
            yield
        finally:
            structlog.configure(**previous)


def get(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name) if name else structlog.get_logger()
    return logger
