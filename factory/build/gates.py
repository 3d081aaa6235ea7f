"""Inspect and gate a built image before it is pushed: layers and size against the base, the SBOM's
licenses, and the vulnerability scan. Each gate returns its measurements and its findings; the
publish pipeline fails the image on any error finding. (The security-fixes gate reads archive indexes
and lives with the security code, ``factory.security.gate``; it reports into the same ``GateReport``.)"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from factory.build import sbom, scan
from factory.build.buildx import BuiltImage
from factory.build.imagetest import CheckResult
from factory.core import log
from factory.core.errors import Problem
from factory.core.model import Manifest
from factory.core.reference import Ref
from factory.oci.layout import INDEX_TYPES
from factory.oci.registry import Registry
from factory.spec import policy
from factory.spec.config import Settings

VULNERABILITY_CHECK = "vulnerability-scan"  # the conformance check of policy rule POL-024, where a scan ran


@dataclass(frozen=True)
class BaseImage:
    """Per platform: how many layers and compressed bytes the image we build FROM has."""

    layers: Mapping[str, int]
    size: Mapping[str, int]


@dataclass
class GateReport:
    measurements: dict[str, Any] = field(default_factory=dict)  # JSON for the run report
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sboms: dict[str, Path] = field(default_factory=dict)  # platform -> CycloneDX file
    checks: list[CheckResult] = field(default_factory=list)  # what the gates add to the conformance checks


def base_image(registry: Registry, ref_text: str, platforms: Sequence[str]) -> BaseImage:
    """Layer counts and sizes of the base, read from its registry (by digest)."""
    ref = Ref.parse(ref_text)
    raw, media_type, _ = registry.get_manifest(ref.repository, ref.reference)
    doc = json.loads(raw)
    children = {}
    if media_type in INDEX_TYPES or "manifests" in doc:
        for d in doc["manifests"]:
            p = d.get("platform") or {}
            children[f"{p.get('os')}/{p.get('architecture')}"] = d["digest"]
    layers, size = {}, {}
    for platform in platforms:
        if children:
            if platform not in children:
                continue
            doc = json.loads(registry.get_manifest(ref.repository, children[platform])[0])
        layers[platform] = len(doc.get("layers", []))
        size[platform] = doc["config"]["size"] + sum(layer["size"] for layer in doc.get("layers", []))
    return BaseImage(layers, size)


def layer_and_size(m: Manifest, settings: Settings, built: BuiltImage, base: BaseImage, today: date,
                   report: GateReport, *, budgets: bool = True) -> None:
    """Measure layers and size against the base; judge them against the budgets unless told not to
    (a debug variant carries tools by design and is never deployed: measured, not judged)."""
    for image in built.layout.images:
        p = image.platform
        total, size = len(image.layers), image.compressed_size
        base_layers, base_size = base.layers.get(p, 0), base.size.get(p, 0)
        report.measurements.setdefault("layers", {})[p] = {
            "total": total, "added": total - base_layers, "base": base_layers,
            "size": size, "base_size": base_size, "overhead_bytes": size - base_size,
            "overhead_percent": round(100 * (size - base_size) / base_size, 2) if base_size else None,
        }
        if budgets:
            _sort(policy.check_artifact(m, settings, today, platform=p, added_layers=total - base_layers,
                                        total_layers=total, size_bytes=size, base_size_bytes=base_size or None),
                  report)


def sboms_and_licenses(m: Manifest, settings: Settings, built: BuiltImage, generator: sbom.SbomGenerator, workdir: Path,
                       report: GateReport, *, copyleft_approved: bool = False) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    for p in built.layout.platforms:
        doc = sbom.describe_image(generator.generate(built.layout.root, p), name=settings.target,
                                  digest=built.platform_digests[p], platform=p)
        if not m.has_shell:  # the files the factory copied in, which no package database (so no generator) lists
            doc = sbom.with_files(doc, sbom.org_layer_files(built.layout, p))
        if not any(c.get("type") != "operating-system" for c in sbom.components(doc)):
            report.warnings.append(f"{p}: the SBOM lists no components: nothing the image ships is accounted for")
        path = workdir / f"sbom-{p.replace('/', '-')}.cdx.json"
        path.write_text(json.dumps(doc, indent=1, sort_keys=True))
        report.sboms[p] = path
        pkgs = sbom.packages(doc)
        report.measurements.setdefault("packages", {})[p] = len(pkgs)
        findings = sbom.license_findings(doc, settings.policy.license_deny, settings.policy.license_warn,
                                         copyleft_approved=copyleft_approved)
        report.errors.extend(f"{p}: {f.message}" for f in findings if f.severity == "error")
        warned = sorted(f.package for f in findings if f.severity != "error")
        if warned:  # one line, not eighty: most distro packages are GPL
            report.warnings.append(f"{p}: {len(warned)} packages under licenses on the warn list "
                                   f"(policy.license_warn), e.g. {', '.join(warned[:5])}")


def vulnerabilities(m: Manifest, settings: Settings, built: BuiltImage, scanner: scan.Scanner,
                    ignores: Iterable[scan.Ignore], report: GateReport, *, image: str) -> None:
    # config.schema.json admits only these two values; Settings types the field as text.
    db_unavailable: Literal["fail", "warn"] = "warn" if settings.policy.scanner_db_unavailable == "warn" else "fail"
    digests = built.platform_digests
    for p in built.layout.platforms:
        result = scan.gate(scanner.scan(built.layout.root, p), image=image,
                           fail_on=settings.policy.fail_on_severities, ignores=ignores,
                           db_unavailable=db_unavailable)
        record = result.as_dict()
        report.measurements.setdefault("vulnerabilities", {})[p] = record
        if result.db_available:  # a conformance check only for a scan that ran: "not scanned" never passes
            report.checks.append(CheckResult(VULNERABILITY_CHECK, p, digests.get(p, ""), result.passed,
                                             result.messages[-1] if result.passed else "; ".join(result.messages)))
        if not result.passed:
            report.errors.extend(f"{p}: {msg}" for msg in result.messages)
        elif not result.db_available or result.ignored:  # say loudly what was not scanned or was let through
            report.warnings.extend(f"{p}: {msg}" for msg in result.messages)


def _sort(problems: Sequence[Problem], report: GateReport) -> None:
    for prob in problems:
        (report.errors if prob.severity == "error" else report.warnings).append(prob.message)


def log_report(image: str, report: GateReport) -> None:
    logger = log.get("gates")
    for w in report.warnings:
        logger.warning("gate warning", image=image, warning=w)
    for e in report.errors:
        logger.error("gate failed", image=image, error=e)

