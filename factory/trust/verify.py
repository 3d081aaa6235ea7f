"""`factory verify REF`: what an app team checks before trusting a base image.

For a tag or a digest: the cosign signature of the index and of each platform manifest, a
CycloneDX SBOM attestation on every platform, the hardening-conformance attestation (that it says
"passed" and covers exactly the platform manifests of this index), the SLSA provenance, and the
base.digest label: against the manifest that built it when that manifest is at hand, and, when the
base is another org image in the same repository (a parent, or the prod image of a debug variant),
its signature.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

from factory.build import scan
from factory.core import labels
from factory.core.errors import ManifestError, VerificationFailed
from factory.core.model import Manifest
from factory.core.reference import Ref
from factory.oci.layout import Descriptor, platform_string
from factory.oci.registry import Registry
from factory.spec import manifest
from factory.spec.config import Settings
from factory.trust.attest import SLSA_COSIGN_TYPE
from factory.trust.sign import KeylessIdentity, Signer, Signing


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
    conformance: Mapping[str, Any] | None = None  # the verified conformance predicate that passed

    @property
    def ok(self) -> bool:
        return bool(self.findings) and all(f.ok for f in self.findings)

    def render(self) -> str:
        lines = [f"{self.ref} -> {self.index_digest}"]
        lines += [f"{'ok' if f.ok else 'FAILED':6} {f.check:34} {f.detail}" for f in self.findings]
        return "\n".join(lines)


def local_manifests(settings: Settings) -> Mapping[str, Manifest]:
    """The manifests at hand, if they load: verifying needs none, the label check just has less to compare."""
    try:
        return manifest.load_all(settings)
    except ManifestError:
        return {}


class Keys(TypedDict, total=False):
    """What the signatures must verify with: a public key, or a keyless identity (the signer's
    keyword arguments)."""

    public_key: Path | str | None
    identity: KeylessIdentity | None


def verify_image(ref_text: str, signer: Signing, registry_for: Callable[[str], Registry],
                 manifests: Mapping[str, Manifest], *, public_key: Path | str | None = None,
                 identity: KeylessIdentity | None = None) -> VerifyReport:
    """Every check runs, so that the report names every failure, not just the first. A tag is
    resolved to its digest once, and everything after works on that digest."""
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
    keys: Keys = {"public_key": public_key, "identity": identity}

    def check(name: str, fn: Callable[[], str]) -> None:
        try:
            report.findings.append(Finding(name, True, fn()))
        except VerificationFailed as e:
            report.findings.append(Finding(name, False, e.message))

    report.platforms = _platforms(registry, ref.repository, found)
    check("signature (index)", partial(_signatures, signer, index_ref, keys))
    for platform, digest in sorted(report.platforms.items()):
        if digest != found.digest:  # a single-platform manifest is its own "index"
            check(f"signature ({platform})", partial(_signatures, signer, f"{repo}@{digest}", keys))
        check(f"sbom attestation ({platform})",
              partial(_attested, signer, f"{repo}@{digest}", labels.CYCLONEDX, "CycloneDX SBOM", keys))
    def conformance() -> str:
        detail, report.conformance = passing_conformance(signer, index_ref, report.platforms, keys)
        return detail

    check("hardening conformance", conformance)
    check("slsa provenance", partial(_attested, signer, index_ref, SLSA_COSIGN_TYPE, "SLSA v1 provenance", keys))
    record = latest_scan(signer, repo, report.platforms, report.conformance, keys)
    # "NOT scanned" is said, not failed: the policy that published it chose warn. A blocking finding in the
    # newest scan fails: the image is known to be vulnerable now.
    blocking = sorted({b for p in (record.get("platforms") or {}).values() for b in p.get("blocking") or []})
    report.findings.append(Finding("vulnerability scan", not blocking,
                                   scan.describe(record) + (f"; BLOCKING: {', '.join(blocking)}" if blocking else "")))
    found_labels = registry.labels(ref.repository, found.digest)
    report.findings.append(_base_label_finding(found_labels, manifests))
    base_repo = found_labels.get(labels.BASE_NAME_LABEL, "").partition("@")[0]
    if report.findings[-1].ok and base_repo == repo:
        base_ref = f"{repo}@{found_labels[labels.BASE_DIGEST_LABEL]}"
        check("base image signature", lambda: "the org base image " + _signatures(signer, base_ref, keys))
    return report


def latest_scan(signer: Signing, repo: str, platforms: Mapping[str, str], conformance: Mapping[str, Any] | None,
                keys: Keys) -> dict[str, Any]:
    """The image's newest verified scan record (``factory.build.scan.summary``): per platform, the newest
    vuln attestation (publish or `factory scan`), else the conformance predicate's record, else none."""
    at_publish = (conformance or {}).get("vulnerabilityScan") or {}
    per_platform: dict[str, Any] = {}
    for platform, digest in sorted(platforms.items()):
        try:
            statements = signer.verify_attestation(f"{repo}@{digest}", labels.VULN, **keys)
        except VerificationFailed:
            statements = []
        results = [((st.get("predicate") or {}).get("metadata") or {}, (st.get("predicate") or {}).get("scanner") or {})
                   for st in statements]
        newest = max(results, key=lambda r: str(r[0].get("scanFinishedOn") or ""), default=None)
        if newest and isinstance(newest[1].get("result"), dict):
            per_platform[platform] = newest[1]["result"]
        elif platform in (at_publish.get("platforms") or {}):
            per_platform[platform] = at_publish["platforms"][platform]
    if not per_platform:
        return {"status": scan.NOT_SCANNED, "reason": "no verified scan record", "platforms": {}}
    return scan.summary(per_platform)


