"""Assemble a publish run from the invocation: load and check manifests, pick the stage
implementations (signer, SBOM generator, scanner), and hand over to ``publish.publisher``.
The CLI calls this; tests can call it with their own context."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import requests

from factory.adapters import ci, gitinfo
from factory.adapters.tools import INSTALL_HINT
from factory.archive.fetch import Archives
from factory.build import sbom, scan
from factory.context import RunContext
from factory.core import log, progress
from factory.core.errors import (
    EnvironmentProblem,
    FactoryError,
    ManifestError,
    StaleContexts,
    UsageError,
)
from factory.ops import drift
from factory.publish import current
from factory.publish.publisher import Publisher
from factory.publish.report import RunReport, markdown_summary, utc_now
from factory.publish.stages import Stages
from factory.render import contexts as render
from factory.render import plan as planning
from factory.security import rescan as rescan_mod
from factory.security.check import FixesChecker
from factory.spec import manifest, policy
from factory.spec.config import Settings
from factory.spec.manifest import ManifestSet
from factory.trust import sign

VULN_IGNORE_FILE = "vuln-ignore.yaml"


def publish(ctx: RunContext, names: Sequence[str], *, all_: bool = False, force: bool = False,
            scan_report: Path | None = None, only_platform: str | None = None) -> RunReport:
    manifests = _checked_manifests(ctx.settings)
    selected = [m.name for m in manifests.ordered()] if all_ else list(names)
    manifest.select(manifests, selected)
    with requests.Session() as session:
        publisher = _publisher(ctx, manifests, force, scan_report, security_check(ctx, manifests, session))
        return _finished(publisher, publisher.publish(selected, only_platform=only_platform))


def merge(ctx: RunContext, name: str, digests: Mapping[str, str], *, force: bool = False) -> RunReport:
    manifests = _checked_manifests(ctx.settings)
    manifest.select(manifests, [name])
    with requests.Session() as session:
        publisher = _publisher(ctx, manifests, force, None, security_check(ctx, manifests, session))
        return _finished(publisher, publisher.merge(name, digests))


@dataclass
class Nightly:
    """What a nightly did: the publish report (its notes say why each image was built, and with which
    security fixes), and the fixes checks that failed (their images' fixes are unknown)."""

    report: RunReport
    unchecked: tuple[str, ...] = ()


def nightly(ctx: RunContext, *, branch: str | None = None, commit: bool = True) -> Nightly:
    """Check the current versions' security fixes, drift --update --commit, render what the bumps changed,
    plan, publish what the plan says. When nothing drifted, nothing changed and no security fix is
    pending it builds nothing: the run is digest look-ups, SBOM verifications and the archive indexes."""
    settings = ctx.settings
    notes: list[str] = []
    with requests.Session() as session:
        security = security_check(ctx, manifest.load_all(settings), session)
        with progress.phase("drift"):  # the phases the terminal's live view shows
            fixes = security.check() if security else {}
            bumped = drift.run(manifest.load_all(settings), ctx.registry, update=True, commit=commit,
                               branch=branch, repo_root=settings.root)
        notes += [drift.commit_message(d) for d in bumped.updated]
        with progress.phase("commits"):
            if bumped.updated:
                manifests = manifest.load_all(settings)  # re-read: the digests changed
                written = render.write_all(manifests, settings)
                if commit and written:
                    names = [d.name for d in bumped.updated]
                    gitinfo.commit(settings.root, [settings.images_dir], render_commit_message(names, fixes))
        with progress.phase("scan"):
            rescanned = nightly_rescan(ctx)
        notes += rescanned.lines()
        with progress.phase("plan"):
            manifests = _checked_manifests(settings)
            planned = planning.make_plan(manifests, settings, ctx.registry, fixes=fixes,
                                         vulnerable=rescanned.vulnerable())
        notes += plan_notes(planned)
        unchecked = unchecked_lines(fixes)
        if not planned.to_build():
            # "no security fix pending" only when it was checked: with the policy off nothing was
            checked = settings.policy.security_fixes != "off"
            quiet = ("nothing drifted, nothing changed and no security fix pending: no builds" if checked
                     else "nothing drifted and nothing changed: no builds")
            log.get("nightly").info(quiet)
            notes.append(quiet)
            report = RunReport(run_id="nightly", started=utc_now(), finished=utc_now(), notes=notes)
            ci.summary(markdown_summary(report))
            return Nightly(report, unchecked)
        with progress.phase("publish"):
            publisher = _publisher(ctx, manifests, False, None, security)
            report = publisher.publish([p.name for p in planned.to_build()])
        report.notes = notes
        return Nightly(_finished(publisher, report), unchecked)


def rescan(ctx: RunContext, names: Sequence[str] = (), *, public_key: Path | None = None) -> rescan_mod.RescanRun:
    """`factory scan`: the current versions with today's database (fetched once), attested per platform."""
    scanner = trivy_scanner(ctx)
    return rescan_mod.rescanner(ctx.settings, ctx.runner, ctx.registry, scanner, vuln_ignores(ctx.settings),
                                uuid.uuid4().hex[:12], public_key=public_key).run(names)


def nightly_rescan(ctx: RunContext) -> rescan_mod.RescanRun:
    """The nightly's rescan of the current versions (a new CRITICAL makes the plan rebuild the image). Its
    failures are the nightly report's lines, not the nightly's end: the plan and publish still run."""
    try:
        return rescan(ctx)
    except FactoryError as e:
        log.get("nightly").error("rescan failed", error=e.message)
        return rescan_mod.RescanRun(unpublished=[], images=[], errors=[f"rescan failed: {e.message}"])


def vulnerable_from(report: Path) -> dict[str, str]:
    """manifest name -> version with a blocking finding, from a `factory scan --report` file."""
    try:
        doc = json.loads(report.read_text())
        return {i["image"]: i["version"] for i in doc["images"] if i.get("blocking")}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{report}: not a `factory scan --report` file ({e})") from None


def plan_notes(planned: planning.Plan) -> list[str]:
    """One line per image to build with its reasons, the security fixes a rebuild applies (package old ->
    new, suite), then the plan's own notes (fixes only an upstream brings, checks that failed)."""
    notes = []
    for p in planned.to_build():
        notes.append(f"plan: {p.name}: {', '.join(p.reasons)}")
        if p.security_fixes:
            notes.append(fixes_line(p.name, p.current_version, p.security_fixes))
    return notes + [f"note: {n}" for n in planned.notes]


def fixes_line(name: str, version: str | None, fixes: Sequence[planning.PendingFix]) -> str:
    """"security fixes for base (pending in 1.0.0): apt 2.6.1 -> 2.6.2 (bookworm-security), ..."."""
    return f"security fixes for {name} (pending in {version}): {', '.join(map(str, fixes))}"


def render_commit_message(names: Sequence[str], fixes: Mapping[str, planning.ImageFixes]) -> str:
    """The nightly's render commit: the images bumped, and the security fixes pending in their current
    versions (which the rebuild on the new upstream brings, if the upstream has not already)."""
    subject = f"images: render after upstream bumps ({', '.join(names)})"
    lines = [fixes_line(n, fixes[n].version, fixes[n].fixable) for n in names if n in fixes and fixes[n].fixable]
    return subject + ("\n\n" + "\n".join(lines) if lines else "")


def unchecked_lines(fixes: Mapping[str, planning.ImageFixes]) -> tuple[str, ...]:
    return tuple(e for f in fixes.values() for e in f.errors)


def security_check(ctx: RunContext, manifests: ManifestSet, session: requests.Session) -> current.SecurityCheck | None:
    """The run's security check (one ``Archives`` on ``session``: each index read once); None when
    policy.security_fixes is off (then nothing is checked, and a publish builds exactly as before)."""
    settings = ctx.settings
    if settings.policy.security_fixes == "off":
        return None
    archives = Archives(settings.archives, session, ctx.runner)
    checker = FixesChecker(settings, ctx.registry, sign.Signer(settings, ctx.runner), manifests, archives)
    return current.SecurityCheck(checker, settings.policy.security_fixes)


def plan(ctx: RunContext, names: Sequence[str], *, force: bool = False,
         vulnerable: Mapping[str, str] | None = None) -> planning.Plan:
    """What `factory publish` would build now, and why. It fingerprints the committed contexts, as
    publish does: stale ones are planned with a warning (publish refuses them). With
    policy.security_fixes require or warn it also checks the current versions' pending security fixes
    (their verified SBOMs against the archive indexes), as publish does."""
    manifests = manifest.load_all(ctx.settings)
    manifest.select(manifests, names)  # an unknown name is a usage error with a hint
    stale = render.check(manifests, ctx.settings)
    if stale:
        log.get("plan").warning("images/ is not what the manifests render: this plans the committed contexts, "
                                "and publish refuses until you run `factory render`",
                                stale_files=render.stale_files(stale))
    with requests.Session() as session:
        security = security_check(ctx, manifests, session)
        in_scope = [m.name for m in manifests.ordered()
                    if not names or m.name in names or any(a.name in names for a in manifests.ancestors(m.name))]
        fixes = security.check(in_scope) if security else {}
    return planning.make_plan(manifests, ctx.settings, ctx.registry, names, force=force, fixes=fixes,
                              vulnerable=vulnerable)


def _checked_manifests(settings: Settings) -> ManifestSet:
    """Manifests that load, pass policy, and whose committed contexts are what they render to."""
    manifests = manifest.load_all(settings)
    refuse_policy_errors(manifests, settings)
    diff = render.check(manifests, settings)
    if diff:
        raise StaleContexts(diff)
    return manifests


def _publisher(ctx: RunContext, manifests: ManifestSet, force: bool, scan_report: Path | None,
               security: current.SecurityCheck | None = None) -> Publisher:
    return Publisher(ctx.settings, manifests, ctx.docker, stages(ctx, scan_report), gitinfo.revision(ctx.settings.root),
                     ctx.registry, workdir=workdir(ctx.settings), force=force, security=security)


def _finished(publisher: Publisher, report: RunReport) -> RunReport:
    ci.summary(markdown_summary(report))
    if report.ok:  # keep the artifacts of a failed run for inspection
        shutil.rmtree(publisher.workdir, ignore_errors=True)
    else:
        log.get("publish").warning("kept the build artifacts for inspection", workdir=str(publisher.workdir))
    return report


def refuse_policy_errors(manifests: ManifestSet, settings: Settings) -> None:
    errors = [p for p in policy.evaluate(manifests, settings, today=date.today()) if p.severity == "error"]
    if errors:
        raise ManifestError(errors)


def stages(ctx: RunContext, scan_report: Path | None) -> Stages:
    settings, runner = ctx.settings, ctx.runner
    # Before anything is built: a publish that would build for minutes and then find no cosign fails now.
    if not runner.which("cosign"):
        raise EnvironmentProblem(f"publish needs cosign (sign, attest and parent verification steps); "
                                 f"it was not found in {runner.searched}", hint=INSTALL_HINT)
    if not settings.signing.key and not settings.signing.keyless:
        sign.ensure_dev_key(settings, runner)
    cache = trivy_cache(settings)
    scanner: scan.Scanner = scan.RecordedScanner(scan_report) if scan_report else trivy_scanner(ctx)
    return Stages(signer=sign.Signer(settings, runner), sbom=sbom.choose_generator(runner, cache),
                  scanner=scanner, vuln_ignores=vuln_ignores(settings))


def trivy_cache(settings: Settings) -> Path:
    return settings.state_dir / "cache" / "trivy"


def trivy_scanner(ctx: RunContext) -> scan.TrivyScanner:
    """The run's one scanner: its database is fetched from scanner.db_repository at the first scan."""
    s = ctx.settings.scanner
    return scan.TrivyScanner(ctx.runner, db_cache(ctx.settings), source=s.db_repository,
                             registry_for=ctx.registry, max_age=timedelta(hours=s.db_max_age_hours))


def db_cache(settings: Settings) -> Path:
    """trivy's cache folder for scanning: one per database source, so that a database fetched from one
    repository is never used by a run configured with another (or with none: the folder placed by hand)."""
    source = settings.scanner.db_repository
    if not source:
        return trivy_cache(settings)
    return settings.state_dir / "cache" / "trivy-db" / hashlib.sha256(source.encode()).hexdigest()[:16]


def vuln_ignores(settings: Settings) -> tuple[scan.Ignore, ...]:
    ignore_file = settings.root / VULN_IGNORE_FILE
    return tuple(scan.load_ignores(ignore_file, date.today())) if ignore_file.exists() else ()


def workdir(settings: Settings) -> Path:
    path = settings.state_dir / "work" / uuid.uuid4().hex[:12]
    path.mkdir(parents=True, exist_ok=True)
    return path
