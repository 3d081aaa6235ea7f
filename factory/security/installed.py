"""The distro packages installed in one image platform, read from its CycloneDX SBOM or from the package
manager's own database (``var/lib/dpkg/status``, ``lib/apk/db/installed``) in a base image's layers.

Only the package manager's own packages count (purl types ``deb`` and ``apk``): those are what an
archive can fix. Each purl is parsed with the ``packageurl`` library, never by hand. The version is
the one the package manager compares: trivy writes a dpkg epoch in the purl's ``epoch`` qualifier
(``pkg:deb/debian/bsdutils@2.38.1-5%2Bdeb12u3?arch=arm64&epoch=1`` is ``1:2.38.1-5+deb12u3``), syft
in the version itself; both give the same ``InstalledPackage.version``.

The source package comes from trivy's ``aquasecurity:trivy:SrcName`` property, else the purl's
``upstream`` qualifier (syft: ``upstream=util-linux`` or ``upstream=util-linux@2.38.1-5``), else it is
the binary package's own name, as dpkg says when a package names no ``Source:``.

The databases: dpkg's status file is deb822 (parsed with python-debian); only packages whose ``Status``
is ``install ok installed`` (or ``hold ok installed``: held at its version, still installed) count;
half-installed, config-files-only, removed and to-be-removed ones do not. apk's installed database lists
installed packages only, one record of ``X:value`` lines each (``P`` name, ``V`` version, ``A`` arch,
``o`` origin).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from debian.deb822 import Deb822
from packageurl import PackageURL

from factory.build import sbom as sbom_format
from factory.core.errors import LayoutError, SbomError

Ecosystem = Literal["deb", "apk"]
ECOSYSTEMS: tuple[Ecosystem, ...] = ("deb", "apk")
_TRIVY_SOURCE = "aquasecurity:trivy:SrcName"
# dpkg's Status is "<want> <flag> <status>": a package is installed when it is "installed" and "ok", whether
# it is wanted as it is (install) or held at its version (hold: installed, and apt will not upgrade it).
INSTALLED_STATES = frozenset({("install", "ok", "installed"), ("hold", "ok", "installed")})
# Where each distro's package manager keeps its database, as a path inside the root filesystem.
PACKAGE_DATABASES = {"debian": "var/lib/dpkg/status", "ubuntu": "var/lib/dpkg/status",
                     "alpine": "lib/apk/db/installed"}


@dataclass(frozen=True)
class InstalledPackage:
    """One binary package as the package manager installed it.

    ``version`` is the full version the package manager orders (dpkg: ``[epoch:]upstream[-revision]``);
    ``arch`` the distro's architecture name as the purl says it (``amd64``, ``all``, ``x86_64``), ``""``
    when the SBOM names none; ``source`` the source package (apk: the origin)."""

    name: str
    version: str
    arch: str
    source: str
    ecosystem: Ecosystem
    purl: str


def installed_packages(sbom: Mapping[str, Any]) -> tuple[InstalledPackage, ...]:
    """Every deb and apk package of a CycloneDX document, sorted by (name, arch). Components of other
    types (pypi, npm, the operating system itself) are not the package manager's and are left out.
    A deb/apk purl that does not parse is an ``SbomError``: a package silently dropped could hide a fix."""
    found = {}
    for component in sbom_format.components(sbom):
        purl = str(component.get("purl") or "")
        if not purl.startswith(("pkg:deb/", "pkg:apk/")):
            continue
        package = _installed(purl, component)
        found[(package.name, package.arch)] = package
    return tuple(found[k] for k in sorted(found))


def _installed(purl_text: str, component: Mapping[str, Any]) -> InstalledPackage:
    try:
        purl = PackageURL.from_string(purl_text)
    except ValueError as e:
        raise SbomError(f"SBOM component {component.get('name')!r}: purl {purl_text!r} does not parse: {e}") from None
    qualifiers = purl.qualifiers if isinstance(purl.qualifiers, dict) else {}
    if not purl.version:
        raise SbomError(f"SBOM component {purl.name!r}: purl {purl_text!r} has no version")
    ecosystem: Ecosystem = "deb" if purl.type == "deb" else "apk"
    return InstalledPackage(
        name=purl.name,
        version=full_version(purl.version, qualifiers.get("epoch")),
        arch=qualifiers.get("arch", ""),
        source=_source(component, qualifiers) or purl.name,
        ecosystem=ecosystem,
        purl=purl_text,
    )


def full_version(version: str, epoch: str | None) -> str:
    """The version with its epoch: ``("2.38.1-5", "1")`` -> ``1:2.38.1-5``. Epoch 0 and a version that
    already carries an epoch are left as they are."""
    if not epoch or epoch == "0" or ":" in version:
        return version
    return f"{epoch}:{version}"


def _source(component: Mapping[str, Any], qualifiers: Mapping[str, str]) -> str:
    for prop in component.get("properties") or []:
        if isinstance(prop, Mapping) and prop.get("name") == _TRIVY_SOURCE and prop.get("value"):
            return str(prop["value"])
    upstream = qualifiers.get("upstream", "")
    return upstream.partition("@")[0].strip()


def package_database(distro: str, content: bytes) -> tuple[InstalledPackage, ...]:
    """The installed packages of a database read from ``PACKAGE_DATABASES[distro]``."""
    return from_apk_installed(content) if distro == "alpine" else from_dpkg_status(content, distro)


def from_dpkg_status(content: bytes, distro: str = "debian") -> tuple[InstalledPackage, ...]:
    """Every installed package of a dpkg status file, sorted by (name, arch); ``distro`` names the purls'
    namespace (debian, ubuntu). A paragraph of an installed package without Version or Architecture is a
    ``LayoutError``: a package dropped could hide a fix."""
    found = {}
    for paragraph in Deb822.iter_paragraphs(content, use_apt_pkg=False):
        name = paragraph.get("Package")
        if not name or tuple((paragraph.get("Status") or "").split()) not in INSTALLED_STATES:
            continue
        version, arch = paragraph.get("Version"), paragraph.get("Architecture")
        if not version or not arch:
            raise LayoutError(f"dpkg status: installed package {name!r} has no Version or Architecture")
        source = (paragraph.get("Source") or name).split(" ", 1)[0]
        purl = PackageURL(type="deb", namespace=distro, name=name, version=version, qualifiers={"arch": arch})
        found[(name, arch)] = InstalledPackage(name, version, arch, source, "deb", purl.to_string())
    return tuple(found[k] for k in sorted(found))


def from_apk_installed(content: bytes) -> tuple[InstalledPackage, ...]:
    """Every package of apk's installed database (``lib/apk/db/installed``), sorted by (name, arch)."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LayoutError(f"apk installed database is not UTF-8 text: {e}") from None
    found = {}
    for number, record in enumerate(text.split("\n\n"), 1):
        fields: dict[str, str] = {}
        for line in record.splitlines():
            key, sep, value = line.partition(":")
            if sep and len(key) == 1:  # other lines (none in practice) are not fields
                fields.setdefault(key, value)
        if not fields.get("P"):
            continue
        if not fields.get("V"):
            raise LayoutError(f"apk installed database: record {number} ({fields['P']!r}) has no V: version")
        name, version, arch = fields["P"], fields["V"], fields.get("A", "")
        purl = PackageURL(type="apk", namespace="alpine", name=name, version=version,
                          qualifiers={"arch": arch} if arch else None)
        found[(name, arch)] = InstalledPackage(name, version, arch, fields.get("o") or name, "apk", purl.to_string())
    return tuple(found[k] for k in sorted(found))
