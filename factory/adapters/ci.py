"""GitHub Actions output: a collapsible group per image, an annotation per failure and a summary
table in the job summary. Does nothing outside GitHub Actions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def on_github() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _escape(text: str) -> str:
    # Workflow-command data must not carry raw newlines or the command would end early.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


@contextmanager
def group(title: str) -> Iterator[None]:
    if not on_github():
        yield
        return
    print(f"::group::{_escape(title)}", flush=True)
    try:
        yield
    finally:
        print("::endgroup::", flush=True)


def error(message: str, *, title: str = "") -> None:
    if on_github():
        prefix = f"::error title={_escape(title)}::" if title else "::error::"
        print(prefix + _escape(message), flush=True)


def annotation(level: str, message: str, *, file: str, line: int | None = None, title: str = "") -> str:
    """A ``::error`` or ``::warning`` workflow command that marks ``file`` (at ``line``) in the PR view."""
    where = f"file={_escape(file)}" + (f",line={line}" if line else "")
    # A comma would end the title property early; the message after `::` may hold one.
    return f"::{level} {where},title={_escape(title).replace(',', '%2C')}::{_escape(message)}"


def summary(markdown: str) -> None:
    """Append to the job summary page (GITHUB_STEP_SUMMARY)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if on_github() and path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown.rstrip() + "\n")
