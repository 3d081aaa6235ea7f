"""One variant of an image (prod, or its debug variant) up to, not including, its tags: build, test,
gates, push by digest, sign, attest. Each is a step of the image's result; the first that fails
stops the image, and nothing of it is tagged.

A prod variant whose org layer applies security fixes (policy.security_fixes not off, an apt or apk
image) has one step before the build, "security fixes": the base image's pending security fixes
(``inputs.base_fixes``), passed as build arguments; its gates then check that none is left
(``factory.security.gate``), and the conformance, provenance and report record what was applied."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from factory.adapters.docker import Docker
from factory.adapters.gitinfo import Revision
from factory.archive.types import ArchiveIndex
from factory.build import gates, imagetest
from factory.build.buildx import BuildRequest, BuiltImage, build, missing_platforms, unbuildable_platforms
from factory.core import log, versioning
from factory.core.errors import BuildFailed, StepFailed
from factory.core.model import Manifest
from factory.core.reference import Ref
from factory.oci.registry import Registry
from factory.publish import inputs
from factory.publish.attestations import Attestor, build_packages
from factory.publish.destination import Destination
from factory.publish.report import ImageResult, VariantResult
from factory.publish.stages import Stages
from factory.publish.steps import step
from factory.render.contexts import FIXES_ARG, ORG_LAYER_ARG
from factory.security import gate as security_gate
from factory.security.check import IndexSource, release_of
from factory.security.fixes import Fix
from factory.security.record import SecurityFixes
from factory.spec.config import Settings

SECURITY_HINT = ("a package the base holds (apt-mark hold) or that the configured mirrors do not carry is not "
                 "upgraded: fix the base image or the mirrors in factory.yaml `archives:`, or set "
                 "policy.security_fixes: warn to publish with the fix pending")


@dataclass(frozen=True)
class Inputs:
    """What one variant is built from."""

    dockerfile: Path
    base_ref: str
    base_digest: str
    fingerprint: str
    version: versioning.Version
    base_name: str = ""  # the base by tag (inputs.base_name), for base.name; "": base_ref


@dataclass(frozen=True)
class VariantBuilder:
    settings: Settings
    docker: Docker
    stages: Stages
    revision: Revision
    dest: Destination
    registry_for: Callable[[str], Registry]
    attestor: Attestor
    workdir: Path
    archives: IndexSource  # the run's one reader of archive indexes, shared by every image

    def make(self, m: Manifest, result: ImageResult, given: Inputs, *, debug: bool,
             platforms: Sequence[str] | None = None) -> VariantResult:
        """``platforms`` narrows the build to some of the manifest's (fan-out: one per job)."""
        prefix = versioning.tag_prefix(m.name, debug=debug)
        out = VariantResult(tag_prefix=prefix, version=str(given.version), fingerprint=given.fingerprint)
        label = "debug " if debug else ""
        wanted = list(platforms or [str(p) for p in m.platforms])
        started = datetime.now(UTC)
        fixes = inputs.BaseFixes()
        if not debug and inputs.needs_upstream_user_files(m):  # else BuildKit fails late and opaquely
            with step(result, "upstream check"):
                inputs.check_upstream_user_files(m, self.registry_for, given.base_ref, given.base_digest, wanted)
        if not debug and inputs.fixes_apply(m, self.settings):  # debug: built FROM the prod image, which has them
            with step(result, "security fixes"):
                fixes = inputs.base_fixes(m, self.settings, self.registry_for, given.base_ref, given.base_digest,
                                          self.archives)
                self._log_fixes(m, fixes)
        build_args = {**inputs.build_args(self.revision, given.version, given.fingerprint, given.base_ref,
                                          given.base_digest, base_name=given.base_name,
                                          source=self.attestor.source_url), **fixes.args}
        out.fix_args = dict(fixes.args)
        with step(result, f"{label}build"):
            built = self._build(m, prefix, given.dockerfile, wanted, build_args, f"{label}build")
        out.index_digest, out.platforms = built.index_digest, dict(built.platform_digests)
        with step(result, f"{label}test"):
            checks = self._test(m, built, debug=debug, step_name=f"{label}test")
            out.checks = [asdict(c) for c in checks]
        with step(result, f"{label}gates"):
            gate_report, record = self._gates(m, built, given.base_ref, prefix, fixes.fixes, debug=debug)
            out.gates = gate_report.measurements
            checks += gate_report.checks
            out.checks = [asdict(c) for c in checks]
            out.security_fixes = record.to_json() if record else {}
        with step(result, f"{label}push"):
            pushed = self.dest.registry.push_layout(built.layout, self.dest.repository)
            out.gates["push"] = {"blobs_uploaded": pushed.blobs_uploaded, "blobs_skipped": pushed.blobs_skipped,
                                 "bytes": pushed.bytes}
        ref = self.dest.by_digest(out.index_digest)
        with step(result, f"{label}sign"):
            self.stages.signer.sign(ref, recursive=True)
            out.signatures = [ref] + [self.dest.by_digest(d) for d in out.platforms.values()]
        with step(result, f"{label}attest"):
            out.attestations = self.attestor.sboms(out, gate_report.sboms)
            out.attestations += self.attestor.scans(out)
            out.attestations += self.attestor.vex(m.name, out, self.stages.vuln_ignores)
            out.attestations += self.attestor.index(m, out, checks, given.base_ref, build_args, started,
                                                    security=record, packages=build_packages(m, built.layout,
                                                                                             out.gates["layers"]))
        return out

    def _build(self, m: Manifest, prefix: str, dockerfile: Path, platforms: list[str],
               build_args: dict[str, str], step_name: str) -> BuiltImage:
        if not self.settings.builder:  # a remote builder has its own machines; the local one needs QEMU
            missing = unbuildable_platforms(platforms)
            if missing:
                raise StepFailed(m.name, step_name, f"cannot build {', '.join(missing)} here: no QEMU "
                                 "emulation enabled in binfmt_misc", platform=missing[0],
                                 hint="run `make services` (it enables qemu-aarch64), or set `builder` to a "
                                      "buildx builder with native nodes")
        request = BuildRequest(name=prefix, dockerfile=dockerfile, platforms=tuple(platforms),
                               build_args=build_args, source_date_epoch=self.revision.commit_time,
                               annotations=inputs.oci_annotations(m, build_args))
        try:
            built = build(self.docker, request, self.workdir / prefix)
        except BuildFailed as e:
            raise StepFailed(m.name, step_name, e.detail, platform=", ".join(e.platforms) or None,
                             hint=build_hint(e, platforms)) from e
        missing = missing_platforms(built, platforms)
        if missing:
            raise StepFailed(m.name, "build", f"the build produced no image for {', '.join(missing)}",
                             platform=missing[0])
        return built

    def _test(self, m: Manifest, built: BuiltImage, *, debug: bool, step_name: str) -> list[imagetest.CheckResult]:
        checks = imagetest.test_image(self.docker, built.archive, built.layout,
                                      imagetest.Expectations.for_manifest(m, debug=debug))
        failed = imagetest.failures(checks)
        if failed:
            raise StepFailed(m.name, step_name, "; ".join(f"{c.name}: {c.detail}" for c in failed[:5]),
                             platform=failed[0].platform,
                             hint="the image was not pushed; fix the manifest or its tests")
        return checks

    def _gates(self, m: Manifest, built: BuiltImage, base_ref: str, prefix: str,
               base_fixes: Mapping[str, Sequence[Fix]], *,
               debug: bool) -> tuple[gates.GateReport, SecurityFixes | None]:
        report = gates.GateReport()
        base_reg = self.registry_for(Ref.parse(base_ref).registry)
        base = gates.base_image(base_reg, base_ref, built.layout.platforms)
        today = datetime.now(UTC).date()
        gates.layer_and_size(m, self.settings, built, base, today, report, budgets=not debug)
        gates.sboms_and_licenses(m, self.settings, built, self.stages.sbom, self.workdir / prefix / "sbom", report)
        record = None
        if not debug:  # the prod image's check; its debug variant adds tools, never upgrades
            record, fix_checks = security_gate.check(m, self.settings.policy.security_fixes, report,
                                                     built.platform_digests, self._index_for(m), base_fixes,
                                                     datetime.now(UTC))
            report.checks += fix_checks
        gates.vulnerabilities(m, self.settings, built, self.stages.scanner, self.stages.vuln_ignores, report,
                              image=m.name)
        gates.log_report(prefix, report)
        if report.errors:
            require = self.settings.policy.security_fixes == "require"
            failed_checks = [c for c in report.checks if not c.passed and require]
            raise StepFailed(m.name, "gates", "; ".join(report.errors[:5]),
                             platform=failed_checks[0].platform if failed_checks else None,
                             hint=SECURITY_HINT if failed_checks else
                             "see docs/gates.md for budgets, license lists and the vulnerability ignore file")
        report.measurements["warnings"] = report.warnings
        return report, record

    def _index_for(self, m: Manifest) -> Callable[[str, Mapping[str, Any]], ArchiveIndex | None]:
        """The gate's archive index of one platform: the manifest's release, else the SBOM's operating system."""
        def index_for(platform: str, sbom: Mapping[str, Any]) -> ArchiveIndex | None:
            release = release_of(m, {}, sbom)
            return None if release is None else self.archives.index_for(release.distro, release.codename, platform)
        return index_for

    def _log_fixes(self, m: Manifest, fixes: inputs.BaseFixes) -> None:
        if fixes.fixes:
            log.get("publish").info("security fixes to apply", image=m.name,
                                    packages=fixes.args.get(FIXES_ARG, "").split(),
                                    per_platform={p: len(f) for p, f in sorted(fixes.fixes.items())},
                                    org_layer=fixes.args.get(ORG_LAYER_ARG, "copy"))


def build_hint(e: BuildFailed, wanted: Sequence[str]) -> str | None:
    # Words for people only: a RUN step that failed on some platforms, not all, is most often a
    # package or command that does not exist for that architecture.
    if e.platforms and set(e.platforms) < set(wanted) and "did not complete successfully" in e.stderr:
        return (f"a RUN step failed on {', '.join(e.platforms)} only: check that every package and command "
                "exists for that architecture (or narrow the manifest's platforms)")
    return None
