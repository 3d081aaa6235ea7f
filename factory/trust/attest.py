"""Predicates the factory signs about what it built: pure builders, no I/O.

- Hardening conformance (``CONFORMANCE_PREDICATE_TYPE``): which checks ran on which platform
  digest and their results, with the policy rules and waivers in force. Consumers verify it at
  deploy time to know an image passed the org's checks, not just that it was signed.
- SLSA v1 provenance, written from what the factory knows, on the index and on each platform manifest.
  It is attested under its predicate type URI (``labels.SLSA_PROVENANCE_TYPE``), which cosign passes
  through as written: its ``--type slsaprovenance1`` re-marshals the predicate through its own Go struct
  and publishes ``invocationID``, which the SLSA v1 schema (and in-toto-attestation's strict parse) refuse.
  ``cosign verify-attestation --type slsaprovenance1`` still finds it: it matches on that URI.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

from factory.core.reference import Ref

# The predicate types (CONFORMANCE_PREDICATE_TYPE ...) are the contract with consumers: defined once, in
# core/labels.py.

# cosign's --type that verifies SLSA v1 provenance: it maps to SLSA_PROVENANCE_TYPE. Never used to attest
# (see the module docstring): the factory attests with the URI itself.
SLSA_COSIGN_TYPE = "slsaprovenance1"


def _iso(t: datetime) -> str:
    """RFC 3339 in UTC. A naive datetime is refused: its zone would be a guess."""
    if t.tzinfo is None:
        raise ValueError(f"{t!r} has no time zone")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conformance_predicate(*, image: str, version: str, platform_results: Mapping[str, Sequence[Any]],
                          policy_rules: Sequence[str], waivers: Sequence[Mapping[str, Any]],
                          factory_version: str, security_fixes: Mapping[str, Any] | None = None,
                          vulnerability_scan: Mapping[str, Any] | None = None,
                          scan_rule: str = "") -> dict[str, Any]:
    """``platform_results``: platform -> check results (objects with name, platform, digest,
    passed, detail). Sorted throughout, so equal inputs give equal predicates. A platform without
    checks, or a predicate without platforms, is not "passed": nothing was shown to conform.
    ``security_fixes``: the check made at build time (``factory.security.record``'s JSON), the key
    ``securityFixes``; absent when policy.security_fixes is off. ``vulnerability_scan``: the scan's
    status (``factory.build.scan.summary``), the key ``vulnerabilityScan``; when it says "not scanned",
    ``scan_rule`` (the vulnerability rule's id) is not among the rules in force but under
    ``policy.notEvaluated`` with the reason: an image nobody scanned never claims that rule."""
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
    rules = sorted(policy_rules)
    not_evaluated = []
    if vulnerability_scan is not None and vulnerability_scan.get("status") != "scanned" and scan_rule:
        rules = [r for r in rules if r != scan_rule]
        not_evaluated.append({"rule": scan_rule, "reason": "image NOT scanned for CVEs: "
                              + str(vulnerability_scan.get("reason") or "no scan")})
    predicate: dict[str, Any] = {
        "image": image,
        "version": version,
        "passed": bool(platforms) and all(p["passed"] for p in platforms.values()),
        "platforms": platforms,
        "policy": {"rules": rules,
                   "waivers": sorted((_plain(w) for w in waivers), key=lambda w: w["rule"]),
                   "notEvaluated": not_evaluated},
        "runtime": {"read_only": True, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"], "tmpfs": ["/tmp"]},
        "factory": {"version": factory_version},
    }
    if security_fixes is not None:
        predicate["securityFixes"] = dict(security_fixes)
    if vulnerability_scan is not None:
        predicate["vulnerabilityScan"] = dict(vulnerability_scan)
    return predicate


def _as_dict(check: Any) -> dict[str, Any]:
    """A check result as a dict: the dataclass (imagetest.CheckResult), or a mapping with its fields."""
    if is_dataclass(check) and not isinstance(check, type):
        return asdict(check)
    return dict(check)


def _plain(w: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in w.items()}


def slsa_provenance(*, builder_id: str, build_type: str, manifest: Mapping[str, Any], context_digest: str,
                    platforms: Sequence[str], build_args: Mapping[str, str], invocation_id: str,
                    started: datetime, finished: datetime, dependencies: Sequence[Mapping[str, Any]],
                    byproducts: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A SLSA v1 provenance predicate (https://slsa.dev/provenance/v1). ``context_digest``: the rendered
    context's digest (``render.plan.context_digest``; the fingerprint also covers base and platforms, which
    are parameters and dependencies here). ``dependencies``: resource descriptors of every input the build
    resolved (``source_dependency``, ``image_dependency``, packages as purls), in that order.
    ``byproducts``: name -> digest of what else the build made (the index, for a platform's provenance)."""
    return {
        "buildDefinition": {
            "buildType": build_type,
            "externalParameters": {"manifest": dict(manifest), "platforms": sorted(platforms)},
            "internalParameters": {"buildArgs": dict(sorted(build_args.items())), "contextDigest": context_digest},
            "resolvedDependencies": [dict(d) for d in dependencies],
        },
        "runDetails": {
            "builder": {"id": builder_id},
            # The SLSA v1 field is invocationId: cosign's own struct would publish invocationID
            "metadata": {"invocationId": invocation_id, "startedOn": _iso(started), "finishedOn": _iso(finished)},
            "byproducts": [{"name": name, "digest": {"sha256": d.removeprefix("sha256:")}}
                           for name, d in sorted((byproducts or {}).items())],
        },
    }


def source_dependency(url: str, commit: str) -> dict[str, Any] | None:
    """The git source as SLSA's git URI (``git+https://host/org/repo``) with its commit; None when the
    commit is unknown (not a git checkout), so that no made-up source is claimed."""
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
        return None
    descriptor: dict[str, Any] = {"name": "source", "digest": {"gitCommit": commit}}
    if url:
        descriptor["uri"] = f"git+{url}"
    return descriptor


def image_dependency(ref: str, role: str) -> dict[str, Any]:
    """An image the build pulled, by digest: ``oci://registry/repository`` and its sha256, named by its
    ``role`` (base, helper). A reference without a digest is refused: what was pulled would be unknown."""
    parsed = Ref.parse(ref)
    if not parsed.digest or not parsed.digest.startswith("sha256:"):
        raise ValueError(f"{ref!r} is not pinned by digest")
    return {"name": role, "uri": f"oci://{parsed.name}", "digest": {"sha256": parsed.digest.removeprefix("sha256:")},
            "annotations": {"reference": ref}}


def vuln_predicate(record: Mapping[str, Any], *, builder_id: str, run_id: str) -> dict[str, Any]:
    """cosign's vulnerability-scan predicate (``--type vuln``) for one platform's scan record
    (``factory.build.scan.GateResult.as_dict()``): who scanned with what database, and the record as
    its ``result``. Written for a scan that did not run as well: the record then says "not scanned"."""
    scanner = record.get("scanner") or {}
    db = record.get("db") or {}
    when = str(record.get("scanned_at") or "") or _iso(datetime.now(UTC))  # cosign parses both as RFC 3339
    version = str(scanner.get("version") or "")
    return {
        "invocation": {"parameters": None, "uri": "", "event_id": run_id, "builder.id": builder_id},
        "scanner": {
            "uri": f"pkg:github/aquasecurity/trivy@{version}" if scanner.get("name") == "trivy" else
                   str(scanner.get("name") or ""),
            "version": version,
            "db": {"uri": f"oci://{db['source']}@{db['digest']}" if db.get("source") else "",
                   "version": str(db.get("updated_at") or "")},
            "result": dict(record),
        },
        "metadata": {"scanStartedOn": when, "scanFinishedOn": when},
    }
