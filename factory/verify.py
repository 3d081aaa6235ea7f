"""`factory verify REF`: what an app team checks before trusting a base image.

For a tag or a digest: the cosign signature of the index, a CycloneDX SBOM attestation on every
platform, the hardening-conformance attestation (and that it says "passed"), the SLSA provenance,
and the base.digest label against the manifest that built it, when that manifest is at hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from factory.attest import CONFORMANCE_PREDICATE_TYPE
from factory.errors import FactoryError
from factory.model import Manifest
from factory.registry import Ref
from factory.sign import Signer, VerificationFailed


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    ref: str
    index_digest: str = ""
    platforms: dict[str, str] = field(default_factory=dict)  # platform -> manifest digest
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.findings) and all(f.ok for f in self.findings)

    def render(self) -> str:
        lines = [f"{self.ref} -> {self.index_digest}"]
        lines += [f"{'ok' if f.ok else 'FAILED':6} {f.check:34} {f.detail}" for f in self.findings]
        return "\n".join(lines)


class NotVerified(FactoryError):
    def __init__(self, report: VerifyReport) -> None:
        failed = ", ".join(f.check for f in report.findings if not f.ok)
        super().__init__(f"{report.ref}: not verified: {failed}")


def verify_image(ref_text: str, signer: Signer, registry_for: Callable, manifests: Mapping[str, Manifest],
                 *, public_key: Path | None = None) -> VerifyReport:
    ref = Ref.parse(ref_text)
    registry = registry_for(ref.registry)
    found = registry.head_manifest(ref.repository, ref.reference)
    report = VerifyReport(ref_text)
    if found is None:
        report.findings.append(Finding("exists", False, "not found in the registry"))
        return report
    report.index_digest = found.digest
    repo = f"{ref.registry}/{ref.repository}"
    index_ref = f"{repo}@{found.digest}"

    def check(name: str, fn: Callable[[], str]) -> None:
        try:
            report.findings.append(Finding(name, True, fn()))
        except VerificationFailed as e:
            report.findings.append(Finding(name, False, e.message))

    check("signature (index)", lambda: _count(signer.verify(index_ref, public_key=public_key), "signature"))
    raw, _, _ = registry.get_manifest(ref.repository, found.digest)
    platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
                 for m in json.loads(raw).get("manifests", []) if m.get("platform", {}).get("os") != "unknown"}
    report.platforms = platforms
    for platform, digest in sorted(platforms.items()):
        check(f"sbom attestation ({platform})",
              lambda d=digest: _count(signer.verify_attestation(f"{repo}@{d}", "cyclonedx", public_key=public_key),
                                      "CycloneDX SBOM"))
    check("hardening conformance", lambda: _conformance(signer, index_ref, public_key))
    check("slsa provenance", lambda: _count(signer.verify_attestation(index_ref, "slsaprovenance1",
                                                                     public_key=public_key), "SLSA v1 provenance"))
    labels = registry.labels(ref.repository, found.digest)
    report.findings.append(_base_label_finding(labels, manifests))
    return report


def _count(items: list, what: str) -> str:
    if not items:
        raise VerificationFailed(f"no {what} verified")
    return f"{len(items)} {what}(s) verified"


def _conformance(signer: Signer, index_ref: str, public_key: Path | None) -> str:
    statements = signer.verify_attestation(index_ref, CONFORMANCE_PREDICATE_TYPE, public_key=public_key)
    predicate = statements[-1].get("predicate", {})
    if not predicate.get("passed"):
        raise VerificationFailed("the conformance attestation does not say passed")
    checks = sum(len(p.get("checks", [])) for p in predicate.get("platforms", {}).values())
    return f"passed: {checks} checks on {', '.join(sorted(predicate.get('platforms', {})))}"


def _base_label_finding(labels: Mapping[str, str], manifests: Mapping[str, Manifest]) -> Finding:
    base = labels.get("org.opencontainers.image.base.digest", "")
    if not base:
        return Finding("base.digest label", False, "missing")
    m = manifests.get(labels.get("org.opencontainers.image.title", ""))
    if m is None or m.upstream is None:  # a parent's digest changes per publish: presence is what we can check
        return Finding("base.digest label", True, base)
    ok = base == m.upstream.digest
    return Finding("base.digest label", ok, base + ("" if ok else f" (manifest pins {m.upstream.digest})"))


def cosign_commands(report: VerifyReport, signer: Signer, public_key: Path | None = None) -> list[str]:
    """The plain cosign commands that check the same (built by the same code that runs them)."""
    parsed = Ref.parse(report.ref)
    repo = f"{parsed.registry}/{parsed.repository}"
    index_ref = f"{repo}@{report.index_digest}"
    argvs = [signer.verify_argv(index_ref, public_key=public_key),
             signer.verify_attestation_argv(index_ref, CONFORMANCE_PREDICATE_TYPE, public_key=public_key),
             signer.verify_attestation_argv(index_ref, "slsaprovenance1", public_key=public_key)]
    argvs += [signer.verify_attestation_argv(f"{repo}@{d}", "cyclonedx", public_key=public_key)
              for _, d in sorted(report.platforms.items())]
    return [" ".join(a for a in argv if a not in ("--output", "json")) for argv in argvs]
