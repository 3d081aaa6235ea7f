"""``Archives``: the run's one reader of distribution archives. Constructed once per run; each index file
is fetched at most once and every image on the same (distro, release, architecture) reuses the result.

apt distros read suites ``<codename>`` and ``<codename>-updates`` from the mirror and ``<codename>-security``
from the security mirror, components as configured (Debian ``main``; Ubuntu ``main universe``), and only the
``binary-<arch>`` Packages (in Debian and Ubuntu they list the ``Architecture: all`` packages too). Alpine
reads ``<branch>/<repository>/<arch>/APKINDEX.tar.gz`` for each configured repository.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from factory.adapters.tools import Runner
from factory.archive import apk, deb
from factory.archive.download import Downloader, decompress
from factory.archive.types import DISTROS, ArchiveIndex, Distro, FetchStats, Package, Suite, SuiteKind
from factory.archive.versions import InvalidPackageVersion
from factory.core import log
from factory.core.errors import ArchiveFormatError
from factory.core.platforms import Platform
from factory.core.platforms import parse as parse_platform
from factory.spec.config import ArchiveSettings

# OCI architecture -> Alpine's (apk --print-arch).
ALPINE_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "arm/v7": "armv7", "arm/v6": "armhf", "386": "x86",
               "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def arch_for(distro: Distro, platform: Platform | str) -> str:
    """The distro's architecture name for an OCI platform: linux/arm64 is ``arm64`` (apt), ``aarch64`` (apk)."""
    p = parse_platform(platform) if isinstance(platform, str) else platform
    return ALPINE_ARCH[p.key] if distro == "alpine" else p.debian_arch


@dataclass(frozen=True)
class _Verified:
    suite: Suite
    release: deb.ReleaseInfo


class Archives:
    """Fetches, verifies and parses archive indexes for one run; ``stats`` counts what it downloaded.

    Safe to share between threads: one index is built at a time, and a second caller waits and reuses it.
    """

    def __init__(self, settings: ArchiveSettings, session: requests.Session, runner: Runner, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings, self.runner, self.clock = settings, runner, clock
        self.stats = FetchStats()
        self._http = Downloader(session, settings.limits, self.stats)
        self._lock = threading.Lock()
        self._indexes: dict[tuple[str, str, str], ArchiveIndex] = {}
        self._releases: dict[str, _Verified] = {}
        self._files: dict[str, tuple[Package, ...]] = {}

    def index(self, distro: Distro, codename: str, arch: str) -> ArchiveIndex:
        """Every suite of ``codename`` (``bookworm``, ``jammy``, ``v3.20``) for ``arch`` (the distro's name
        for it, see ``arch_for``), verified. Raises an ``ArchiveError`` (exit 2), never returns a partial index."""
        if distro not in DISTROS:
            raise ValueError(f"unknown distro {distro!r}: expected one of {', '.join(DISTROS)}")
        key = (distro, codename, arch)
        with self._lock:
            if key not in self._indexes:
                build = self._alpine if distro == "alpine" else self._apt
                self._indexes[key] = build(distro, codename, arch)
            return self._indexes[key]

    def index_for(self, distro: Distro, codename: str, platform: Platform | str) -> ArchiveIndex:
        """``index`` for an OCI platform (``linux/arm64``)."""
        return self.index(distro, codename, arch_for(distro, platform))

    # --- apt ---------------------------------------------------------------------------------------------

    def _apt(self, distro: Distro, codename: str, arch: str) -> ArchiveIndex:
        config = self.settings.apt(distro)
        mirror, security = config.mirrors_for(arch)
        plan: list[tuple[str, SuiteKind, str]] = [
            (codename, "release", mirror), (f"{codename}-updates", "updates", mirror),
            (f"{codename}-security", "security", security)]
        suites: list[Suite] = []
        packages: list[Package] = []
        for name, kind, base in plan:
            verified = self._release(distro, codename, name, kind, base)
            suites.append(verified.suite)
            for component in config.components:
                packages.extend(self._packages(verified, component, arch))
        log.get("archive").debug("index", distro=distro, codename=codename, arch=arch, packages=len(packages))
        return _index(distro, codename, arch, suites, packages)

    def _release(self, distro: Distro, codename: str, name: str, kind: SuiteKind, base: str) -> _Verified:
        url = f"{base}/dists/{name}/InRelease"
        if url not in self._releases:
            signed = deb.verify_inrelease(self.runner, self.settings.apt(distro).keyring, self._http.get(url), url)
            info = deb.parse_release(signed, url)
            deb.check_release(info, name, codename, url, self.clock())
            self._releases[url] = _Verified(Suite(distro, codename, name, kind, info.date, base), info)
        return self._releases[url]

    def _packages(self, verified: _Verified, component: str, arch: str) -> tuple[Package, ...]:
        base = f"{verified.suite.mirror}/dists/{verified.suite.name}"
        expected = deb.packages_path(verified.release, component, arch, f"{base}/InRelease")
        url = f"{base}/{expected.name}"
        if url not in self._files:
            data = self._http.get(url)
            deb.check_hash(data, expected, url)
            text = decompress(data, expected.name, self.settings.limits.max_unpacked)
            self._files[url] = tuple(deb.parse_packages(text, verified.suite, url))
        return self._files[url]

    # --- apk ---------------------------------------------------------------------------------------------

    def _alpine(self, distro: Distro, branch: str, arch: str) -> ArchiveIndex:
        config = self.settings.alpine
        suites: list[Suite] = []
        packages: list[Package] = []
        for repository in config.repositories:
            url = f"{config.mirror}/{branch}/{repository}/{arch}/APKINDEX.tar.gz"
            verified = apk.verify(self._http.get(url), config.keys_dir, self.settings.limits.max_unpacked, url)
            # Alpine has no separate security suite: a stable branch receives fix releases only, so a newer
            # version in the branch index is taken as the fix ("security").
            suite = Suite(distro, branch, f"{branch}/{repository}", "security", verified.date, config.mirror)
            suites.append(suite)
            packages.extend(apk.parse_apkindex(verified.text, suite, url))
        return _index(distro, branch, arch, suites, packages)


def _index(distro: Distro, codename: str, arch: str, suites: list[Suite], packages: list[Package]) -> ArchiveIndex:
    try:
        return ArchiveIndex.of(distro, codename, arch, suites, packages)
    except InvalidPackageVersion as e:
        raise ArchiveFormatError(f"{distro} {codename} {arch}: {e}", url=suites[0].mirror if suites else "") from e
