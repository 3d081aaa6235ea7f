"""Assemble a publish run from the invocation: load and check manifests, pick the stage
implementations (signer, SBOM generator, scanner), and hand over to ``factory.publish``.
The CLI calls this; tests can call it with their own context."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

from factory.adapters import ci, gitinfo
from factory.adapters.tools import INSTALL_HINT
from factory.core import log
from factory.core.errors import (
    EnvironmentProblem,
    ManifestError,
    StaleContexts,
    UsageError,
)
from factory.publish.publisher import Publisher, RunReport, Stages, utc_now
from factory.render import contexts as render
from factory.spec import manifest, policy

VULN_IGNORE_FILE = "vuln-ignore.yaml"


def publish(ctx, names: Sequence[str], *, all_: bool = False, force: bool = False,
            scan_report: Path | None = None, only_platform: str | None = None) -> RunReport:
    catalog = _checked_catalog(ctx.settings)
    selected = [m.name for m in catalog.ordered()] if all_ else list(names)
    _known(catalog, selected)
    publisher = _publisher(ctx, catalog, force, scan_report)
    return _finished(publisher, publisher.publish(selected, only_platform=only_platform))


def merge(ctx, name: str, digests: Mapping[str, str], *, force: bool = False) -> RunReport:
    catalog = _checked_catalog(ctx.settings)
    _known(catalog, [name])
    publisher = _publisher(ctx, catalog, force, None)
    return _finished(publisher, publisher.merge(name, digests))


def nightly(ctx, *, branch: str | None = None, commit: bool = True) -> RunReport:
    """drift --update --commit, render what the bumps changed, plan, publish what the plan says.
    When nothing drifted and nothing changed it builds nothing: the run is only digest look-ups."""
    from factory.ops import drift
    from factory.render import plan as plan_mod

    settings = ctx.settings
    notes = []
    bumped = drift.run(manifest.load_all(settings), ctx.registry, update=True, commit=commit, branch=branch,
                       repo_root=settings.root)
    notes += [drift.commit_message(d) for d in bumped.updated]
    if bumped.updated:
        catalog = manifest.load_all(settings)  # re-read: the digests changed
        written = render.write_all(catalog, settings)
        if commit and written:
            names = ", ".join(d.name for d in bumped.updated)
            gitinfo.commit(settings.root, [settings.images_dir], f"images: render after upstream bumps ({names})")
    catalog = _checked_catalog(settings)
    planned = plan_mod.make_plan(catalog, settings, ctx.registry)
    to_build = [p.name for p in planned.to_build()]
    notes += [f"plan: {p.name}: {', '.join(p.reasons)}" for p in planned.to_build()]
    if not to_build:
        log.get("nightly").info("nothing drifted and nothing changed: no builds")
        notes.append("nothing drifted and nothing changed: no builds")
        report = RunReport(run_id="nightly", started=utc_now(), finished=utc_now(), notes=notes)
        ci.summary(markdown_summary(report))
        return report
    publisher = _publisher(ctx, catalog, False, None)
    report = publisher.publish(to_build)
    report.notes = notes
    return _finished(publisher, report)


def _checked_catalog(settings):
    """Manifests that load, pass policy, and whose committed contexts are what they render to."""
    catalog = manifest.load_all(settings)
    refuse_policy_errors(catalog, settings)
    diff = render.check(catalog, settings)
    if diff:
        raise StaleContexts(diff)
    return catalog


def _known(catalog, names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in catalog]
    if unknown:
        raise UsageError(f"no manifest named {', '.join(unknown)}; known: {', '.join(sorted(catalog))}")


def _publisher(ctx, catalog, force: bool, scan_report: Path | None) -> Publisher:
    return Publisher(ctx.settings, catalog, ctx.docker, stages(ctx, scan_report), gitinfo.revision(ctx.settings.root),
                     ctx.registry, workdir=workdir(ctx.settings), force=force)


def _finished(publisher: Publisher, report: RunReport) -> RunReport:
    ci.summary(markdown_summary(report))
    if report.ok:  # keep the artifacts of a failed run for inspection
        shutil.rmtree(publisher.workdir, ignore_errors=True)
    else:
        log.get("publish").warning("kept the build artifacts for inspection", workdir=str(publisher.workdir))
    return report


def refuse_policy_errors(catalog, settings) -> None:
    errors = [p for p in policy.evaluate(catalog, settings, today=date.today()) if p.severity == "error"]
    if errors:
        raise ManifestError(errors)


def stages(ctx, scan_report: Path | None) -> Stages:
    from factory.build import sbom, scan
    from factory.trust import sign

    settings, runner = ctx.settings, ctx.runner
    # Before anything is built: a publish that would build for minutes and then find no cosign fails now.
    if not runner.which("cosign"):
        raise EnvironmentProblem(f"publish needs cosign (sign, attest and parent verification steps); "
                                 f"it was not found in {runner.searched}", hint=INSTALL_HINT)
    if not settings.signing.key and not settings.signing.keyless:
        sign.ensure_dev_key(settings, runner)
    cache = settings.state_dir / "cache" / "trivy"
    scanner = scan.RecordedScanner(scan_report) if scan_report else scan.TrivyScanner(runner, cache)
    ignore_file = settings.root / VULN_IGNORE_FILE
    ignores = tuple(scan.load_ignores(ignore_file, date.today())) if ignore_file.exists() else ()
    return Stages(signer=sign.Signer(settings, runner), sbom=sbom.choose_generator(runner, cache),
                  scanner=scanner, vuln_ignores=ignores)


def workdir(settings) -> Path:
    path = settings.state_dir / "work" / uuid.uuid4().hex[:12]
    path.mkdir(parents=True, exist_ok=True)
    return path


def summary(report: RunReport) -> str:
    lines = []
    for i in report.images:
        tags = (i.prod.tags if i.prod else []) + (i.debug.tags if i.debug else [])
        digest = i.prod.index_digest if i.prod else ""
        version = i.prod.version if i.prod else ""
        if i.status == "failed":
            detail = f"failed at {i.step}: {i.error}"
        elif i.status == "pushed":
            platforms = ", ".join(f"{p}={d}" for p, d in (i.prod.platforms if i.prod else {}).items())
            detail = f"{version} pushed by digest, no tag: {platforms}"
        else:
            detail = f"{version} {digest} tags: {', '.join(tags) or '-'}"
        lines.append(f"{i.name:32} {i.status:10} {detail}")
    return "\n".join(lines)


def markdown_summary(report: RunReport) -> str:
    rows = ["| image | status | version | index digest | tags |", "|---|---|---|---|---|"]
    for i in report.images:
        tags = (i.prod.tags if i.prod else []) + (i.debug.tags if i.debug else [])
        status = i.status if i.status != "failed" else f"failed at {i.step}"
        rows.append(f"| {i.name} | {status} | {i.prod.version if i.prod else ''} | "
                    f"`{i.prod.index_digest if i.prod else ''}` | {', '.join(tags)} |")
    notes = "".join(f"- {n}\n" for n in report.notes)
    return "### factory publish\n\n" + (notes + "\n" if notes else "") + "\n".join(rows) + "\n"
