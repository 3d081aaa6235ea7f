"""What the security-fixes check of one build found, as the conformance attestation, the run report and the
provenance record it: per platform the suites read, the fixes the org layer applied and those still pending.

The JSON (``SecurityFixes.to_json``) is the conformance predicate's ``securityFixes`` key, and the catalog,
`factory verify` and the plan read it back with ``SecurityFixes.from_json``; keep the two together::

    {"policy": "require" | "warn", "checked": "<RFC 3339 UTC>",
     "platforms": {"linux/amd64": {
         "status": "fixable" | "upstream must rebuild",
         "suites": [{"name": "bookworm-security", "date": "<RFC 3339 UTC> | null"}],
         "applied": [{"package", "arch", "from", "to", "suite"}],
         "pending": [{"package", "arch", "installed", "candidate", "suite", "kind"}],
         "pendingSecurity": <int>}}}

``applied``: the base image's security fixes whose package the built image has in the fixed (or a newer)
version: ``from`` the base's version, ``to`` the built image's. ``pending``: every fix still pending after
the build (``kind`` security or update); ``pendingSecurity`` counts the security ones. The key is absent
when ``policy.security_fixes`` is off: nothing was checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from packageurl import PackageURL

from factory.archive import versions
from factory.archive.types import Suite
from factory.security.fixes import Fix, FixKind
from factory.security.installed import InstalledPackage

KEY = "securityFixes"  # the conformance predicate's key
Policy = Literal["require", "warn"]
PlatformStatus = Literal["fixable", "upstream must rebuild"]
FIXABLE: PlatformStatus = "fixable"
UPSTREAM_MUST_REBUILD: PlatformStatus = "upstream must rebuild"


def rfc3339(t: datetime) -> str:
    """RFC 3339 in UTC (``2026-12-01T09:46:21Z``); a naive datetime is refused: its zone would be a guess."""
    if t.tzinfo is None:
        raise ValueError(f"{t!r} has no time zone")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SuiteDate:
    """One archive index read: ``bookworm-security`` and its own Date (None when it carries none)."""

    name: str
    date: str | None

    @classmethod
    def of(cls, suite: Suite) -> SuiteDate:
        return cls(suite.name, rfc3339(suite.date) if suite.date else None)


@dataclass(frozen=True)
class Applied:
    """A security fix of the base image that the org layer applied: ``from`` -> ``to``."""

    package: str
    arch: str
    from_: str
    to: str
    suite: str

    def __str__(self) -> str:
        return f"{self.package} {self.from_} -> {self.to} ({self.suite})"

    def to_json(self) -> dict[str, str]:
        return {"package": self.package, "arch": self.arch, "from": self.from_, "to": self.to, "suite": self.suite}


@dataclass(frozen=True)
class Pending:
    """A fix still pending in the built image."""

    package: str
    arch: str
    installed: str
    candidate: str
    suite: str
    kind: FixKind

    @classmethod
    def of(cls, fix: Fix) -> Pending:
        return cls(fix.package, fix.arch, fix.installed, fix.candidate, fix.suite, fix.kind)

    def __str__(self) -> str:
        return f"{self.package} {self.installed} -> {self.candidate} ({self.suite})"

    def to_json(self) -> dict[str, str]:
        return {"package": self.package, "arch": self.arch, "installed": self.installed,
                "candidate": self.candidate, "suite": self.suite, "kind": self.kind}


@dataclass(frozen=True)
class PlatformFixes:
    """The check of one platform of the built image."""

    status: PlatformStatus
    suites: tuple[SuiteDate, ...] = ()
    applied: tuple[Applied, ...] = ()
    pending: tuple[Pending, ...] = ()

    @property
    def pending_security(self) -> tuple[Pending, ...]:
        return tuple(p for p in self.pending if p.kind == "security")

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status,
                "suites": [{"name": s.name, "date": s.date} for s in self.suites],
                "applied": [a.to_json() for a in self.applied],
                "pending": [p.to_json() for p in self.pending],
                "pendingSecurity": len(self.pending_security)}


@dataclass(frozen=True)
class SecurityFixes:
    """The record of one build's check, every platform of it."""

    policy: Policy
    checked: str  # RFC 3339 UTC
    platforms: Mapping[str, PlatformFixes] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "checked": self.checked,
                "platforms": {p: self.platforms[p].to_json() for p in sorted(self.platforms)}}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SecurityFixes:
        """The record from its JSON (a verified conformance predicate's ``securityFixes``). A document that is
        not of this shape is a ``ValueError`` naming the key: never read as "nothing pending"."""
        try:
            policy, checked = doc["policy"], doc["checked"]
            if policy not in ("require", "warn") or not isinstance(checked, str):
                raise ValueError(f"policy {policy!r} / checked {checked!r}")
            return cls(policy, checked, {str(p): _platform(v) for p, v in doc["platforms"].items()})
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ValueError(f"{KEY} is not a security-fixes record: {type(e).__name__}: {e}") from None

    @property
    def applied(self) -> int:
        return sum(len(p.applied) for p in self.platforms.values())

    @property
    def pending_security(self) -> int:
        return sum(len(p.pending_security) for p in self.platforms.values())


