"""`factory fixes`: the pending fixes of each image's current published version, per platform.

For each named manifest (default: all), and its debug variant when it has one, the current version is
the newest immutable tag of its ``major.minor`` (as ``factory plan`` finds it). Per platform manifest of
that index, the CycloneDX SBOM attestation is read only through ``Signer.verify_attestation``: an
attestation that does not verify is an error for that image, never "no fixes". Its deb/apk packages
(``factory.security.installed``) are matched against the archive index of the image's release and
architecture (``factory.archive``; each index is fetched once per run), giving ``FixesReport`` s.

Which archive: the manifest's distro (distroless images are Debian's, of their ``release``) and release
(the manifest's, else its parent's, else the SBOM's operating system). A no-shell image (distroless,
scratch, or an SBOM without deb/apk packages: no package database) is reported "upstream must rebuild":
the org layer cannot upgrade packages in it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import requests

from factory.adapters.tools import Runner
from factory.archive.fetch import Archives
from factory.archive.types import DISTROS, ArchiveIndex, Distro
from factory.build import sbom as sbom_mod
from factory.core import lifecycle, log, versioning
from factory.core.errors import (
    ArchiveError,
    ImageNotFound,
    RegistryError,
    SbomError,
    VerificationFailed,
)
from factory.core.model import Manifest
from factory.oci.registry import Registry, platform_digests
from factory.security.fixes import pending_fixes
from factory.security.installed import InstalledPackage, installed_packages
from factory.security.report import (
    ERROR,
    FIXABLE,
    UPSTREAM_MUST_REBUILD,
    FixesReport,
    FixesRun,
    Status,
    SuiteRead,
)
from factory.spec import manifest
from factory.spec.config import Settings
from factory.trust import sign
from factory.trust.sign import Signer

# What can go wrong for one image without saying anything about the others: reported per image.
_PER_IMAGE_ERRORS = (VerificationFailed, ArchiveError, RegistryError, SbomError, ImageNotFound)


class IndexSource(Protocol):
    """Where archive indexes come from: ``factory.archive.fetch.Archives`` (once per run), or a test's."""

    def index_for(self, distro: Distro, codename: str, platform: str) -> ArchiveIndex: ...


@dataclass(frozen=True)
class Release:
    """The archive an image's packages are compared with."""

    distro: Distro
    codename: str  # bookworm, noble, v3.20


def release_of(m: Manifest, manifests: Mapping[str, Manifest], sbom: Mapping[str, Any]) -> Release | None:
    """The distro release whose archive fixes ``m``'s packages; None when it cannot be told."""
    os_name, _, os_version = (sbom_mod.operating_system(sbom) or "").partition(" ")
    distro = "debian" if m.distro == "distroless" else m.distro
    if distro not in DISTROS:
        distro = os_name.lower()
    if distro not in DISTROS:
        return None
    release = _declared_release(m, manifests) or os_version or None
    if release is None:
        return None
    if distro == "alpine":
        return Release("alpine", "v" + ".".join(release.split(".")[:2]))
    row = lifecycle.lookup(distro, release)
    return Release(distro, row.codename) if row and row.codename else None


def _declared_release(m: Manifest, manifests: Mapping[str, Manifest]) -> str | None:
    """The manifest's ``release``, else the nearest ancestor's."""
    seen: set[str] = set()
    current: Manifest | None = m
    while current is not None and current.name not in seen:
        if current.release:
            return current.release
        seen.add(current.name)
        current = manifests.get(current.parent) if current.parent else None
    return None


@dataclass(frozen=True)
class Current:
    """One variant's current published version: the newest immutable tag of its manifest's major.minor."""

    manifest: Manifest
    prefix: str  # the tag prefix: the name, or name-debug
    tag: str  # the immutable tag
    version: str


def current_versions(manifests: Mapping[str, Manifest], names: Sequence[str],
                     tags: Sequence[str]) -> tuple[list[Current], list[str]]:
    """The current version of each named manifest (all when none is named), prod then debug variant, from
    the repository's ``tags``; and the prefixes with none published. An unknown name is a usage error."""
    manifest.select(manifests, names)
    found: list[Current] = []
    unpublished: list[str] = []
    for name in names or sorted(manifests):
        m = manifests[name]
        for prefix in [m.name] + ([versioning.tag_prefix(m.name, debug=True)] if m.variant("debug") else []):
            current = versioning.latest(versioning.versions_in(tags, prefix), m.major, m.minor)
            if current is None:
                unpublished.append(prefix)
            else:
                found.append(Current(m, prefix, versioning.immutable_tag(prefix, current), str(current)))
    return found, unpublished


