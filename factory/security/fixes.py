"""Pending fixes: installed packages against an archive index, as ``apt-get upgrade`` would see them.

Pure: no network, no processes. For each installed package the candidate is what the package manager
would install now (``ArchiveIndex.candidate``: the highest version of that name in any suite of the
release, ``Architecture: all`` included; apt gives every suite the same default pin). A package is a
pending fix when that candidate is newer than the installed version. An installed version newer than
every archive version is not (apt never downgrades), and a package the archive does not carry (built
locally, from another repository, removed from the release) cannot be fixed from it: it is listed
apart, as ``not_in_archive``.

The kind is ``security`` when the candidate version is published in a security suite (``bookworm-security``;
for Alpine every branch index, see ``factory.archive.types``), else ``update`` (``-updates``, or a newer
point release of the release suite itself). apt names every suite that has the candidate version; the
one reported here is the security suite when there is one, else the suite ``candidate`` picked.

What this does not model, and ``apt-get -s upgrade`` would: a candidate whose new dependencies need a
package not yet installed is "kept back" by ``upgrade`` (the SBOM carries no dependency data); dpkg holds.
Neither happens for the security fixes of a stable release in practice, which keep dependencies as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from factory.archive import versions
from factory.archive.types import ArchiveIndex
from factory.archive.types import Package as ArchivePackage
from factory.security.installed import InstalledPackage

FixKind = Literal["security", "update"]
ARCH_INDEPENDENT = frozenset({"all", "noarch"})


@dataclass(frozen=True)
class Fix:
    """One package with a newer version in the archive than the one installed."""

    package: str
    arch: str  # the installed package's architecture (amd64, all, x86_64 ...)
    installed: str
    candidate: str
    suite: str  # bookworm-security, bookworm-updates, v3.20/main ...
    kind: FixKind
    source: str  # the source package of the installed binary

    def __str__(self) -> str:
        return f"{self.package} {self.installed} -> {self.candidate} ({self.suite})"


class ByKind:
    """The security fixes and the other updates of something that holds ``fixes``."""

    fixes: tuple[Fix, ...]

    @property
    def security(self) -> tuple[Fix, ...]:
        return tuple(f for f in self.fixes if f.kind == "security")

    @property
    def updates(self) -> tuple[Fix, ...]:
        return tuple(f for f in self.fixes if f.kind == "update")


@dataclass(frozen=True)
class Matched(ByKind):
    """What matching one platform's packages against its archive index found."""

    fixes: tuple[Fix, ...]  # by package name
    not_in_archive: tuple[str, ...]  # installed packages the index has no version of
    foreign: tuple[str, ...]  # name:arch of packages of another architecture (multiarch), not checked here
    checked: int  # packages compared with the index



def pending_fixes(installed: Iterable[InstalledPackage], index: ArchiveIndex) -> Matched:
    """Every installed package whose candidate in ``index`` is newer than its installed version."""
    fixes: list[Fix] = []
    absent: list[str] = []
    foreign: list[str] = []
    checked = 0
    for package in installed:
        if package.arch and package.arch != index.arch and package.arch not in ARCH_INDEPENDENT:
            foreign.append(f"{package.name}:{package.arch}")
            continue
        checked += 1
        candidate = index.candidate(package.name)
        if candidate is None:
            absent.append(package.name)
        elif versions.compare(index.distro, candidate.version, package.version) > 0:
            fixes.append(_fix(package, candidate, index))
    return Matched(tuple(sorted(fixes, key=lambda f: (f.package, f.arch))), tuple(sorted(absent)),
                   tuple(sorted(foreign)), checked)


def _fix(package: InstalledPackage, candidate: ArchivePackage, index: ArchiveIndex) -> Fix:
    same = [c for c in index.candidates(package.name)
            if versions.compare(index.distro, c.version, candidate.version) == 0]
    security = next((c for c in same if c.suite.kind == "security"), None)
    chosen = security or candidate
    return Fix(package=package.name, arch=package.arch or index.arch, installed=package.version,
               candidate=candidate.version, suite=chosen.suite.name,
               kind="security" if security else "update", source=package.source)
