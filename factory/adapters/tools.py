"""Every external command (cosign, trivy, syft, mmdebstrap ...) runs through this one runner.

It resolves the binary first (the project's tools folder, the venv's bin, then PATH; or only the
folders of a hermetic ``tools_path``) so that a missing tool is one clear error; logs the argv, never
the environment (secrets travel there); and turns a non-zero exit into a CommandError carrying argv,
exit code and stderr, never into an empty result.
docker and buildx do not come through here: they go through ``factory.docker`` (python-on-whales).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from factory.core import log
from factory.core.errors import CommandError, EnvironmentProblem

INSTALL_HINT = "run `make setup` (scripts/bootstrap.sh) to install the toolchain"


@dataclass(frozen=True)
class Runner:
    """Runs external tools; ``extra_path`` (the bootstrap's tools/bin) is searched before PATH.

    ``only_path`` (factory.yaml ``tools_path`` / FACTORY_TOOLS_PATH) replaces the whole search: tools
    come from those folders and nowhere else, and the tools' own PATH is those folders. For a pinned
    toolchain in CI, and for tests that need a tool missing or broken without touching the machine's.
    """

    extra_path: tuple[Path, ...] = ()
    only_path: tuple[Path, ...] | None = None

    @property
    def search_path(self) -> str:
        if self.only_path is not None:
            return os.pathsep.join(map(str, self.only_path))
        # Tools installed as Python extras (trivy) live beside the interpreter, in the venv's bin.
        venv_bin = os.path.dirname(sys.executable)
        return os.pathsep.join([*map(str, self.extra_path), venv_bin, os.environ.get("PATH", "")])

    @property
    def searched(self) -> str:
        """Where tools are looked for, in words, for "not found" messages."""
        if self.only_path is not None:
            return f"tools_path ({', '.join(map(str, self.only_path)) or 'empty'})"
        return "PATH" + (" or " + ", ".join(map(str, self.extra_path)) if self.extra_path else "")

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.search_path)

    def require(self, name: str) -> str:
        found = self.which(name)
        if not found:
            raise EnvironmentProblem(f"{name} not found in {self.searched}", hint=INSTALL_HINT)
        return found

    def run(
        self,
        argv: Sequence[str],
        *,
        step: str = "",
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float | None = None,
        cwd: Path | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv[0] resolved on the search path. ``env`` adds to (not replaces) the environment."""
        exe = self.require(argv[0])
        full_env = {**os.environ, "PATH": self.search_path, **(env or {})}
        logger = log.get("tools")
        logger.debug("run", argv=list(argv), step=step or None)
        start = time.monotonic()
        try:
            # check=False: a failure is raised below as a CommandError, with the tool's stderr.
            proc = subprocess.run(
                [exe, *argv[1:]], env=full_env, input=input, timeout=timeout, cwd=cwd,
                capture_output=True, text=True, check=False,
            )
        except subprocess.TimeoutExpired as e:
            # subprocess.run kills the tool on a timeout: say so, and why
            raise CommandError(argv, -signal.SIGKILL, f"timed out after {timeout}s", step=step) from e
        logger.debug("ran", argv0=argv[0], rc=proc.returncode, seconds=round(time.monotonic() - start, 2))
        if check and proc.returncode != 0:
            raise CommandError(argv, proc.returncode, proc.stderr or proc.stdout[-2000:], step=step)
        return proc

    def version(self, name: str, *args: str) -> str | None:
        """The output of ``name args`` (default --version), or None when the tool is missing or fails."""
        if not self.which(name):
            return None
        try:
            proc = self.run([name, *(args or ("--version",))], check=False, timeout=30)
        except CommandError:
            return None
        out = (proc.stdout or proc.stderr or "").strip()
        return out if proc.returncode == 0 and out else None
