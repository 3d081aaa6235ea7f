"""The signed attestations of a published variant: on each platform manifest a CycloneDX SBOM (its
packages and the files the factory copied in), the scan record, the VEX waivers and the SLSA provenance of
that platform's image; on the index the hardening conformance (which checks passed where), the SLSA
provenance, and an index SBOM listing each platform image, so that `cosign verify-attestation --type
cyclonedx <tag>` finds one. A one-platform build's index is its platform image: it gets each once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from factory import __version__
from factory.adapters.gitinfo import Revision
from factory.build import sbom, scan
from factory.build.imagetest import CheckResult
from factory.build.scan import Ignore
from factory.core import labels, versioning
from factory.core.model import Manifest
from factory.oci import rootfs
from factory.oci.layout import OciLayout
from factory.publish.destination import Destination
from factory.publish.report import VariantResult
from factory.render import plan
from factory.security.installed import PACKAGE_DATABASES, InstalledPackage, package_database
from factory.security.record import SecurityFixes, resolved_dependencies
from factory.spec import policy
from factory.trust import attest, vex
from factory.trust.sign import Signing

BUILDER_ID = "https://base-image-factory.dev/builders/factory-publish@v1"
BUILD_TYPE = "https://base-image-factory.dev/build-types/buildx-oci@v1"


@dataclass(frozen=True)
class Attestor:
    signer: Signing
    dest: Destination
    revision: Revision
    run_id: str
    author: str = "base-image factory"  # the VEX documents' author: the org (factory.yaml vendor)
    images_dir: Path | None = None  # the committed contexts (settings.images_dir): the provenance's contextDigest
    source_url: str = ""  # the source repository (https, no userinfo): settings.source_url, else the git remote
    helper_image: str = ""  # settings.helper_image, pulled by the builds of images without a shell

    def sboms(self, out: VariantResult, sboms: Mapping[str, Path]) -> list[dict[str, str]]:
        """Attest each platform's SBOM file on that platform's manifest."""
        done = []
        for platform, path in sorted(sboms.items()):
            ref = self.dest.by_digest(out.platforms[platform])
            self.signer.attest(ref, path, labels.CYCLONEDX)
            done.append(sbom_entry(platform, ref))
        return done

    def scans(self, out: VariantResult) -> list[dict[str, str]]:
        """Each platform's scan record (scanned or not, and why) as cosign's vuln predicate on its manifest."""
        done = []
        for platform, record in sorted((out.gates.get("vulnerabilities") or {}).items()):
            ref = self.dest.by_digest(out.platforms[platform])
            self.signer.attest(ref, attest.vuln_predicate(record, builder_id=BUILDER_ID, run_id=self.run_id),
                               labels.VULN, replace=True)
            done.append({"type": labels.VULN, "platform": platform, "subject": ref})
        return done

    def vex(self, image: str, out: VariantResult, waivers: Iterable[Ignore]) -> list[dict[str, str]]:
        """The waivers in force for ``image`` as one OpenVEX document, attested on each platform manifest
        (none when no waiver applies)."""
        applying = [w for w in waivers if w.for_image(image) and not w.expired]
        if not applying:
            return []
        doc = vex.document(repository=self.dest.name, index_digest=out.index_digest, platform_digests=out.platforms,
                           waivers=applying, author=self.author, now=datetime.now(UTC))
        done = []
        for platform, digest in sorted(out.platforms.items()):
            ref = self.dest.by_digest(digest)
            self.signer.attest(ref, doc, labels.OPENVEX)
            done.append({"type": labels.OPENVEX, "platform": platform, "subject": ref})
        return done

    def index(self, m: Manifest, out: VariantResult, checks: Iterable[CheckResult], base_ref: str,
              build_args: Mapping[str, str], started: datetime, *, security: SecurityFixes | None = None,
              packages: Mapping[str, Sequence[dict[str, Any]]] | None = None,
              platform_provenance: bool = True) -> list[dict[str, str]]:
        """The conformance, provenance and index SBOM attestations on the index, and the provenance of each
        platform image (``platform_provenance``; a merge's platform jobs attested their own).
        ``security``: the security-fixes check of the build, recorded in both (None: policy off).
        ``packages``: per platform the packages the build installed (``build_packages``); None (a merge,
        which has no layout): the security fixes the record says were applied."""
        index_ref = self.dest.by_digest(out.index_digest)
        conformance = attest.conformance_predicate(
            image=out.tag_prefix, version=out.version, platform_results=by_platform(checks),
            policy_rules=[r.id for r in policy.RULES], waivers=[asdict(w) for w in m.waivers],
            factory_version=__version__, security_fixes=security.to_json() if security else None,
            vulnerability_scan=scan.summary(out.gates.get("vulnerabilities") or {}),
            scan_rule=policy.VULNERABILITY.id)
        self.signer.attest(index_ref, conformance, labels.CONFORMANCE_PREDICATE_TYPE)
        # The security fixes the record says were applied: the suite each came from, added to the same package's
        # descriptor; in a merge (no layout to read) they are the packages.
        recorded = {str(d["uri"]): d for d in resolved_dependencies(security, _archive_distro(m))} if security else {}
        if packages is None:
            packages = dict.fromkeys(out.platforms, tuple(recorded.values()))
        packages = {p: [_annotated(d, recorded) for d in found] for p, found in packages.items()}
        done = [{"type": labels.CONFORMANCE_PREDICATE_TYPE, "subject": index_ref}]
        platforms = {p: d for p, d in out.platforms.items() if d != out.index_digest} if platform_provenance else {}
        # Each platform's provenance goes to its own digest's attestations, so those cosign runs can go at
        # once; the index's attestations share one, and each cosign run rewrites it: those go one by one.
        with ThreadPoolExecutor(max_workers=max(1, len(platforms))) as pool:
            running = [pool.submit(self.signer.attest, self.dest.by_digest(d),
                                   self._provenance(m, out, [p], build_args, started, base_ref, packages),
                                   labels.SLSA_PROVENANCE_TYPE) for p, d in sorted(platforms.items())]
            self.signer.attest(index_ref, self._provenance(m, out, sorted(out.platforms), build_args, started,
                                                           base_ref, packages, byproducts=True),
                               labels.SLSA_PROVENANCE_TYPE)  # the URI, not cosign's name: see factory.trust.attest
            done.append({"type": labels.SLSA_PROVENANCE_TYPE, "subject": index_ref})
            if out.index_digest not in out.platforms.values():  # a one-platform image's own SBOM is on its digest
                self.signer.attest(index_ref, sbom.index_sbom(name=self.dest.name, index_digest=out.index_digest,
                                                              platforms=out.platforms, tool_version=__version__),
                                   labels.CYCLONEDX)
                done.append({"type": labels.CYCLONEDX, "subject": index_ref})
            for job in running:
                job.result()  # raises the first platform's failure, as a serial run would
        done += [{"type": labels.SLSA_PROVENANCE_TYPE, "platform": p, "subject": self.dest.by_digest(d)}
                 for p, d in sorted(platforms.items())]
        return done

    def _provenance(self, m: Manifest, out: VariantResult, platforms: list[str], build_args: Mapping[str, str],
                    started: datetime, base_ref: str, packages: Mapping[str, Sequence[dict[str, Any]]], *,
                    byproducts: bool = False) -> dict[str, Any]:
        """The provenance of ``platforms``' images (all of them: the index's, with the index as byproduct)."""
        return attest.slsa_provenance(
            builder_id=BUILDER_ID, build_type=BUILD_TYPE, manifest=manifest_doc(m),
            context_digest=self._context_digest(m, out), platforms=platforms, build_args=build_args,
            invocation_id=self.run_id, started=started, finished=datetime.now(UTC),
            dependencies=self._dependencies(m, base_ref, [d for p in platforms for d in packages.get(p, ())]),
            byproducts={self.dest.name: out.index_digest} if byproducts else {})

    def _context_digest(self, m: Manifest, out: VariantResult) -> str:
        """The committed context's digest of this variant (not the fingerprint, which also covers the base and
        the platforms: those are the provenance's dependencies and parameters)."""
        if self.images_dir is None:
            return ""
        variant = labels.DEBUG if out.tag_prefix == versioning.tag_prefix(m.name, debug=True) else labels.PROD
        return plan.context_digest(self.images_dir / m.name, variant)

    def _dependencies(self, m: Manifest, base_ref: str, packages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """What the build resolved: the git source and commit, every image it pulled (the base; for an image
        without a shell, the helper that prepares its files), the packages it installed."""
        source = attest.source_dependency(self.source_url, self.revision.sha)
        images = [attest.image_dependency(base_ref, "base")]
        if not m.has_shell and self.helper_image:
            images.append(attest.image_dependency(self.helper_image, "helper"))
        unique = {str(p.get("uri")): dict(p) for p in packages}
        return [*([source] if source else []), *images, *(unique[k] for k in sorted(unique))]


def build_packages(m: Manifest, layout: OciLayout,
                   layers: Mapping[str, Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per platform, the packages the build installed or upgraded, as SLSA resource descriptors (purl ``uri``):
    the package database of the built image against that of its base's layers (``layers``: the gates'
    measurement, with the base's layer count). Exact versions, read from the image itself; none for an image
    without a package manager."""
    database = PACKAGE_DATABASES.get(m.distro)
    if database is None or not m.has_shell:
        return {}
    out = {}
    for platform in layout.platforms:
        stack = [rootfs.Layer(d.digest, d.size, d.media_type) for d in layout.layers(platform)]
        base_count = int((layers.get(platform) or {}).get("base") or 0)
        before = {k: p.version for k, p in
                  _database(m.distro, rootfs.read_file(stack[:base_count], _opener(layout), database)).items()}
        after = _database(m.distro, rootfs.read_file(stack, _opener(layout), database))
        out[platform] = [{"uri": p.purl, "name": p.name,
                          "annotations": {"platform": platform, **({"from": before[key]} if key in before else {})}}
                         for key, p in sorted(after.items())
                         if before.get(key) != p.version]
    return out


def _annotated(descriptor: Mapping[str, Any], recorded: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``descriptor`` with the annotations (from, suite) of the recorded fix of the same purl, if any."""
    fix = recorded.get(str(descriptor.get("uri")))
    if fix is None:
        return dict(descriptor)
    return {**descriptor, "annotations": {**(fix.get("annotations") or {}), **(descriptor.get("annotations") or {})}}


def _database(distro: str, content: bytes | None) -> dict[tuple[str, str], InstalledPackage]:
    """(name, arch) -> the package, from one package database's bytes (None: the image has none)."""
    return {(p.name, p.arch): p for p in package_database(distro, content)} if content is not None else {}


def _opener(layout: OciLayout) -> rootfs.LayerOpener:
    def open_layer(layer: rootfs.Layer) -> AbstractContextManager[IO[bytes]]:
        return layout.blob(layer.digest).open("rb")
    return open_layer


def sbom_entry(platform: str, ref: str) -> dict[str, str]:
    """The report's line for one SBOM attestation."""
    return {"type": labels.CYCLONEDX, "platform": platform, "subject": ref}


def by_platform(checks: Iterable[CheckResult]) -> dict[str, list[CheckResult]]:
    out: dict[str, list[CheckResult]] = {}
    for c in checks:
        out.setdefault(c.platform, []).append(c)
    return out


def manifest_doc(m: Manifest) -> dict[str, Any]:
    """The manifest as the provenance's external parameters show it."""
    return {"name": m.name, "version": m.version, "path": m.path.name, "distro": m.distro,
            "upstream": asdict(m.upstream) if m.upstream else None, "parent": m.parent}


def _archive_distro(m: Manifest) -> str:
    """The purl namespace of the packages the archives gave: debian, ubuntu, alpine (distroless: Debian's)."""
    return "debian" if m.distro == "distroless" else m.distro
