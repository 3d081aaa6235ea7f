"""The distro packages installed in one image platform, read from its CycloneDX SBOM.

Only the package manager's own packages count (purl types ``deb`` and ``apk``): those are what an
archive can fix. Each purl is parsed with the ``packageurl`` library, never by hand. The version is
the one the package manager compares: trivy writes a dpkg epoch in the purl's ``epoch`` qualifier
(``pkg:deb/debian/bsdutils@2.38.1-5%2Bdeb12u3?arch=arm64&epoch=1`` is ``1:2.38.1-5+deb12u3``), syft
in the version itself; both give the same ``InstalledPackage.version``.

The source package comes from trivy's ``aquasecurity:trivy:SrcName`` property, else the purl's
``upstream`` qualifier (syft: ``upstream=util-linux`` or ``upstream=util-linux@2.38.1-5``), else it is
the binary package's own name, as dpkg says when a package names no ``Source:``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from packageurl import PackageURL

from factory.core.errors import SbomError

Ecosystem = Literal["deb", "apk"]
ECOSYSTEMS: tuple[Ecosystem, ...] = ("deb", "apk")
_TRIVY_SOURCE = "aquasecurity:trivy:SrcName"


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
    for component in _components(sbom):
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


def _components(sbom: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every component, depth first (CycloneDX nests components inside components)."""
    stack = list(reversed(sbom.get("components") or []))
    while stack:
        component = stack.pop()
        if isinstance(component, Mapping):
            yield component
            stack.extend(reversed(component.get("components") or []))