def _platforms(registry: Registry, repository: str, found: Descriptor) -> dict[str, str]:
    """platform -> manifest digest: the index's images (BuildKit attestation entries skipped), or
    the manifest itself when the reference names a single-platform image."""
    raw, _, _ = registry.get_manifest(repository, found.digest)
    doc = json.loads(raw)
    if "manifests" in doc:
        return {platform_string(m["platform"]): m["digest"] for m in doc["manifests"]
                if m.get("platform", {}).get("os") not in (None, "unknown")}
    config = registry.image_config(repository, found.digest)
    return {platform_string(config): found.digest}


def _signatures(signer: Signing, ref: str, keys: Keys) -> str:
    return _count(signer.verify(ref, **keys), "signature")


def _attested(signer: Signing, ref: str, predicate_type: str, what: str, keys: Keys) -> str:
    return _count(signer.verify_attestation(ref, predicate_type, **keys), what)


def _count(items: Sequence[object], what: str) -> str:
    if not items:
        raise VerificationFailed(f"no {what} verified")
    return f"{len(items)} {what}(s) verified"


def _conformance(signer: Signing, index_ref: str, platforms: Mapping[str, str], keys: Keys) -> str:
    return passing_conformance(signer, index_ref, platforms, keys)[0]


def passing_conformance(signer: Signing, index_ref: str, platforms: Mapping[str, str],
                        keys: Keys) -> tuple[str, Mapping[str, Any]]:
    """One verified conformance statement must say passed, for exactly the platform manifests of
    this index: checks that ran on other images prove nothing about these. Returns the detail and that
    statement's predicate (its security-fixes record is read by ``factory.consume.freshness``)."""
    statements = signer.verify_attestation(index_ref, labels.CONFORMANCE_PREDICATE_TYPE, **keys)
    problems = []
    for statement in statements:
        predicate = statement.get("predicate") or {}
        tested = {p: (r or {}).get("digest") for p, r in (predicate.get("platforms") or {}).items()}
        if tested != dict(platforms):
            problems.append(f"it covers {_describe(tested)}, the index has {_describe(platforms)}")
        elif not predicate.get("passed") or not all(r.get("passed") for r in predicate["platforms"].values()):
            failed = sorted(c.get("name", "?") for r in predicate["platforms"].values()
                            for c in r.get("checks", []) if not c.get("passed"))
            problems.append(f"it does not say passed (failed: {', '.join(failed) or 'none listed'})")
        else:
            checks = sum(len(r.get("checks", [])) for r in predicate["platforms"].values())
            return f"passed: {checks} checks on {', '.join(sorted(tested))}", predicate
    raise VerificationFailed("the conformance attestation " + "; ".join(problems))


def _describe(platforms: Mapping[str, str | None]) -> str:
    return ", ".join(f"{p} {str(d)[:19]}" for p, d in sorted(platforms.items())) or "no platforms"


def _base_label_finding(found: Mapping[str, str], manifests: Mapping[str, Manifest]) -> Finding:
    base = found.get(labels.BASE_DIGEST_LABEL, "")
    if not base:
        return Finding("base.digest label", False, "missing")
    m = manifests.get(found.get(labels.TITLE_LABEL, ""))
    if m is None or m.upstream is None:  # a parent's digest changes per publish: presence is what we can check
        return Finding("base.digest label", True, base)
    ok = base == m.upstream.digest
    return Finding("base.digest label", ok, base + ("" if ok else f" (manifest pins {m.upstream.digest})"))


def cosign_commands(report: VerifyReport, signer: Signer, public_key: Path | str | None = None,
                    identity: KeylessIdentity | None = None) -> list[str]:
    """The plain cosign commands that check the same (built by the same code that runs them)."""
    parsed = Ref.parse(report.ref)
    repo = f"{parsed.registry}/{parsed.repository}"
    index_ref = f"{repo}@{report.index_digest}"
    keys: Keys = {"public_key": public_key, "identity": identity}
    argvs = [signer.verify_argv(index_ref, **keys),
             signer.verify_attestation_argv(index_ref, labels.CONFORMANCE_PREDICATE_TYPE, **keys),
             signer.verify_attestation_argv(index_ref, SLSA_COSIGN_TYPE, **keys)]
    argvs += [signer.verify_attestation_argv(f"{repo}@{d}", labels.CYCLONEDX, **keys)
              for _, d in sorted(report.platforms.items())]
    return [shlex.join(a for a in argv if a not in ("--output", "json")) for argv in argvs]
