"""`factory scan`: the current published versions again, with today's vulnerability database.

A CVE disclosed after publish changes no fingerprint, so no rebuild would ever look at it. For each
named manifest (default: all; prod variants, and debug variants when they exist) the current version's
platform manifests are rescanned from their verified SBOM attestations (``trivy sbom``: no image pull),
gated with today's ``vuln-ignore.yaml`` (an expired waiver waives nothing), compared with what was found
at publish (the conformance attestation's ``vulnerabilityScan``), and the result attested on each
platform manifest as cosign's vuln predicate, where the catalog and `factory verify` read it. Nothing is
retagged: the fix is a rebuild, which the nightly's plan lists with the reason ``vulnerable``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from factory.adapters.tools import Runner
from factory.build import scan
from factory.core import labels, log
from factory.core.errors import FactoryError, VulnerableImages
from factory.core.model import Manifest
from factory.oci.registry import Registry, platform_digests
from factory.security.check import current_versions
from factory.spec import manifest
from factory.spec.config import Settings
from factory.trust import attest, sign
from factory.trust.sign import Signing

BUILDER_ID = "https://base-image-factory.dev/builders/factory-scan@v1"


class SbomScanner(Protocol):
    """What a rescan needs of a scanner (``scan.TrivyScanner``): one published image's SBOM, scanned."""

    def scan_sbom(self, sbom_file: Path, what: str) -> scan.ScanReport: ...


@dataclass(frozen=True)
class PlatformScan:
    platform: str
    digest: str
    record: Mapping[str, Any]  # scan.GateResult.as_dict()
    new: tuple[str, ...] = ()  # found now, not at publish
    error: str = ""

    @property
    def blocking(self) -> list[str]:
        return sorted({v["id"] for v in self.record.get("blocking") or []})


@dataclass(frozen=True)
class ImageScan:
    image: str  # the tag prefix (name, or name-debug)
    manifest: str
    version: str
    index_digest: str
    platforms: tuple[PlatformScan, ...] = ()
    error: str = ""

    @property
    def blocking(self) -> list[str]:
        return sorted({i for p in self.platforms for i in p.blocking})

    @property
    def scanned(self) -> bool:
        return bool(self.platforms) and all(p.record.get("status") == scan.SCANNED for p in self.platforms)


@dataclass
class RescanRun:
    images: list[ImageScan] = field(default_factory=list)
    unpublished: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the run's own (the nightly keeps going without it)

    def vulnerable(self) -> dict[str, str]:
        """manifest name -> the current version with a blocking finding (the plan's ``vulnerable``)."""
        return {i.manifest: i.version for i in self.images if i.blocking and i.image == i.manifest}

    def to_json(self) -> dict[str, Any]:
        return {"images": [{"image": i.image, "version": i.version, "index_digest": i.index_digest,
                            "status": scan.SCANNED if i.scanned else scan.NOT_SCANNED, "blocking": i.blocking,
                            "error": i.error,
                            "platforms": [{"platform": p.platform, "digest": p.digest, "new": list(p.new),
                                           "error": p.error, **p.record} for p in i.platforms]}
                           for i in self.images],
                "unpublished": self.unpublished, "errors": self.errors}

    def raise_for_outcome(self, db_unavailable: str) -> None:
        """Exit non-zero on a blocking finding, an image or platform not rescanned, or (policy fail) a platform
        not scanned for want of a database."""
        failed = [f"{i.image} {i.version}: {i.error or ', '.join(i.blocking) or 'not scanned'}" for i in self.images
                  if i.error or i.blocking or any(p.error for p in i.platforms)
                  or (not i.scanned and db_unavailable == "fail")]
        if failed:
            raise VulnerableImages(failed)

    def lines(self) -> list[str]:
        out = []
        for i in self.images:
            head = f"{i.image} {i.version}"
            if i.error:
                out.append(f"{head}: ERROR {i.error}")
                continue
            for p in i.platforms:
                if p.error:
                    out.append(f"{head} {p.platform}: ERROR {p.error}")
                    continue
                line = f"{head} {p.platform}: {scan.describe(scan.summary({p.platform: p.record}))}"
                if p.new:
                    line += f"; NEW since publish: {', '.join(p.new)}"
                if p.blocking:
                    line += f"; BLOCKING: {', '.join(p.blocking)} (rebuild: the nightly plans it as 'vulnerable')"
                out.append(line)
        out += [f"{u}: not published" for u in self.unpublished]
        return out + self.errors


