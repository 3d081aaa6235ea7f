"""One exception tree. Expected failures carry an exit code and a message; only the CLI exits.

Exit codes (documented in the README and relied on by CI):
  0  ok
  1  the work found a problem: invalid manifest, failed policy or gate, failed build/test/publish
  2  usage or environment error: bad config, missing tool, unreachable daemon or registry
  3  drift: an upstream tag moved (``factory drift`` only)
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass


class FactoryError(Exception):
    """An expected failure: printed as one message, no traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class EnvironmentProblem(FactoryError):
    """The machine lacks something: a tool, a daemon, a service."""

    exit_code = 2


class ConfigError(FactoryError):
    """factory.yaml or an environment override is invalid."""

    exit_code = 2


class UsageError(FactoryError):
    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One finding in one file: rendered as ``path:line: key.path: message``."""

    path: str
    line: int | None
    key: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ManifestError(FactoryError):
    """One or more manifests are invalid; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        files = len({p.path for p in self.problems})
        super().__init__(
            "\n".join(str(p) for p in self.problems)
            + f"\n{len(self.problems)} problem(s) in {files} file(s)"
        )


class CommandError(FactoryError):
    """An external command failed. Carries argv, exit code and stderr: never an empty result."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, *, step: str = "") -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.step = step
        tail = "\n".join(stderr.strip().splitlines()[-20:])
        # Without the step: what a caller that names the step itself (StepFailed) shows.
        self.detail = f"`{' '.join(self.argv[:3])} ...` {exit_words(returncode)}:\n{tail}"
        super().__init__(f"{step}: {self.detail}" if step else self.detail)


def exit_words(returncode: int) -> str:
    """`exited 1`, or for a process that crashed or was killed, `was killed by SIGSEGV` (subprocess
    reports death by signal N as the return code -N)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited {returncode}"


class StepFailed(FactoryError):
    """A pipeline step failed for one image (and maybe one platform); nothing was tagged."""

    def __init__(self, image: str, step: str, message: str, *, platform: str | None = None,
                 hint: str | None = None) -> None:
        self.image, self.step, self.platform = image, step, platform
        where = f"{image} [{platform}]" if platform else image
        super().__init__(f"{where}: {step} failed: {message}", hint=hint)
