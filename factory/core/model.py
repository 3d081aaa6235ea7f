"""Manifest types: the validated, immutable model every later stage reads.

Built only by ``factory.spec.manifest`` (schema first, then meaning); nothing downstream reads YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from factory.core.platforms import Platform
from factory.core.reference import Ref

NO_SHELL_DISTROS = frozenset({"distroless", "scratch"})


@dataclass(frozen=True)
class Upstream:
    image: str  # registry/repository, e.g. docker.io/library/debian
    tag: str | None
    digest: str | None

    @property
    def ref(self) -> Ref:
        """The image parsed: Docker Hub's aliases and ``library/`` normalised (see factory.core.reference)."""
        return Ref.parse(self.image)

    @property
    def registry(self) -> str:
        return self.ref.registry

    @property
    def repository(self) -> str:
        return self.ref.repository

    @property
    def pinned_ref(self) -> str:
        """image[:tag]@digest, as written in FROM."""
        tag = f":{self.tag}" if self.tag else ""
        return f"{self.image}{tag}@{self.digest}"


@dataclass(frozen=True)
class Parent:
    """Another image of this repository, by manifest name: built FROM its published index."""

    name: str


# What an image is built FROM: exactly one of an external upstream or an org parent.
Base = Upstream | Parent


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
class Deprecation:
    successor: str  # the org image to move to
    reason: str = ""


@dataclass(frozen=True)
class Manifest:
    path: Path
    name: str
    version: str  # "major.minor"
    description: str
    distro: str
    base: Base
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
    deprecated: Deprecation | None = None  # the manifest's `deprecated`: move to the successor
    # key path ("upstream.digest", "tests.0.run") -> line in the source file, for error messages
    lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def upstream(self) -> Upstream | None:
        """The external image built FROM, when the base is one (read-only view of ``base``)."""
        return self.base if isinstance(self.base, Upstream) else None

    @property
    def parent(self) -> str | None:
        """The parent manifest's name, when the base is one (read-only view of ``base``)."""
        return self.base.name if isinstance(self.base, Parent) else None

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
        return nearest_line(self.lines, key)


def nearest_line(lines: Mapping[str, int], key: str) -> int | None:
    """The line of a key path ("tests.0.run"), or of its nearest ancestor that has one."""
    while key:
        if key in lines:
            return lines[key]
        key = key.rpartition(".")[0]
    return None


# Scanner severities, most severe first (trivy's spelling).
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")


@dataclass(frozen=True)
class Vulnerability:
    """One scanner finding (factory.build.scan reads them from trivy's report; policy judges them)."""

    id: str
    package: str
    installed_version: str
    fixed_version: str  # "" when no fixed version exists yet
    severity: str  # one of SEVERITIES
    title: str

    def __str__(self) -> str:
        fix = f"fixed in {self.fixed_version}" if self.fixed_version else "no fix yet"
        return f"{self.severity} {self.id} in {self.package} {self.installed_version} ({fix}): {self.title}"