class Rescanner:
    def __init__(self, *, registry: Registry, repository: str, target: str, signer: Signing,
                 scanner: SbomScanner, manifests: Mapping[str, Manifest], ignores: Sequence[scan.Ignore],
                 fail_on: Sequence[str], db_unavailable: Literal["fail", "warn"], run_id: str,
                 public_key: Path | None = None) -> None:
        self.registry, self.repository, self.target = registry, repository, target
        self.signer, self.scanner, self.manifests = signer, scanner, manifests
        self.ignores, self.fail_on, self.db_unavailable = list(ignores), tuple(fail_on), db_unavailable
        self.run_id, self.public_key = run_id, public_key
        self.log = log.get("scan")

    def run(self, names: Sequence[str] = ()) -> RescanRun:
        found, unpublished = current_versions(self.manifests, names, self.registry.list_tags(self.repository))
        return RescanRun([self._image(c.manifest, c.prefix, c.tag, c.version) for c in found], unpublished)

    def _image(self, m: Manifest, prefix: str, tag: str, version: str) -> ImageScan:
        self.log.info("rescan", image=prefix, version=version)
        try:
            index_digest, digests = platform_digests(self.registry, self.repository, tag)
        except FactoryError as e:
            return ImageScan(prefix, m.name, version, "", error=e.message)
        before = self._found_at_publish(index_digest)
        platforms = tuple(self._platform(m.name, p, d, before.get(p)) for p, d in sorted(digests.items()))
        return ImageScan(prefix, m.name, version, index_digest, platforms)

    def _found_at_publish(self, index_digest: str) -> dict[str, set[str]]:
        """platform -> the ids the publish-time scan found, from the verified conformance attestation."""
        try:
            statements = self.signer.verify_attestation(f"{self.target}@{index_digest}",
                                                        labels.CONFORMANCE_PREDICATE_TYPE, public_key=self.public_key)
        except FactoryError:
            return {}
        record = (statements[-1].get("predicate") or {}).get("vulnerabilityScan") or {}
        return {p: set(d.get("found") or []) for p, d in (record.get("platforms") or {}).items()
                if d.get("status") == scan.SCANNED}

    def _platform(self, name: str, platform: str, digest: str, before: set[str] | None) -> PlatformScan:
        ref = f"{self.target}@{digest}"
        try:
            document = sign.verified_sbom(self.signer, ref, self.public_key)
            with tempfile.TemporaryDirectory(prefix="factory-rescan-") as tmp:
                path = Path(tmp) / "sbom.cdx.json"
                path.write_text(json.dumps(document))
                report = self.scanner.scan_sbom(path, f"{name} {platform}")
            result = scan.gate(report, image=name, fail_on=self.fail_on, ignores=self.ignores,
                               db_unavailable=self.db_unavailable)
            record = result.as_dict()
            self.signer.attest(ref, attest.vuln_predicate(record, builder_id=BUILDER_ID, run_id=self.run_id),
                               labels.VULN, replace=True)
        except FactoryError as e:
            self.log.error("rescan failed", image=name, platform=platform, error=e.message)
            return PlatformScan(platform, digest, {}, error=e.message)
        new = tuple(sorted(set(record["found"]) - before)) if before is not None else ()
        if new:
            self.log.warning("new vulnerabilities since publish", image=name, platform=platform, ids=list(new))
        return PlatformScan(platform, digest, record, new)


def rescanner(settings: Settings, runner: Runner, registry_for: Callable[[str], Registry], scanner: SbomScanner,
              ignores: Sequence[scan.Ignore], run_id: str, *, public_key: Path | None = None) -> Rescanner:
    db_unavailable: Literal["fail", "warn"] = "warn" if settings.policy.scanner_db_unavailable == "warn" else "fail"
    return Rescanner(registry=registry_for(settings.registry), repository=settings.repository, target=settings.target,
                     signer=sign.Signer(settings, runner), scanner=scanner, manifests=manifest.load_all(settings),
                     ignores=ignores, fail_on=settings.policy.fail_on_severities, db_unavailable=db_unavailable,
                     run_id=run_id, public_key=public_key)
