"""The data of an archive index: suites, package entries and one index per (distro, release, architecture).

Alpine has no separate security suite: its stable branches receive fix releases only, so the branch index
(``main``, ``community``) is the suite and its kind is ``"security"``; a version there newer than the one
installed is treated as a security fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from factory.archive import versions

Distro = Literal["debian", "ubuntu", "alpine"]
SuiteKind = Literal["release", "updates", "security"]
DISTROS: tuple[Distro, ...] = ("debian", "ubuntu", "alpine")


@dataclass(frozen=True)
class Suite:
    """One signed index of a release: ``bookworm-security`` (apt) or ``v3.20/main`` (apk).

    ``codename`` is the release (``bookworm``, ``jammy``, ``v3.20``); ``name`` the suite as apt names it
    (or ``<branch>/<repository>`` for Alpine); ``date`` the index's Date (InRelease ``Date:``, or the newest
    member time of APKINDEX.tar.gz); ``mirror`` the base URL it was read from.
    """

    distro: Distro
    codename: str
    name: str
    kind: SuiteKind
    date: datetime | None
    mirror: str


@dataclass(frozen=True)
class Package:
    """One binary package version in one suite. ``arch`` is the distro's name (``amd64``, ``all``,
    ``x86_64``, ``noarch``); ``source`` the source package (apk: the origin), never empty."""

    name: str
    version: str
    arch: str
    source: str
    suite: Suite


@dataclass(frozen=True)
class ArchiveIndex:
    """Every suite of one (distro, release, architecture) and the packages in them.

    ``arch`` is the distro's architecture name (``amd64``/``arm64`` for apt, ``x86_64``/``aarch64`` for apk).
    Packages of ``Architecture: all`` (apk ``noarch``) are included. Build with ``ArchiveIndex.of``.
    """

    distro: Distro
    codename: str
    arch: str
    _suites: tuple[Suite, ...]
    _packages: Mapping[str, tuple[Package, ...]] = field(repr=False)

    @classmethod
    def of(cls, distro: Distro, codename: str, arch: str, suites: Iterable[Suite],
           packages: Iterable[Package]) -> ArchiveIndex:
        """Group ``packages`` by name, each name's entries ordered highest version first."""
        grouped: dict[str, list[Package]] = {}
        for p in packages:
            grouped.setdefault(p.name, []).append(p)
        key = versions.sort_key_for(distro)
        ordered = {n: tuple(sorted(ps, key=lambda p: key(p.version), reverse=True)) for n, ps in grouped.items()}
        return cls(distro, codename, arch, tuple(suites), ordered)

    def suites(self) -> tuple[Suite, ...]:
        return self._suites

    def suite(self, name: str) -> Suite | None:
        """The suite called ``name`` (``bookworm-security``), or None when the index has none of that name."""
        return next((s for s in self._suites if s.name == name), None)

    def names(self) -> frozenset[str]:
        """Every binary package name in the index."""
        return frozenset(self._packages)

    def candidates(self, name: str) -> list[Package]:
        """Every version of binary package ``name`` across the suites, highest first; [] when unknown."""
        return list(self._packages.get(name, ()))

    def candidate(self, name: str) -> Package | None:
        """The version apt/apk would install: the highest (apt: every suite has the default pin 500).

        On equal versions in several suites the first suite in ``suites()`` order wins (release before
        updates before security), as it makes no difference to the version installed."""
        found = self._packages.get(name)
        return found[0] if found else None


@dataclass
class FetchStats:
    """What an ``Archives`` downloaded this run: requests made, bytes received (on the wire, compressed),
    and the URLs fetched (each at most once)."""

    requests: int = 0
    bytes: int = 0
    urls: list[str] = field(default_factory=list)
