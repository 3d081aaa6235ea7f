"""What a publish run did, image by image: the JSON report (`--report`), the summary the CLI prints,
and the table written to the GitHub Actions step summary."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from factory import __version__
from factory.core import console, progress

# Statuses of an image that count as success; "pushed" is a fan-out job's (by digest, no tags).
SUCCEEDED = ("published", "up-to-date", "pushed")
STOPPED = ("failed", "skipped")


@dataclass
class VariantResult:
    """What happened to one published artifact (the prod image or its debug variant)."""

    tag_prefix: str
    version: str = ""
    index_digest: str = ""
    platforms: dict[str, str] = field(default_factory=dict)  # platform -> manifest digest
    fingerprint: str = ""
    tags: list[str] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)
    attestations: list[dict[str, str]] = field(default_factory=list)  # type, subject (and platform)
    checks: list[dict[str, Any]] = field(default_factory=list)  # imagetest.CheckResult as JSON
    gates: dict[str, Any] = field(default_factory=dict)  # the gates' measurements, as JSON
    # The security-fixes check (factory.security.record's JSON: policy, checked, per platform the suites,
    # the fixes applied and those pending); {} when policy.security_fixes is off or for a debug variant.
    security_fixes: dict[str, Any] = field(default_factory=dict)
    fix_args: dict[str, str] = field(default_factory=dict)  # SECURITY_FIXES (and ORG_LAYER) passed to the build


@dataclass
class ImageResult:
    name: str
    status: str = "pending"  # published | up-to-date | pushed (fan-out, no tags) | failed | skipped
    step: str = ""  # the failed step
    platform: str = ""
    error: str = ""
    base: str = ""
    prod: VariantResult | None = None
    debug: VariantResult | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def tags(self) -> list[str]:
        """Every tag written for this image, prod first."""
        return (self.prod.tags if self.prod else []) + (self.debug.tags if self.debug else [])


@dataclass
class RunReport:
    run_id: str
    started: str
    finished: str = ""
    factory_version: str = __version__
    images: list[ImageResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. the nightly's drift and plan
    archives: dict[str, int] = field(default_factory=dict)  # what the run read from distro archives: requests, bytes

    @property
    def ok(self) -> bool:
        return all(i.status in SUCCEEDED for i in self.images)

    def failure_lines(self) -> list[str]:
        """One line per failed or skipped image: where it stopped and why (the PublishFailed message)."""
        return [_failure_line(i) for i in self.images if i.status in STOPPED]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def _failure_line(i: ImageResult) -> str:
    if not i.error:
        return f"{i.name}: {i.status}"
    where = f" at {i.step}" + (f" [{i.platform}]" if i.platform else "")
    return f"{i.name}: {i.status}{where}: {i.error}"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def summary(report: RunReport) -> str:
    """One line per image, as the CLI prints it at the end of a run."""
    return "\n".join(f"{i.name:32} {i.status:10} {_detail(i)}" for i in report.images)


def _detail(i: ImageResult) -> str:
    version = i.prod.version if i.prod else ""
    if i.status == "failed":
        return f"failed at {i.step}: {i.error}"
    if i.status == "pushed":
        platforms = ", ".join(f"{p}={d}" for p, d in (i.prod.platforms if i.prod else {}).items())
        return f"{version} pushed by digest, no tag: {platforms}"
    digest = i.prod.index_digest if i.prod else ""
    return f"{version} {digest} tags: {', '.join(i.tags()) or '-'}{_fixes_detail(i.prod)}"


def _fixes_detail(v: VariantResult | None) -> str:
    """"; security fixes applied: linux/amd64 14, linux/arm64 14" (nothing when none was checked)."""
    platforms = (v.security_fixes.get("platforms") or {}) if v else {}
    if not platforms:
        return ""
    applied = ", ".join(f"{p} {len(r.get('applied') or [])}" for p, r in sorted(platforms.items()))
    pending = sum(int(r.get("pendingSecurity") or 0) for r in platforms.values())
    return f"; security fixes applied: {applied}" + (f"; {pending} still pending" if pending else "")


def outcome(i: ImageResult) -> progress.Outcome:
    """How the image ended, for the live view."""
    return progress.Outcome(i.status, i.prod.version if i.prod else "", i.step, i.platform, i.error)


def summary_rows(report: RunReport) -> list[console.SummaryRow]:
    """The summary table on a terminal: one row per image, with what was built or why nothing was."""
    return [console.SummaryRow(i.name, i.status, i.prod.version if i.prod else "", sum(i.timings.values()),
                               _built(i)) for i in report.images]


def _built(i: ImageResult) -> tuple[str, ...]:
    if i.status in STOPPED:
        where = f"at {i.step}" + (f" [{i.platform}]" if i.platform else "") + ":" if i.step else ""
        return (where, i.error) if where else (i.error,)
    v = i.prod or VariantResult(tag_prefix=i.name)
    platforms = ", ".join(sorted(v.platforms)) + (" + debug" if i.debug else "")
    if i.status == "pushed":
        return platforms, v.index_digest, "pushed by digest, no tag"
    if i.status == "up-to-date":
        moved = ("completed an interrupted publish:", console.fold_tags(i.tags())) if i.tags() else ()
        return "nothing built: the inputs of", f"{v.version} ({v.index_digest})", *moved
    fixes = _fixes_detail(v).removeprefix("; ")
    return platforms, v.index_digest, console.fold_tags(i.tags()), *((fixes,) if fixes else ())


def timings_of(path: Path) -> dict[str, float]:
    """Seconds each image took in the report at ``path`` (the sum of its steps); {} when there is none
    or it is not a report: an estimate only, never a reason to fail."""
    try:
        images = json.loads(path.read_text(encoding="utf-8")).get("images") or []
        return {str(i["name"]): float(sum(i.get("timings", {}).values())) for i in images}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return {}


def markdown_summary(report: RunReport) -> str:
    """The run as a Markdown table, for GITHUB_STEP_SUMMARY."""
    rows = ["| image | status | version | index digest | tags |", "|---|---|---|---|---|"]
    for i in report.images:
        status = i.status if i.status != "failed" else f"failed at {i.step}"
        rows.append(f"| {i.name} | {status} | {i.prod.version if i.prod else ''} | "
                    f"`{i.prod.index_digest if i.prod else ''}` | {', '.join(i.tags())} |")
    notes = "".join(f"- {n}\n" for n in report.notes)
    return "### factory publish\n\n" + (notes + "\n" if notes else "") + "\n".join(rows) + "\n"
