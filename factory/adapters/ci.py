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


def summary(markdown: str) -> None:
    """Append to the job summary page (GITHUB_STEP_SUMMARY)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if on_github() and path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown.rstrip() + "\n")
