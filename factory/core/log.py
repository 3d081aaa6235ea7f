"""Structured logging: JSON lines when not on a TTY (CI) or when asked, readable on a terminal."""

from __future__ import annotations

import logging
import os
import sys
from typing import Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "console"]


def resolve_format(fmt: LogFormat, stream: TextIO | None = None) -> Literal["json", "console"]:
    if fmt != "auto":
        return fmt
    stream = stream or sys.stderr
    return "console" if stream.isatty() and not os.environ.get("CI") else "json"


def configure(fmt: LogFormat = "auto", verbosity: int = 0, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    level = logging.DEBUG if verbosity > 0 else logging.INFO
    renderer = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if resolve_format(fmt, stream) == "json"
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name) if name else structlog.get_logger()
    return logger
