"""What `factory fixes` found: one frozen ``FixesReport`` per image, version and platform, and the run.

A report's ``status`` says what can be done about its fixes:

- ``fixable``: an apt/apk image; the org layer can apply them (``factory publish`` rebuilds);
- ``upstream must rebuild``: a no-shell image (distroless, scratch: no package manager, or no
  dpkg/apk database in the SBOM); its packages can only be fixed by a new upstream image;
- ``error``: nothing is known (the SBOM attestation did not verify, an archive index could not be
  read ...). Never read as "no fixes".

``FixesRun.outcome`` decides the exit code (``factory.core.errors``): errors first (2), then security
fixes an org rebuild can apply (4); other updates only, or fixes only an upstream can make, exit 0 with
a note.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from factory.core.errors import FactoryError, FixesCheckFailed, FixesPending
from factory.security.fixes import ByKind, Fix

Status = Literal["fixable", "upstream must rebuild", "error"]
FIXABLE: Status = "fixable"
UPSTREAM_MUST_REBUILD: Status = "upstream must rebuild"
ERROR: Status = "error"


@dataclass(frozen=True)
class SuiteRead:
    """One archive index the packages were compared with."""

    name: str  # bookworm-security
    date: str | None  # the index's own Date (ISO 8601)
    mirror: str

    @classmethod
    def of(cls, name: str, date: datetime | None, mirror: str) -> SuiteRead:
        return cls(name, date.isoformat() if date else None, mirror)


@dataclass(frozen=True)
class FixesReport(ByKind):
    """One platform of one published version of one image."""

    image: str  # the tag prefix: "debian-12-slim", "debian-12-slim-debug"
    version: str
    tag: str  # the immutable tag read
    index_digest: str
    platform: str  # "" when the error came before the platforms were known
    digest: str  # the platform manifest (what the SBOM attestation is on)
    status: Status
    distro: str = ""  # the archive compared with: debian, ubuntu, alpine
    codename: str = ""  # bookworm, noble, v3.20
    packages: int = 0  # distro packages installed, from the verified SBOM
    fixes: tuple[Fix, ...] = ()
    not_in_archive: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()  # name:arch of another architecture, not compared
    suites: tuple[SuiteRead, ...] = ()
    note: str = ""
    error: str = ""


    @property
    def where(self) -> str:
        """"debian-12-slim 1.0.3 linux/amd64", for messages."""
        return " ".join(p for p in (self.image, self.version, self.platform) if p)


@dataclass(frozen=True)
class FixesRun:
    """Every report of one `factory fixes`, and the manifests that have no published version."""

    reports: tuple[FixesReport, ...]
    unpublished: tuple[str, ...] = ()

    def of(self, status: Status) -> tuple[FixesReport, ...]:
        return tuple(r for r in self.reports if r.status == status)

    @property
    def security_pending(self) -> int:
        """Security fixes an org rebuild can apply, over every fixable report."""
        return sum(len(r.security) for r in self.of(FIXABLE))

    @property
    def updates_pending(self) -> int:
        return sum(len(r.updates) for r in self.of(FIXABLE))

    @property
    def upstream_pending(self) -> int:
        return sum(len(r.fixes) for r in self.of(UPSTREAM_MUST_REBUILD))

    def note(self) -> str:
        """The one-line summary: what is pending, and what the exit code means."""
        parts = []
        if self.of(ERROR):  # then nothing may be said to be "not pending"
            parts.append(f"{len(self.of(ERROR))} check(s) failed: their fixes are unknown")
        if self.security_pending:
            parts.append(f"{self.security_pending} security fix(es) pending")
        elif not self.of(ERROR):
            parts.append("no security fix pending")
        if self.updates_pending:
            alone = not self.of(ERROR) and not self.security_pending
            parts.append(f"{self.updates_pending} other update(s) pending" + (" (not security fixes: exit 0)" * alone))
        if self.upstream_pending:
            parts.append(f"{self.upstream_pending} fix(es) only a new upstream image can bring")
        return "; ".join(parts)

    def outcome(self) -> FactoryError | None:
        """The error to exit with, or None for exit 0."""
        failed = self.of(ERROR)
        if failed:
            return FixesCheckFailed([f"{r.where}: {r.error}" for r in failed])
        if self.security_pending:
            pending = sorted({r.image for r in self.of(FIXABLE) if r.security})
            return FixesPending(self.security_pending, pending)
        return None

    def raise_for_outcome(self) -> None:
        error = self.outcome()
        if error is not None:
            raise error

    def render(self, fmt: str) -> str:
        return as_json(self) if fmt == "json" else table(self)


# --- output formats ---------------------------------------------------------------------------


def as_document(run: FixesRun) -> dict[str, Any]:
    """The JSON output's content: every report as its fields, then the counts and the note."""
    return {
        "reports": [asdict(r) for r in run.reports],
        "unpublished": list(run.unpublished),
        "summary": {"security": run.security_pending, "updates": run.updates_pending,
                    "upstream_must_rebuild": run.upstream_pending, "errors": len(run.of(ERROR)),
                    "note": run.note()},
    }


def as_json(run: FixesRun) -> str:
    return json.dumps(as_document(run), indent=2)


def table(run: FixesRun) -> str:
    """One heading line per report, its fixes under it (security first), then the summary."""
    lines: list[str] = []
    for r in run.reports:
        lines.append(_heading(r))
        rows = [(f.kind, f.package, f"{f.installed} -> {f.candidate}", f.suite)
                for f in (*r.security, *r.updates)]
        lines += _aligned(rows, indent="  ")
    lines += [f"{name}: not published yet" for name in run.unpublished]
    lines.append(run.note())
    return "\n".join(lines)


def _heading(r: FixesReport) -> str:
    if r.status == ERROR:
        return f"{r.where}: ERROR {r.error}"
    archive = f"{r.distro} {r.codename}".strip() or "no archive"
    counts = f"{len(r.security)} security, {len(r.updates)} other of {r.packages} packages ({archive})"
    if r.status == UPSTREAM_MUST_REBUILD:
        counts += ": upstream must rebuild"
    return f"{r.where}: {counts}" + (f"; {r.note}" if r.note else "")


def _aligned(rows: Sequence[tuple[str, ...]], *, indent: str) -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return [indent + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