class FixesChecker:
    """One run of `factory fixes`: reads the registry, cosign and the archives."""

    def __init__(self, settings: Settings, registry_for: Callable[[str], Registry], signer: Signer,
                 manifests: Mapping[str, Manifest], archives: IndexSource, *,
                 public_key: Path | None = None) -> None:
        self.settings = settings
        self.registry = registry_for(settings.registry)
        self.signer = signer
        self.manifests = manifests
        self.archives = archives
        self.public_key = public_key
        self.log = log.get("fixes")

    def check(self, names: Sequence[str] = ()) -> FixesRun:
        found, unpublished = current_versions(self.manifests, names,
                                              self.registry.list_tags(self.settings.repository))
        reports = [r for c in found for r in self._version(c.manifest, c.prefix, c.tag, c.version)]
        return FixesRun(tuple(reports), tuple(unpublished))

    def _version(self, m: Manifest, prefix: str, tag: str, version: str) -> list[FixesReport]:
        self.log.info("fixes", image=prefix, version=version)
        try:
            index_digest, digests = platform_digests(self.registry, self.settings.repository, tag)
        except _PER_IMAGE_ERRORS as e:
            return [FixesReport(prefix, version, tag, "", "", "", ERROR, error=e.message)]
        base = FixesReport(prefix, version, tag, index_digest, "", "", ERROR)
        return [self._platform(m, base, platform, digest) for platform, digest in sorted(digests.items())]

    def _platform(self, m: Manifest, base: FixesReport, platform: str, digest: str) -> FixesReport:
        where = FixesReport(base.image, base.version, base.tag, base.index_digest, platform, digest, ERROR)
        try:
            document = sign.verified_sbom(self.signer, f"{self.settings.target}@{digest}", self.public_key)
            return self._match(m, where, document)
        except _PER_IMAGE_ERRORS as e:
            self.log.error("fixes not checked", image=base.image, platform=platform, error=e.message)
            return replace(where, error=e.message)

    def match_verified(self, m: Manifest, where: FixesReport, document: Mapping[str, Any]) -> FixesReport:
        """``where``'s fixes from an SBOM the caller has already verified (the catalog reads every version's
        anyway): the same matching as `factory fixes`, without a second verification."""
        try:
            return self._match(m, where, document)
        except _PER_IMAGE_ERRORS as e:
            return replace(where, status=ERROR, error=e.message)

    def _match(self, m: Manifest, where: FixesReport, document: Mapping[str, Any]) -> FixesReport:
        installed = installed_packages(document)
        no_shell = not m.has_shell or not installed
        status: Status = UPSTREAM_MUST_REBUILD if no_shell else FIXABLE
        release = release_of(m, self.manifests, document)
        if not installed:
            return replace(where, status=status, note="no deb/apk packages in the SBOM (no package database): "
                                                    "nothing an archive can fix in place")
        if release is None:
            problem = f"cannot tell the {m.distro} release: no `release` in the manifest, its parents or the SBOM"
            if no_shell:
                return replace(where, status=status, packages=len(installed), note=problem)
            return replace(where, error=problem)
        return self._against(where, status, release, installed)

    def _against(self, where: FixesReport, status: Status, release: Release,
                 installed: Sequence[InstalledPackage]) -> FixesReport:
        index = self.archives.index_for(release.distro, release.codename, where.platform)
        matched = pending_fixes(installed, index)
        suites = tuple(SuiteRead.of(s.name, s.date, s.mirror) for s in index.suites())
        return replace(where, status=status, distro=release.distro, codename=release.codename,
                       packages=len(installed), fixes=matched.fixes, not_in_archive=matched.not_in_archive,
                       foreign=matched.foreign, suites=suites)


# --- the run --------------------------------------------------------------------------------------


def run(settings: Settings, runner: Runner, registry_for: Callable[[str], Registry], names: Sequence[str] = (), *,
        public_key: Path | None = None) -> FixesRun:
    """`factory fixes`: load the manifests, then check each named one (all when none is named)."""
    manifests = manifest.load_all(settings)
    with requests.Session() as session:
        archives = Archives(settings.archives, session, runner)
        result = FixesChecker(settings, registry_for, Signer(settings, runner), manifests, archives,
                              public_key=public_key).check(names)
    log.get("fixes").info("archives read", requests=archives.stats.requests, bytes=archives.stats.bytes)
    return result
