"""The security-fixes gate after the build: per platform, the security fixes still pending in the built
image's SBOM against the same archive index the build's fixes were computed from.

``policy.security_fixes``: ``require`` makes every pending fix that the org layer could have applied an error
(the image fails at the gates step, nothing is pushed or tagged); ``warn`` makes it a warning (published);
``off`` runs nothing and reads no archive. An image without a shell (distroless, scratch) has no package
manager: its pending fixes can only come with a new upstream image, so they are a warning ("upstream must
rebuild: ...") and its check passes. Each platform gets a ``security-fixes`` check result, joined to the
conformance checks: passed when no security fix is pending that the org layer could apply.

Lives with the other security code rather than in ``factory.build.gates`` (the layers: build comes before
security); the publish pipeline runs it between the SBOM gate and the vulnerability gate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from factory.archive.types import ArchiveIndex
from factory.build.gates import GateReport
from factory.build.imagetest import CheckResult
from factory.core.model import Manifest
from factory.security.fixes import Fix, pending_fixes
from factory.security.installed import installed_packages
from factory.security.record import (
    FIXABLE,
    UPSTREAM_MUST_REBUILD,
    Pending,
    PlatformFixes,
    SecurityFixes,
    SuiteDate,
    applied,
    rfc3339,
)

CHECK = "security-fixes"

# platform, its SBOM -> the archive index of its release, or None when the release cannot be told
IndexFor = Callable[[str, Mapping[str, Any]], ArchiveIndex | None]


def check(m: Manifest, policy: str, report: GateReport, digests: Mapping[str, str], index_for: IndexFor,
          base_fixes: Mapping[str, Sequence[Fix]], now: datetime) -> tuple[SecurityFixes | None, list[CheckResult]]:
    """The record and the check results of every platform in ``report.sboms``; findings into ``report``.
    ``base_fixes``: per platform the base image's security fixes found before the build (what "applied"
    is measured against). Policy off: (None, []) and nothing is read."""
    if policy == "off":
        return None, []
    platforms: dict[str, PlatformFixes] = {}
    checks = []
    for platform, path in sorted(report.sboms.items()):
        found = _platform(m, platform, json.loads(path.read_text()), index_for, base_fixes.get(platform, ()))
        if found is None:  # never "no fixes": nothing was compared
            _finding(policy, report, f"{platform}: security fixes not checked: cannot tell the {m.distro} release "
                                     "(no `release` in the manifest or its parents, none in the SBOM)")
            checks.append(CheckResult(CHECK, platform, digests.get(platform, ""), False,
                                      "not checked: release unknown"))
            continue
        platforms[platform] = found
        checks.append(_judge(policy, platform, digests.get(platform, ""), found, report))
    return SecurityFixes("warn" if policy == "warn" else "require", rfc3339(now), platforms), checks


def _platform(m: Manifest, platform: str, sbom: Mapping[str, Any], index_for: IndexFor,
              base_fixes: Sequence[Fix]) -> PlatformFixes | None:
    status = FIXABLE if m.has_shell else UPSTREAM_MUST_REBUILD
    installed = installed_packages(sbom)
    if not installed:  # no package database: nothing an archive can fix, and no archive is read
        return PlatformFixes(status)
    index = index_for(platform, sbom)
    if index is None:
        return None if m.has_shell else PlatformFixes(status)
    matched = pending_fixes(installed, index)
    return PlatformFixes(status, tuple(SuiteDate.of(s) for s in index.suites()),
                         applied(base_fixes, installed, index.distro), tuple(Pending.of(f) for f in matched.fixes))


def _finding(policy: str, report: GateReport, message: str) -> None:
    (report.errors if policy == "require" else report.warnings).append(message)


def _judge(policy: str, platform: str, digest: str, found: PlatformFixes,
           report: GateReport) -> CheckResult:
    pending = found.pending_security
    listed = ", ".join(map(str, pending))
    if not pending:
        detail = f"no security fix pending ({len(found.applied)} applied)"
        return CheckResult(CHECK, platform, digest, True, detail)
    if found.status == UPSTREAM_MUST_REBUILD:
        report.warnings.append(f"{platform}: upstream must rebuild: {listed}")
        return CheckResult(CHECK, platform, digest, True,
                           f"no fix the org layer could apply; upstream must rebuild: {len(pending)} security fix(es) "
                           f"pending ({', '.join(p.package for p in pending)})")
    message = (f"{platform}: {len(pending)} security fix(es) pending after the build that the org layer could apply: "
               f"{listed} (policy.security_fixes: {policy})")
    _finding(policy, report, message)
    return CheckResult(CHECK, platform, digest, False,
                       f"{len(pending)} security fix(es) pending: {', '.join(p.package for p in pending)}")