def _platform(doc: Mapping[str, Any]) -> PlatformFixes:
    status = doc["status"]
    if status not in (FIXABLE, UPSTREAM_MUST_REBUILD):
        raise ValueError(f"status {status!r}")
    pending = tuple(Pending(p["package"], p["arch"], p["installed"], p["candidate"], p["suite"], p["kind"])
                    for p in doc["pending"])
    if any(p.kind not in ("security", "update") for p in pending):
        raise ValueError("a pending fix's kind is neither security nor update")
    if doc["pendingSecurity"] != sum(1 for p in pending if p.kind == "security"):
        raise ValueError("pendingSecurity does not count the pending security fixes")
    suites = tuple(SuiteDate(s["name"], s["date"]) for s in doc["suites"])
    done = tuple(Applied(a["package"], a["arch"], a["from"], a["to"], a["suite"]) for a in doc["applied"])
    return PlatformFixes(status, suites, done, pending)


def applied(base_fixes: Iterable[Fix], built: Sequence[InstalledPackage], distro: str) -> tuple[Applied, ...]:
    """The base's security fixes that the built image carries: its package in the candidate version or a newer
    one (matched by name and architecture; by name alone when the SBOM names no architecture)."""
    by_key = {(p.name, p.arch): p for p in built}
    by_name = {p.name: p for p in built}
    out = []
    for fix in base_fixes:
        if fix.kind != "security":
            continue
        now = by_key.get((fix.package, fix.arch)) or by_name.get(fix.package)
        if now is not None and versions.compare(distro, now.version, fix.candidate) >= 0:
            out.append(Applied(fix.package, fix.arch, fix.installed, now.version, fix.suite))
    return tuple(sorted(out, key=lambda a: (a.package, a.arch)))


def resolved_dependencies(record: SecurityFixes, distro: str) -> list[dict[str, Any]]:
    """The applied packages as SLSA resource descriptors: ``pkg:deb/debian/<name>@<version>?arch=<arch>``
    (``pkg:apk/alpine/...``), the version the build installed; one entry per package and architecture."""
    ecosystem = "apk" if distro == "alpine" else "deb"
    seen: dict[str, dict[str, Any]] = {}
    for platform in sorted(record.platforms):
        for a in record.platforms[platform].applied:
            purl = PackageURL(type=ecosystem, namespace=distro, name=a.package, version=a.to,
                              qualifiers={"arch": a.arch} if a.arch else None).to_string()
            seen.setdefault(purl, {"uri": purl, "name": a.package,
                                   "annotations": {"from": a.from_, "suite": a.suite}})
    return [seen[k] for k in sorted(seen)]
