"""Fan-out: one job per platform builds, tests, pushes, signs and attests its image by digest and tags
nothing; `factory merge` then checks every platform image before it makes the index that is tagged.

Merge trusts nothing a job says: each platform image must be in the registry, carry this version
and fingerprint in its labels, and have a verified signature, SBOM attestation and passing
conformance attestation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from factory.build.imagetest import CheckResult
from factory.core import labels, versioning
from factory.core.errors import StepFailed
from factory.core.model import Manifest
from factory.publish.destination import Destination
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
                    dest: Destination, signer: Signing) -> list[CheckResult]:
    """The checks each platform image passed, read from its verified conformance attestation."""
    checks: list[CheckResult] = []
    for platform, digest in sorted(digests.items()):
        _check_labels(m, platform, digest, fingerprint, version, dest)
        checks += _verified_platform_checks(m, platform, digest, dest, signer)
    return checks


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
                              signer: Signing) -> list[CheckResult]:
    ref = dest.by_digest(digest)
    signer.verify(ref)
    signer.verify_attestation(ref, labels.CYCLONEDX)
    statement = signer.verify_attestation(ref, labels.CONFORMANCE_PREDICATE_TYPE)[-1]
    result: dict[str, Any] = statement["predicate"]["platforms"].get(platform, {})
    if not result.get("passed"):
        raise StepFailed(m.name, "merge", f"{digest} did not pass its checks", platform=platform)
    return [CheckResult(c["name"], platform, digest, c["passed"], c["detail"]) for c in result["checks"]]
