"""The signed attestations of a published variant: a CycloneDX SBOM on each platform manifest, and on
the index the hardening conformance (which checks passed where) and the SLSA provenance."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from factory import __version__
from factory.adapters.gitinfo import Revision
from factory.build.imagetest import CheckResult
from factory.core import labels
from factory.core.model import Manifest
from factory.publish.destination import Destination
from factory.publish.report import VariantResult
from factory.security.record import SecurityFixes, resolved_dependencies
from factory.spec import policy
from factory.trust import attest
from factory.trust.sign import Signing

BUILDER_ID = "https://base-image-factory.dev/builders/factory-publish@v1"
BUILD_TYPE = "https://base-image-factory.dev/build-types/buildx-oci@v1"


@dataclass(frozen=True)
class Attestor:
    signer: Signing
    dest: Destination
    revision: Revision
    run_id: str

    def sboms(self, out: VariantResult, sboms: Mapping[str, Path]) -> list[dict[str, str]]:
        """Attest each platform's SBOM file on that platform's manifest."""
        done = []
        for platform, path in sorted(sboms.items()):
            ref = self.dest.by_digest(out.platforms[platform])
            self.signer.attest(ref, path, labels.CYCLONEDX)
            done.append(sbom_entry(platform, ref))
        return done

    def index(self, m: Manifest, out: VariantResult, checks: Iterable[CheckResult], base_ref: str,
              build_args: Mapping[str, str], started: datetime, *,
              security: SecurityFixes | None = None) -> list[dict[str, str]]:
        """The conformance and provenance attestations on the index (for one platform: its manifest).
        ``security``: the security-fixes check of the build, recorded in both (None: policy off)."""
        index_ref = self.dest.by_digest(out.index_digest)
        conformance = attest.conformance_predicate(
            image=out.tag_prefix, version=out.version, platform_results=by_platform(checks),
            policy_rules=[r.id for r in policy.RULES], waivers=[asdict(w) for w in m.waivers],
            factory_version=__version__, security_fixes=security.to_json() if security else None)
        self.signer.attest(index_ref, conformance, labels.CONFORMANCE_PREDICATE_TYPE)
        provenance = attest.slsa_provenance(
            builder_id=BUILDER_ID, build_type=BUILD_TYPE, manifest=manifest_doc(m),
            context_digest=out.fingerprint, base_ref=base_ref, platforms=sorted(out.platforms),
            build_args=build_args, invocation={"run_id": self.run_id, "revision": self.revision.sha},
            started=started, finished=datetime.now(UTC),
            subjects={self.dest.name: out.index_digest},
            packages=resolved_dependencies(security, _archive_distro(m)) if security else ())
        self.signer.attest(index_ref, provenance, attest.SLSA_COSIGN_TYPE)
        return [{"type": labels.CONFORMANCE_PREDICATE_TYPE, "subject": index_ref},
                {"type": attest.SLSA_COSIGN_TYPE, "subject": index_ref}]


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
