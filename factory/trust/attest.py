"""Predicates the factory signs about what it built: pure builders, no I/O.

- Hardening conformance (``CONFORMANCE_PREDICATE_TYPE``): which checks ran on which platform
  digest and their results, with the policy rules and waivers in force. Consumers verify it at
  deploy time to know an image passed the org's checks, not just that it was signed.
- SLSA v1 provenance (cosign ``--type slsaprovenance1``), written from what the factory knows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

# The predicate types (CONFORMANCE_PREDICATE_TYPE ...) are the contract with consumers: defined once, in
# core/labels.py.

# cosign's --type for SLSA v1 provenance (it writes SLSA_PROVENANCE_TYPE as the predicateType).
SLSA_COSIGN_TYPE = "slsaprovenance1"


def _iso(t: datetime) -> str:
    """RFC 3339 in UTC. A naive datetime is refused: its zone would be a guess."""
    if t.tzinfo is None:
        raise ValueError(f"{t!r} has no time zone")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conformance_predicate(*, image: str, version: str, platform_results: Mapping[str, Sequence[Any]],
                          policy_rules: Sequence[str], waivers: Sequence[Mapping[str, Any]],
                          factory_version: str, security_fixes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``platform_results``: platform -> check results (objects with name, platform, digest,
    passed, detail). Sorted throughout, so equal inputs give equal predicates. A platform without
    checks, or a predicate without platforms, is not "passed": nothing was shown to conform.
    ``security_fixes``: the check made at build time (``factory.security.record``'s JSON), the key
    ``securityFixes``; absent when policy.security_fixes is off."""
    platforms = {}
    for platform in sorted(platform_results):
        checks = [_as_dict(c) for c in platform_results[platform]]
        digests = sorted({c["digest"] for c in checks})
        if len(digests) > 1:  # the checks of one platform ran on one image; anything else is a bug
            raise ValueError(f"checks for {platform} name several digests: {digests}")
        platforms[platform] = {
            "digest": digests[0] if digests else "",
            "passed": bool(checks) and all(c["passed"] for c in checks),
            "checks": sorted(({"name": c["name"], "passed": c["passed"], "detail": c["detail"]} for c in checks),
                             key=lambda c: c["name"]),
        }
    predicate = {
        "image": image,
        "version": version,
        "passed": bool(platforms) and all(p["passed"] for p in platforms.values()),
        "platforms": platforms,
        "policy": {"rules": sorted(policy_rules),
                   "waivers": sorted((_plain(w) for w in waivers), key=lambda w: w["rule"])},
        "runtime": {"read_only": True, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"], "tmpfs": ["/tmp"]},
        "factory": {"version": factory_version},
    }
    if security_fixes is not None:
        predicate["securityFixes"] = dict(security_fixes)
    return predicate


def _as_dict(check: Any) -> dict[str, Any]:
    """A check result as a dict: the dataclass (imagetest.CheckResult), or a mapping with its fields."""
    if is_dataclass(check) and not isinstance(check, type):
        return asdict(check)
    return dict(check)


def _plain(w: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in w.items()}


def slsa_provenance(*, builder_id: str, build_type: str, manifest: Mapping[str, Any], context_digest: str,
                    base_ref: str, platforms: Sequence[str], build_args: Mapping[str, str],
                    invocation: Mapping[str, str], started: datetime, finished: datetime,
                    subjects: Mapping[str, str], packages: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """A SLSA v1 provenance predicate (https://slsa.dev/provenance/v1). ``packages``: resource descriptors
    of distro packages the build installed from the archives (the security fixes it applied: purl ``uri``),
    resolved dependencies after the base image."""
    base_name, _, base_digest = base_ref.partition("@")
    return {
        "buildDefinition": {
            "buildType": build_type,
            "externalParameters": {"manifest": dict(manifest), "platforms": sorted(platforms)},
            "internalParameters": {"buildArgs": dict(sorted(build_args.items())), "contextDigest": context_digest},
            "resolvedDependencies": [
                {"uri": f"oci://{base_name}", "digest": {"sha256": base_digest.removeprefix("sha256:")}},
                *(dict(p) for p in packages),
            ],
        },
        "runDetails": {
            "builder": {"id": builder_id},
            "metadata": {"invocationId": invocation.get("run_id", ""), "startedOn": _iso(started),
                         "finishedOn": _iso(finished)},
            "byproducts": [{"name": name, "digest": {"sha256": d.removeprefix("sha256:")}}
                           for name, d in sorted(subjects.items())],
        },
    }
