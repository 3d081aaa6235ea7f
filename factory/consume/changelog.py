"""What changed between two published images, package by package, from their SBOM attestations.

The SBOMs are read only through ``Signer.verify_attestation``: an attestation whose signature does
not verify is never read. Packages are compared by the key ``factory.sbom.packages`` gives them
(the package name, or ``type/name`` where two ecosystems share a name). A version that differs is
an upgrade or a downgrade by the package manager's ordering rules (``compare_versions``), which also order the
apk, PyPI and npm versions a base image carries well enough to say which way a change went.

Used by `factory diff REF_A REF_B` and by the catalog's per-version changelog.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from factory.archive import versions
from factory.build import sbom
from factory.core.errors import ImageNotFound
from factory.core.reference import Ref
from factory.oci.registry import Registry, platform_digests
from factory.trust import sign
from factory.trust.sign import Signing

DEFAULT_PLATFORM = "linux/amd64"


@dataclass(frozen=True)
class PackageVersion:
    name: str
    version: str


@dataclass(frozen=True)
class VersionChange:
    name: str
    old: str
    new: str


@dataclass(frozen=True)
class PackageDiff:
    added: tuple[PackageVersion, ...] = ()
    removed: tuple[PackageVersion, ...] = ()
    upgraded: tuple[VersionChange, ...] = ()
    downgraded: tuple[VersionChange, ...] = ()
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.upgraded or self.downgraded)

    def summary(self) -> str:
        """"1 added, 0 removed, 3 upgraded, 120 unchanged" (downgrades named only when there are some)."""
        parts = [f"{len(self.added)} added", f"{len(self.removed)} removed", f"{len(self.upgraded)} upgraded"]
        if self.downgraded:
            parts.append(f"{len(self.downgraded)} downgraded")
        return ", ".join(parts) + f", {self.unchanged} unchanged"


def diff_packages(old: Mapping[str, sbom.Package], new: Mapping[str, sbom.Package]) -> PackageDiff:
    """The difference between two package sets keyed as ``factory.sbom.packages`` keys them."""
    added = tuple(PackageVersion(k, new[k].version) for k in sorted(new.keys() - old.keys()))
    removed = tuple(PackageVersion(k, old[k].version) for k in sorted(old.keys() - new.keys()))
    upgraded, downgraded, unchanged = [], [], 0
    for key in sorted(old.keys() & new.keys()):
        before, after = old[key].version, new[key].version
        order = compare_versions(before, after, new[key].type)
        if order == 0:
            unchanged += 1
        elif order < 0:
            upgraded.append(VersionChange(key, before, after))
        else:
            downgraded.append(VersionChange(key, before, after))
    return PackageDiff(added, removed, tuple(upgraded), tuple(downgraded), unchanged)


def diff_sboms(old: Mapping[str, Any], new: Mapping[str, Any]) -> PackageDiff:
    """The package difference between two CycloneDX documents."""
    return diff_packages(sbom.packages(old), sbom.packages(new))


# --- version order ------------------------------------------------------------------------------

def compare_versions(a: str, b: str, package_type: str = "deb") -> int:
    """-1, 0 or 1 as ``a`` sorts before, equal to or after ``b``: apk packages by apk's order, every other
    package by dpkg's (Debian policy 5.6.12), both through factory.archive.versions (python-debian and
    univers). A string neither library reads as a version (a language package's "1.0 beta") is ordered
    as text: the changelog still says it changed, and in which direction is only a guess."""
    if a == b:
        return 0
    distro = "alpine" if package_type == "apk" else "debian"
    try:
        return versions.compare(distro, a, b)
    except versions.InvalidPackageVersion:
        return -1 if a < b else 1


# --- published images -------------------------------------------------------------------------


@dataclass(frozen=True)
class PlatformSbom:
    """One platform image of a published reference and its verified CycloneDX SBOM."""

    ref: str  # what the user asked for
    index_digest: str
    platform: str
    digest: str  # the platform manifest's digest: what the SBOM attestation is on
    sbom: Mapping[str, Any]


def published_sbom(ref_text: str, platform: str, registry_for: Callable[[str], Registry], signer: Signing, *,
                   public_key: Path | None = None) -> PlatformSbom:
    """Resolve a tag or digest to ``platform``'s image and read its verified SBOM attestation."""
    ref = Ref.parse(ref_text)
    registry = registry_for(ref.registry)
    if registry.head_manifest(ref.repository, ref.reference) is None:
        raise ImageNotFound(f"{ref_text}: not found in {ref.registry}")
    index_digest, platforms = platform_digests(registry, ref.repository, ref.reference)
    if platform not in platforms:
        raise ImageNotFound(f"{ref_text} has no {platform} image",
                            hint=f"its platforms: {', '.join(sorted(platforms)) or 'none'}; pass --platform")
    digest = platforms[platform]
    document = sign.verified_sbom(signer, f"{ref.registry}/{ref.repository}@{digest}", public_key)
    return PlatformSbom(ref_text, index_digest, platform, digest, document)


def compare(ref_a: str, ref_b: str, platform: str, registry_for: Callable[[str], Registry], signer: Signing, *,
            public_key: Path | None = None) -> tuple[PackageDiff, PlatformSbom, PlatformSbom]:
    """`factory diff`: the package changes from ``ref_a`` to ``ref_b`` on ``platform``, and both SBOMs."""
    old, new = (published_sbom(ref, platform, registry_for, signer, public_key=public_key) for ref in (ref_a, ref_b))
    return diff_sboms(old.sbom, new.sbom), old, new


# --- output -------------------------------------------------------------------------------------


def as_json(diff: PackageDiff, old: PlatformSbom | None = None, new: PlatformSbom | None = None) -> str:
    doc: dict[str, Any] = {}
    for side, image in (("old", old), ("new", new)):
        if image:
            doc[side] = {"ref": image.ref, "index_digest": image.index_digest, "platform": image.platform,
                         "digest": image.digest}
    doc.update(asdict(diff))
    return json.dumps(doc, indent=2)


def table(diff: PackageDiff) -> str:
    """One line per changed package (by name), then the summary."""
    rows = [("+", p.name, p.version) for p in diff.added]
    rows += [("-", p.name, p.version) for p in diff.removed]
    rows += [("^", c.name, f"{c.old} -> {c.new}") for c in diff.upgraded]
    rows += [("v", c.name, f"{c.old} -> {c.new}") for c in diff.downgraded]
    if not rows:
        return f"no package changes ({diff.unchanged} packages unchanged)"
    width = max(len(name) for _, name, _ in rows)
    lines = [f"{mark} {name:{width}}  {versions}" for mark, name, versions in sorted(rows, key=lambda r: r[1])]
    return "\n".join(lines) + f"\n{diff.summary()}  (+ added, - removed, ^ upgraded, v downgraded)"
