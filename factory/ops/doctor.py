"""`factory doctor`: one line per tool and service, and what to do about each missing one."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from factory.adapters.docker import MIN_ENGINE_MAJOR, Docker
from factory.adapters.tools import INSTALL_HINT, Runner
from factory.core.errors import EnvironmentProblem
from factory.oci import registry
from factory.spec.config import Settings

BINFMT_ARM64 = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def render(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"{'ok' if c.ok else 'MISSING':7} {c.name.ljust(width)}  {c.detail}" for c in self.checks]
        todo = [f"  - {c.name}: {c.fix}" for c in self.checks if not c.ok and c.fix]
        if todo:
            lines += ["", "to do:", *todo]
        return "\n".join(lines)


def _tool(runner: Runner, name: str, args: tuple[str, ...], pattern: str) -> Check:
    text = runner.version(name, *args)
    if text is None:
        return Check(name, False, "not found", INSTALL_HINT)
    m = re.search(pattern, text)
    return Check(name, True, m.group(1) if m else text.splitlines()[0])


def run(settings: Settings, runner: Runner, docker: Docker) -> Report:
    r = Report()
    r.checks.append(_tool(runner, "cosign", ("version",), r"GitVersion:\s*v?(\S+)"))
    r.checks.append(_tool(runner, "trivy", ("--version",), r"Version:\s*(\S+)"))
    r.checks.append(_tool(runner, "mmdebstrap", ("--version",), r"mmdebstrap (\S+)"))
    r.checks.append(_engine_check(docker))
    r.checks.append(_buildx_check(docker))
    r.checks.append(_binfmt_check())
    r.checks.append(_registry_check(settings))
    return r


def _engine_check(docker: Docker) -> Check:
    try:
        eng = docker.check()
    except EnvironmentProblem as e:
        return Check("docker", False, e.message, e.hint or "")
    return Check("docker", True, f"engine {eng.server_version} (>= {MIN_ENGINE_MAJOR}), containerd image store")


def _buildx_check(docker: Docker) -> Check:
    try:
        eng = docker.engine
    except EnvironmentProblem as e:
        return Check("buildx", False, e.message, e.hint or "")
    plats = ", ".join(eng.builder_platforms)
    if "linux/arm64" not in eng.builder_platforms:
        return Check("buildx", False, f"builder {eng.builder}: {plats} (no linux/arm64)",
                     "enable QEMU binfmt: `make services`")
    return Check("buildx", True, f"builder {eng.builder}: {plats}")


def _binfmt_check() -> Check:
    try:
        enabled = BINFMT_ARM64.read_text().splitlines()[0] == "enabled"
    except OSError:
        enabled = False
    if not enabled:
        return Check("qemu-arm64", False, "binfmt_misc qemu-aarch64 not enabled", "`make services`")
    return Check("qemu-arm64", True, f"binfmt enabled ({BINFMT_ARM64})")


def _registry_check(settings: Settings) -> Check:
    problem = registry.ping(settings.registry, insecure=settings.registry_is_insecure())
    if problem:
        return Check("registry", False, f"{settings.registry}: {problem}",
                     "`make services` (local) or check FACTORY_REGISTRY")
    return Check("registry", True, f"{settings.registry} answers /v2/")
