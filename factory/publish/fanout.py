"""Fan-out: one job per platform builds, tests, pushes, signs and attests its image by digest and tags
nothing; `factory merge` then checks every platform image before it makes the index that is tagged.

Merge trusts nothing a job says: each platform image must be in the registry, carry this version
and fingerprint in its labels, and have a verified signature, SBOM attestation and passing
conformance attestation. The security-fixes records of the platform jobs' conformance attestations
become the merged index's record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from factory.build.imagetest import CheckResult
from factory.core import labels, versioning
from factory.core.errors import StepFailed
from factory.core.model import Manifest
from factory.publish.destination import Destination
from factory.security.record import KEY as record_key
from factory.security.record import Policy, SecurityFixes
from factory.trust.sign import Signing


def check_platform(m: Manifest, platform: str) -> None:
    """A fan-out job builds one of the manifest's platforms, never another."""
    if platform not in [str(p) for p in m.platforms]:
        raise StepFailed(m.name, "plan", f"{platform} is not one of the manifest's platforms",
                         hint=f"platforms: {', '.join(map(str, m.platforms))}")


def check_digests(m: Manifest, digests: Mapping[str, str]) -> None:
    """Merge needs one digest per platform of the manifest: no more, no fewer."""
    wanted = [str(p) for p in m.platforms]
    if sorted(digests) != sorted(wanted):
        raise StepFailed(m.name, "merge", f"got digests for {', '.join(sorted(digests)) or 'nothing'}, "
                         f"the manifest builds {', '.join(wanted)}")


def verified_checks(m: Manifest, digests: Mapping[str, str], fingerprint: str, version: versioning.Version,
                    dest: Destination, signer: Signing) -> tuple[list[CheckResult], SecurityFixes | None]:
    """The checks each platform image passed, read from its verified conformance attestation, and the
    security-fixes records of those attestations made one (None when no platform job recorded one)."""
    checks: list[CheckResult] = []
    records: list[SecurityFixes] = []
    for platform, digest in sorted(digests.items()):
        _check_labels(m, platform, digest, fingerprint, version, dest)
        found, record = _verified_platform_checks(m, platform, digest, dest, signer)
        checks += found
        records += [record] if record else []
    return checks, merged_record(records)


def merged_record(records: Sequence[SecurityFixes]) -> SecurityFixes | None:
    """The platform jobs' records as one: every platform, the strictest policy, the latest check time."""
    if not records:
        return None
    policy: Policy = "require" if any(r.policy == "require" for r in records) else "warn"
    platforms = {p: f for r in records for p, f in r.platforms.items()}
    return SecurityFixes(policy, max(r.checked for r in records), platforms)


def _check_labels(m: Manifest, platform: str, digest: str, fingerprint: str, version: versioning.Version,
                  dest: Destination) -> None:
    if dest.registry.head_manifest(dest.repository, digest) is None:
        raise StepFailed(m.name, "merge", f"{digest} is not in {dest.name}", platform=platform,
                         hint=f"push it first: factory publish {m.name} --platform {platform} "
                              "--push-by-digest-only")
    found = dest.registry.labels(dest.repository, digest)
    if found.get(labels.FINGERPRINT_LABEL) != fingerprint:
        raise StepFailed(m.name, "merge", f"{digest} was built from other inputs (fingerprint "
                         f"{found.get(labels.FINGERPRINT_LABEL)}, expected {fingerprint})", platform=platform)
    if found.get(labels.VERSION_LABEL) != str(version):
        raise StepFailed(m.name, "merge", f"{digest} is version {found.get(labels.VERSION_LABEL)}"
                         f", the next version is {version}", platform=platform,
                         hint="another publish happened in between: re-run the fan-out")


def _verified_platform_checks(m: Manifest, platform: str, digest: str, dest: Destination,
                              signer: Signing) -> tuple[list[CheckResult], SecurityFixes | None]:
    ref = dest.by_digest(digest)
    signer.verify(ref)
    signer.verify_attestation(ref, labels.CYCLONEDX)
    statement = signer.verify_attestation(ref, labels.CONFORMANCE_PREDICATE_TYPE)[-1]
    result: dict[str, Any] = statement["predicate"]["platforms"].get(platform, {})
    if not result.get("passed"):
        raise StepFailed(m.name, "merge", f"{digest} did not pass its checks", platform=platform)
    checks = [CheckResult(c["name"], platform, digest, c["passed"], c["detail"]) for c in result["checks"]]
    recorded = statement["predicate"].get(record_key)
    try:
        return checks, SecurityFixes.from_json(recorded) if recorded is not None else None
    except ValueError as e:
        raise StepFailed(m.name, "merge", f"{digest}: {e}", platform=platform) from None
