"""Security fixes as app teams read them: what is pending in a version now, and what its build applied.

Two sources, both verified: the fixes pending *now* come from ``factory.security.check`` (the version's
verified SBOM against today's archive indexes); the fixes a version's build *applied*, and what was still
pending when it was built, come from the ``securityFixes`` record of its verified conformance attestation
(``factory.security.record``; versions built before the check, or with ``policy.security_fixes: off``,
carry none: "not recorded"). The catalog shows both per version and platform; `factory verify` prints the
record as a finding, which fails when the record says a security fix the org layer could apply was left
pending under ``require``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from factory.security import record
from factory.security.report import ERROR, FIXABLE, FixesReport
from factory.trust.verify import Finding, VerifyReport

CHECK = "security fixes"  # the finding's name in `factory verify`
NOT_CHECKED = "not checked"


@dataclass(frozen=True)
class PendingFix:
    package: str
    installed: str
    candidate: str
    suite: str


@dataclass(frozen=True)
class PendingNow:
    """The security fixes pending in one platform of a version when the catalog was built."""

    status: str  # fixable | upstream must rebuild | error | not checked
    count: int | None  # None when not known
    fixes: tuple[PendingFix, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class SuiteDate:
    name: str
    date: str | None


@dataclass(frozen=True)
class AppliedFix:
    package: str
    from_version: str
    to_version: str
    suite: str


@dataclass(frozen=True)
class AppliedAtBuild:
    """What one platform's build recorded (the conformance attestation's ``securityFixes``)."""

    recorded: bool  # False: the version carries no record ("not recorded")
    policy: str | None = None  # require | warn
    checked: str | None = None  # when the build checked (RFC 3339 UTC)
    status: str | None = None  # fixable | upstream must rebuild
    suites: tuple[SuiteDate, ...] = ()
    applied: tuple[AppliedFix, ...] = ()
    pending_security: int | None = None  # security fixes still pending after the build
    note: str = ""


NOT_RECORDED = AppliedAtBuild(False, note="not recorded (built before the security-fixes check, or with "
                                          "policy.security_fixes: off)")


def pending_now(found: FixesReport | None, why_not: str = "") -> PendingNow:
    """One platform's entry from `factory fixes`'s report (None: not checked, ``why_not`` says why)."""
    if found is None:
        return PendingNow(NOT_CHECKED, None, note=why_not)
    if found.status == ERROR:
        return PendingNow(ERROR, None, note=found.error)
    fixes = tuple(PendingFix(f.package, f.installed, f.candidate, f.suite) for f in found.security)
    note = found.note or ("" if found.status == FIXABLE or not fixes else "no shell: the upstream must rebuild")
    return PendingNow(found.status, len(fixes), fixes, note)


def parse_record(conformance: Mapping[str, Any] | None) -> record.SecurityFixes | None:
    """The ``securityFixes`` record of a verified conformance predicate; None when it has none. A record
    that is not of the documented shape is a ``ValueError`` (never read as "nothing pending")."""
    if not conformance or record.KEY not in conformance:
        return None
    return record.SecurityFixes.from_json(conformance[record.KEY])


def applied_at_build(found: record.SecurityFixes | None, platform: str) -> AppliedAtBuild:
    if found is None:
        return NOT_RECORDED
    p = found.platforms.get(platform)
    if p is None:
        return AppliedAtBuild(True, found.policy, found.checked, note=f"the record names no {platform}")
    return AppliedAtBuild(True, found.policy, found.checked, p.status,
                          tuple(SuiteDate(s.name, s.date) for s in p.suites),
                          tuple(AppliedFix(a.package, a.from_, a.to, a.suite) for a in p.applied),
                          len(p.pending_security))


def finding(report: VerifyReport) -> Finding:
    """`factory verify`'s "security fixes" line, from the conformance predicate that verified and passed.
    Fails when the record says a security fix the org layer could apply was pending under ``require``
    (the gate should have stopped that build), or when the record is malformed."""
    if report.conformance is None:
        return Finding(CHECK, False, "no verified conformance attestation to read the record from")
    try:
        found = parse_record(report.conformance)
    except ValueError as e:
        return Finding(CHECK, False, str(e))
    if found is None:
        return Finding(CHECK, True, NOT_RECORDED.note)
    suites = sorted({(s.name, s.date) for p in found.platforms.values() for s in p.suites})
    pending = {name: len(p.pending_security) for name, p in sorted(found.platforms.items())
               if p.status == record.FIXABLE and p.pending_security}
    upstream = sum(len(p.pending_security) for p in found.platforms.values() if p.status != record.FIXABLE)
    detail = (f"policy {found.policy}, checked {found.checked}; suites "
              + (", ".join(f"{n} ({d or 'no date'})" for n, d in suites) or "none")
              + f"; {found.applied} applied, {found.pending_security} security fix(es) pending"
              + (f" ({upstream} only a new upstream image brings)" if upstream else ""))
    if pending and found.policy == "require":
        where = ", ".join(f"{p}: {n}" for p, n in pending.items())
        return Finding(CHECK, False, f"{detail}; pending under require ({where}): the gate should have failed")
    return Finding(CHECK, True, detail)
