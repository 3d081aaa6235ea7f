"""Manifest types: the validated, immutable model every later stage reads.

Built only by ``factory.manifest`` (schema first, then meaning); nothing downstream reads YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from factory.core.platforms import Platform

NO_SHELL_DISTROS = frozenset({"distroless", "scratch"})


@dataclass(frozen=True)
class Upstream:
    image: str  # registry/repository, e.g. docker.io/library/debian
    tag: str | None
    digest: str | None

    @property
    def registry(self) -> str:
        first = self.image.split("/", 1)[0]
        has_host = "/" in self.image and ("." in first or ":" in first or first == "localhost")
        return first if has_host else "docker.io"

    @property
    def repository(self) -> str:
        first, _, rest = self.image.partition("/")
        repo = rest if self.registry == first and rest else self.image
        return f"library/{repo}" if self.registry == "docker.io" and "/" not in repo else repo

    @property
    def pinned_ref(self) -> str:
        """image[:tag]@digest, as written in FROM."""
        tag = f":{self.tag}" if self.tag else ""
        return f"{self.image}{tag}@{self.digest}"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class CaFile:
    """A PEM file of CA certificates an image trusts (checked and read by factory.certs)."""

    path: Path  # repository root / written; factory.certs resolves it and keeps it inside the repository
    written: str  # as listed, relative to the repository root
    key: str  # where it is listed: "certificates.0" in factory.yaml, "certificates.additional.0" in the manifest
    org_wide: bool  # listed in factory.yaml: every image trusts it


@dataclass(frozen=True)
class ImageTest:
    name: str
    run: tuple[str, ...]
    expect_stdout: str | None = None
    expect_exit: int = 0


@dataclass(frozen=True)
class Variant:
    name: str  # "debug"
    packages: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Waiver:
    rule: str
    reason: str
    expires: date


@dataclass(frozen=True)
class Manifest:
    path: Path
    name: str
    version: str  # "major.minor"
    description: str
    distro: str
    upstream: Upstream | None
    parent: str | None
    release: str | None
    runtime: str
    platforms: tuple[Platform, ...]
    timezone: str
    user: User
    ca_certificates: bool
    env: tuple[tuple[str, str], ...]  # sorted by key: deterministic rendering
    packages: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    licenses: str
    eol: date | None
    variants: tuple[Variant, ...]
    tests: tuple[ImageTest, ...]
    waivers: tuple[Waiver, ...]
    # the CA files the image trusts: factory.yaml's org-wide ones first, then the manifest's own
    certificates: tuple[CaFile, ...] = ()
    # key path ("upstream.digest", "tests.0.run") -> line in the source file, for error messages
    lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def minor(self) -> int:
        return int(self.version.split(".")[1])

    @property
    def has_shell(self) -> bool:
        return self.distro not in NO_SHELL_DISTROS

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def line_of(self, key: str) -> int | None:
        """Line of the key, or of its nearest ancestor that has one."""
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rpartition(".")[0]
        return None
