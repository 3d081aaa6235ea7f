"""The `factory` command: thin glue over the stage modules. Only ``main`` exits the process."""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import click

from factory import __version__
from factory.adapters import ci, gitinfo
from factory.build import vulndb
from factory.consume import appteams, changelog, freshness, site
from factory.consume import lifecycle as lifecycle_mod
from factory.consume import prune as prune_mod
from factory.context import RunContext
from factory.core import console, log, platforms
from factory.core.errors import (
    EXIT_BUG,
    EXIT_ENVIRONMENT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BasesRefused,
    DoctorFailed,
    DriftFound,
    FactoryError,
    FixesCheckFailed,
    ManifestError,
    NotVerified,
    Problem,
    PublishFailed,
    StaleRender,
    UsageError,
    ValidationFailed,
)
from factory.ops import doctor as doctor_mod
from factory.ops import drift as drift_mod
from factory.ops import seed as seed_mod
from factory.publish import pipeline
from factory.publish import report as report_mod
from factory.render import contexts as render_mod
from factory.render import plan as plan_mod
from factory.security import check as security_check
from factory.spec import certs, manifest, policy
from factory.trust import sign
from factory.trust import verify as verify_mod

pass_ctx = click.make_pass_decorator(RunContext)
TRIVY_DB = "trivy-db"  # `factory seed trivy-db`
LIVE = "factory.live"  # click meta key: show the live view (factory.core.console) on this terminal


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="factory.yaml to use (default: ./factory.yaml, else built-in defaults).")
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default="auto",
              show_default=True, help="auto: JSON lines when stderr is not a terminal or CI is set.")
@click.option("-v", "--verbose", count=True,
              help="Debug logs (commands run, timings); on a terminal, the logs instead of the live view.")
@click.version_option(__version__, prog_name="factory")
@click.pass_context
def cli(click_ctx: click.Context, config_path: Path | None, log_format: log.LogFormat, verbose: int) -> None:
    """Build, test, sign and publish the organisation's container base images."""
    log.configure(log_format, verbose)  # click.Choice above admits only the LogFormat values
    click_ctx.meta[LIVE] = log.live_wanted(log_format, verbose)
    click_ctx.obj = RunContext(config_path)


@cli.command()
@pass_ctx
def doctor(ctx: RunContext) -> None:
    """Check the toolchain and local services; exit 2 with what to do when something is missing."""
    report = doctor_mod.run(ctx.settings, ctx.runner, ctx.docker)
    click.echo(report.render())
    if not report.ok:
        raise DoctorFailed([c.name for c in report.checks if not c.ok])


@cli.command()
@click.argument("names", nargs=-1)
@pass_ctx
def seed(ctx: RunContext, names: tuple[str, ...]) -> None:
    """Push locally made upstream images (busybox, noshell, debian) and the scanner's database (trivy-db: the
    test database's invented advisories, dated now) to the registry; print their refs.

    For the demo and the integration tests: there is no Docker Hub here.
    """
    wanted = names or (*seed_mod.FIXTURES, TRIVY_DB)
    seeder = seed_mod.Seeder(ctx.settings, ctx.runner, ctx.docker)
    seeded = seeder.seed([n for n in wanted if n != TRIVY_DB], ctx.settings.platforms)
    if TRIVY_DB in wanted:  # the scanner's database: an artifact, not an image to build
        digest = vulndb.seed_fixture(ctx.registry(ctx.settings.registry), now=datetime.now(UTC))
        seeded.append(seed_mod.Seeded(TRIVY_DB, f"{ctx.settings.registry}/{vulndb.FIXTURE_REPOSITORY}",
                                      vulndb.FIXTURE_TAG, digest, "", ""))
    click.echo(seed_mod.as_json(seeded))


@cli.command("policy")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table",
              show_default=True, help="markdown is docs/policy.md: factory policy --format markdown > docs/policy.md")
def policy_cmd(fmt: str) -> None:
    """List the policy rules: id, severity, stage, and whether a manifest may waive it."""
    if fmt == "json":
        click.echo(json.dumps(policy.rule_table_rows(), indent=2))
    elif fmt == "markdown":
        click.echo(policy.render_docs(), nl=False)
    else:
        click.echo(policy.render_rule_table())


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@pass_ctx
def validate(ctx: RunContext, paths: tuple[Path, ...]) -> None:
    """Check manifests (files or folders; default: all of manifests_dir): structure, meaning, policy.

    Prints every problem as `path:line: key.path: message`, then a summary; exits 1 on any error.
    """
    settings = ctx.settings
    try:
        manifests = manifest.load_all(settings, list(paths) or None)
    except ManifestError as e:
        _echo_problems(e.problems)
        checked = len(manifest.find_files(settings, list(paths) or None)[0])
        click.echo(f"validated {checked} manifests: {len(e.problems)} errors, 0 warnings "
                   "(policy runs once these are fixed)")
        raise ValidationFailed(len(e.problems)) from None
    findings = policy.evaluate(manifests, settings, today=date.today())
    findings += certs.problems(manifests, settings)  # the CA files of factory.yaml and the manifests
    findings += render_mod.refusals(manifests, settings, findings)  # and whatever render would refuse
    _echo_problems(findings)
    errors = sum(p.severity == "error" for p in findings)
    click.echo(f"validated {len(manifests)} manifests: {errors} errors, {len(findings) - errors} warnings")
    if errors:
        raise ValidationFailed(errors)


def _echo_problems(problems: Iterable[Problem]) -> None:
    for found in sorted(problems, key=lambda p: (manifest.shown_path(p.path), p.line or 0, p.key)):
        p = replace(found, path=manifest.shown_path(found.path))
        click.echo(("warning: " if p.severity == "warning" else "") + str(p))
        if ci.on_github():  # an annotation on the file in the PR view
            click.echo(ci.annotation("warning" if p.severity == "warning" else "error", p.message, file=p.path,
                                     line=p.line, title=p.key or "manifest"))


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Publish every manifest, parents first.")
@click.option("--report", "report_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the run's JSON report here.")
@click.option("--force", is_flag=True, help="Build a new version even when the inputs are unchanged.")
@click.option("--scan-report", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Use this recorded trivy JSON report instead of running the scanner.")
@click.option("--platform", "only_platform", help="Fan-out: build only this platform (needs --push-by-digest-only).")
@click.option("--push-by-digest-only", is_flag=True,
              help="Fan-out: push, sign and attest by digest, write no tag; `factory merge` finishes.")
@pass_ctx
def publish(ctx: RunContext, names: tuple[str, ...], all_: bool, report_path: Path | None, force: bool,
            scan_report: Path | None, only_platform: str | None, push_by_digest_only: bool) -> None:
    """Build, test, gate, push by digest, sign, attest and tag the named images."""
    if not names and not all_:
        raise UsageError("name the images to publish, or pass --all")
    if bool(only_platform) != push_by_digest_only:
        raise UsageError("--platform and --push-by-digest-only go together: a single-platform image is never tagged")
    with _shown(ctx, "publish", report_path) as live:
        report = pipeline.publish(ctx, names, all_=all_, force=force, scan_report=scan_report,
                                  only_platform=_platform(only_platform) if only_platform else None)
    _end_of_run(report, report_path, ctx if live else None)


@cli.command()
@click.argument("name")
@click.option("--digest", "digests", multiple=True, required=True, metavar="PLATFORM=sha256:...",
              help="A platform image pushed by `publish --platform P --push-by-digest-only` (repeat per platform).")
@click.option("--report", "report_path", type=click.Path(path_type=Path, dir_okay=False))
@pass_ctx
def merge(ctx: RunContext, name: str, digests: tuple[str, ...], report_path: Path | None) -> None:
    """Fan-out's last step: one index from the per-platform digests, then sign, attest and tag."""
    parsed: dict[str, str] = {}
    for item in digests:
        platform, sep, digest = item.partition("=")
        if not sep or not digest.startswith("sha256:"):
            raise UsageError(f"--digest {item!r}: expected PLATFORM=sha256:<digest>")
        parsed[_platform(platform, f"--digest {item!r}: ")] = digest
    with _shown(ctx, "merge", report_path) as live:
        report = pipeline.merge(ctx, name, parsed)
    _end_of_run(report, report_path, ctx if live else None)


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "github-matrix", "bake"]), default="table",
              show_default=True)
@click.option("--force", is_flag=True, help="Plan every listed image (all when none is named) as changed.")
@click.option("--level", type=int, help="github-matrix: only this build level (0: parent not rebuilt).")
@click.option("--runner", "runners", multiple=True, metavar="PLATFORM=LABEL",
              help="github-matrix: the runner label for a platform (default linux/arm64=ubuntu-24.04-arm).")
@click.option("--stats", is_flag=True, help="Print the number of registry requests to stderr.")
@click.option("--vulnerable-from", "scan_report", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A `factory scan --report` file: its images with a blocking finding are planned as 'vulnerable'.")
@pass_ctx
def plan(ctx: RunContext, names: tuple[str, ...], fmt: str, force: bool, level: int | None, runners: tuple[str, ...],
         stats: bool, scan_report: Path | None) -> None:
    """What must be built and why: new, upstream changed, parent changed, manifest changed, security fixes,
    forced. Informational: exits 0 whatever it finds (2 when a security-fixes check failed under require)."""
    labels = plan_mod.RUNNERS | plan_mod.parse_runners(runners)
    with _shown(ctx, "plan"):
        vulnerable = pipeline.vulnerable_from(scan_report) if scan_report else None
        result = pipeline.plan(ctx, names, force=force, vulnerable=vulnerable)
    if fmt != "table":  # the other formats are read by tools: the notes go to stderr
        for note in result.notes:
            click.echo(f"note: {note}", err=True)
    if fmt == "table":
        click.echo(plan_mod.table(result))
    elif fmt == "json":
        click.echo(plan_mod.as_json(result))
    elif fmt == "github-matrix":
        click.echo(json.dumps(plan_mod.github_matrix(result, labels, level=level)))
    else:
        bake = plan_mod.bake(result, ctx.settings, gitinfo.revision(ctx.settings.root))
        click.echo(json.dumps(bake, indent=2))
    requests = ctx.registry_requests()
    log.get("plan").debug("registry requests", requests=requests)
    if stats:
        click.echo(f"registry requests: {requests}", err=True)
    _unchecked(ctx, pipeline.unchecked_lines(result.fixes))


@cli.command()
@click.option("--branch", help="Commit the bumps on this branch (created from HEAD when missing).")
@click.option("--no-commit", is_flag=True, help="Update manifests and contexts in the work tree, commit nothing.")
@click.option("--report", "report_path", type=click.Path(path_type=Path, dir_okay=False))
@pass_ctx
def nightly(ctx: RunContext, branch: str | None, no_commit: bool, report_path: Path | None) -> None:
    """drift --update --commit, render, plan, publish what changed (and everything built on it)."""
    with _shown(ctx, "nightly", report_path) as live:
        run = pipeline.nightly(ctx, branch=branch, commit=not no_commit)
    click.echo("\n".join(run.report.notes))
    _end_of_run(run.report, report_path, ctx if live else None)
    _unchecked(ctx, run.unchecked)


def _unchecked(ctx: RunContext, lines: tuple[str, ...]) -> None:
    """Security fixes that could not be checked are unknown, never "none pending": exit 2 under require."""
    if lines and ctx.settings.policy.security_fixes == "require":
        raise FixesCheckFailed(list(lines))


@cli.command()
@click.option("--update", is_flag=True, help="Rewrite the digest line of each drifted manifest.")
@click.option("--commit", "commit_", is_flag=True, help="With --update: one git commit per manifest.")
@click.option("--branch", help="With --commit: commit on this branch (created from HEAD when missing).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_ctx
def drift(ctx: RunContext, update: bool, commit_: bool, branch: str | None, fmt: str) -> None:
    """Compare each upstream tag's current digest with the pinned one. Exit 3 when something drifted."""
    if commit_ and not update:
        raise UsageError("--commit needs --update")
    result = drift_mod.run(manifest.load_all(ctx.settings), ctx.registry, update=update, commit=commit_, branch=branch,
                           repo_root=ctx.settings.root)
    click.echo(drift_mod.as_json(result.drifts) if fmt == "json" else drift_mod.table(result.drifts))
    if result.drifted:
        raise DriftFound(f"{len(result.drifted)} upstream(s) drifted"
                         + (" (manifests updated)" if result.updated else ""))


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--check", is_flag=True,
              help="Write nothing: print a diff and exit 1 when images/ differs from what the manifests render.")
@pass_ctx
def render(ctx: RunContext, names: tuple[str, ...], check: bool) -> None:
    """Render build contexts into images/<name>/ (all manifests, or the NAMES given)."""
    settings = ctx.settings
    selected = manifest.select(manifest.load_all(settings), names)
    if check:
        diff = render_mod.check(selected, settings)
        if diff:
            click.echo(diff, nl=False)
            raise StaleRender(f"{render_mod.stale_files(diff)} rendered file(s) are stale",
                              hint="run `factory render` and commit images/")
        click.echo(f"{len(selected)} image context(s) up to date")
        return
    touched = render_mod.write_all(selected, settings)
    for path in touched:
        click.echo(f"{'removed' if not path.exists() else 'wrote'} {render_mod.display_path(path, settings)}")
    click.echo(f"rendered {len(selected)} image context(s): {len(touched)} file(s) changed")


@cli.command()
@click.argument("ref")
@click.option("--key", "public_key", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="cosign public key (default: the configured key's .pub, or the dev key's).")
@click.option("--certificate-identity", "identity", metavar="ID",
              help="Keyless: the signer's identity (the CI workflow URI); with --certificate-oidc-issuer.")
@click.option("--certificate-oidc-issuer", "issuer", metavar="URL",
              help="Keyless: the OIDC issuer, e.g. https://token.actions.githubusercontent.com.")
@pass_ctx
def verify(ctx: RunContext, ref: str, public_key: Path | None, identity: str | None, issuer: str | None) -> None:
    """Verify a published image (tag or digest): signatures, SBOM per platform, conformance, provenance, labels."""
    if bool(identity) != bool(issuer):
        raise UsageError("keyless verification needs both --certificate-identity and --certificate-oidc-issuer")
    keyless = sign.KeylessIdentity(identity, issuer) if identity and issuer else None
    signer = sign.Signer(ctx.settings, ctx.runner)
    manifests = verify_mod.local_manifests(ctx.settings)
    report = verify_mod.verify_image(ref, signer, ctx.registry, manifests, public_key=public_key, identity=keyless)
    if report.conformance is not None:  # the record is read only from a conformance that verified
        report.findings.append(freshness.finding(report))
    if report.index_digest:
        report.findings.append(appteams.lifecycle_finding(signer, report, public_key))
    click.echo(report.render())
    if report.index_digest:
        click.echo("\nthe same with the cosign CLI:\n  " + "\n  ".join(
            verify_mod.cosign_commands(report, signer, public_key, keyless)))
    if not report.ok:
        raise NotVerified(report.ref, [f.check for f in report.findings if not f.ok])


@cli.command()
@pass_ctx
def keygen(ctx: RunContext) -> None:
    """Create the development cosign key pair under the state folder (once; never overwritten)."""
    key, pub = sign.ensure_dev_key(ctx.settings, ctx.runner)
    click.echo(f"private key: {key}\npublic key:  {pub}")


@cli.command("catalog")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write the site into (created; index.html, images/, catalog.json, README.md).")
@click.option("--key", "public_key", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="cosign public key to verify with (default: the configured key's .pub, or the dev key's).")
@click.option("--platform", "reference_platform", default="linux/amd64", show_default=True,
              help="The platform whose SBOMs the changelogs compare.")
@pass_ctx
def catalog_cmd(ctx: RunContext, out_dir: Path, public_key: Path | None, reference_platform: str) -> None:
    """Write the catalog for app teams from the registry: every image, version and changelog."""
    signer = sign.Signer(ctx.settings, ctx.runner)
    result = site.build(ctx.settings, ctx.registry, signer, out_dir, today=date.today(), public_key=public_key,
                        reference_platform=_platform(reference_platform), runner=ctx.runner)
    versions = sum(len(i.versions) for i in result.images)
    click.echo(f"catalog: {len(result.images)} images, {versions} versions -> {out_dir / 'index.html'}")


@cli.command("diff")
@click.argument("ref_a")
@click.argument("ref_b")
@click.option("--platform", default="linux/amd64", show_default=True, help="Which platform's SBOMs to compare.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--key", "public_key", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="cosign public key to verify the SBOM attestations with.")
@pass_ctx
def diff_cmd(ctx: RunContext, ref_a: str, ref_b: str, platform: str, fmt: str, public_key: Path | None) -> None:
    """Packages added, removed, upgraded from REF_A to REF_B (tags or digests), from their verified SBOMs."""
    platform = _platform(platform)
    signer = sign.Signer(ctx.settings, ctx.runner)
    diff, old, new = changelog.compare(ref_a, ref_b, platform, ctx.registry, signer, public_key=public_key)
    if fmt == "json":
        click.echo(changelog.as_json(diff, old, new))
    else:
        click.echo(f"{ref_a} -> {ref_b} ({platform})\n{changelog.table(diff)}")


@cli.command("fixes")
@click.argument("names", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--key", "public_key", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="cosign public key to verify the SBOM attestations with.")
@pass_ctx
def fixes_cmd(ctx: RunContext, names: tuple[str, ...], fmt: str, public_key: Path | None) -> None:
    """Pending distro fixes of each image's current version, per platform, from its verified SBOM.
    Exit 4 when a security fix is pending, 0 when none (other updates only: 0 with a note), 2 when a check failed."""
    result = security_check.run(ctx.settings, ctx.runner, ctx.registry, names, public_key=public_key)
    click.echo(result.render(fmt))
    result.raise_for_outcome()


@cli.command("scan")
@click.argument("names", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--report", "report_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the rescan as JSON here (the nightly report's scan part).")
@click.option("--key", "public_key", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="cosign public key to verify the SBOM and conformance attestations with.")
@pass_ctx
def scan_cmd(ctx: RunContext, names: tuple[str, ...], fmt: str, report_path: Path | None,
             public_key: Path | None) -> None:
    """Rescan the current versions with today's vulnerability database, from their verified SBOMs; attest each
    result. Exit 1 on a blocking finding (or no database where policy.scanner_db_unavailable is fail)."""
    run = pipeline.rescan(ctx, names, public_key=public_key)
    doc = run.to_json()
    if report_path:
        report_path.write_text(json.dumps(doc, indent=2, sort_keys=True))
    click.echo(json.dumps(doc, indent=2, sort_keys=True) if fmt == "json" else "\n".join(run.lines()))
    run.raise_for_outcome(ctx.settings.policy.scanner_db_unavailable)


@cli.command("check-dockerfile")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "sarif"]), default="table", show_default=True)
@click.option("--output", "output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the report here (e.g. results.sarif) and print the table.")
@click.option("--catalog", "catalog_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Offline: judge against this catalog.json instead of the registry and cosign.")
@click.option("--key", "public_key", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="The org's cosign public key (default: the configured key's .pub, or the dev key's).")
@click.option("--org-image", help="<registry>/<repository> of the org's base images (default: from factory.yaml).")
@click.option("--allow", "allow", multiple=True, metavar="REGISTRY/REPOSITORY",
              help="An upstream allowed in build stages (glob, e.g. docker.io/library/golang); repeatable.")
@click.option("--build-arg", "build_args", multiple=True, metavar="NAME=VALUE", help="As docker build's.")
@pass_ctx
def check_dockerfile(ctx: RunContext, paths: tuple[Path, ...], fmt: str, output: Path | None,
                     catalog_path: Path | None, public_key: Path | None, org_image: str | None,
                     allow: tuple[str, ...], build_args: tuple[str, ...]) -> None:
    """Check every FROM of app Dockerfiles: org base, pinned, published, signed, lifecycle, no debug
    variant in the final stage. Exit 1 on any error finding, 2 on a usage or environment error."""
    bad = [a for a in build_args if "=" not in a]
    if bad:
        raise UsageError(f"--build-arg {bad[0]!r}: expected NAME=VALUE")
    args = dict(a.split("=", 1) for a in build_args)
    result = appteams.check_dockerfiles(ctx.settings, ctx.registry, sign.Signer(ctx.settings, ctx.runner), paths,
                                        today=date.today(), catalog_path=catalog_path, public_key=public_key,
                                        org_image=org_image, allow=allow, build_args=args)
    if output:
        output.write_text(result.render(fmt) + "\n")
        click.echo(result.render("table"))
    else:
        click.echo(result.render(fmt))
    if result.errors:
        raise BasesRefused(result.errors, result.files)


@cli.command("policies")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write the policies into (created).")
@click.option("--key", "public_key", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="The cosign public key the policies name (default: the configured key's .pub, or the dev key's).")
@click.option("--allow", "allow", multiple=True, metavar="REGISTRY/REPOSITORY",
              help="An upstream allowed in build stages (glob); repeatable.")
@pass_ctx
def policies_cmd(ctx: RunContext, out_dir: Path, public_key: Path | None, allow: tuple[str, ...]) -> None:
    """Write enforcement policies: Kyverno, sigstore policy-controller, hadolint, conftest (Rego)."""
    for path in appteams.write_policies(ctx.settings, sign.Signer(ctx.settings, ctx.runner), out_dir,
                                        public_key=public_key, allow=allow):
        click.echo(f"wrote {path}")


@cli.command("lifecycle")
@click.argument("names", nargs=-1)
@pass_ctx
def lifecycle_cmd(ctx: RunContext, names: tuple[str, ...]) -> None:
    """Sign the lifecycle state (current, superseded, deprecated, retired) of every published version
    whose signed state changed."""
    rows = lifecycle_mod.attest_all(ctx.settings, ctx.registry(ctx.settings.registry),
                                    sign.Signer(ctx.settings, ctx.runner), manifest.load_all(ctx.settings),
                                    today=date.today(), now=datetime.now(UTC), prefixes=names)
    click.echo(lifecycle_mod.table(rows))


@cli.command("prune")
@click.argument("names", nargs=-1)
@click.option("--apply", "apply", is_flag=True, help="Delete. Without it: a dry run that deletes nothing.")
@pass_ctx
def prune_cmd(ctx: RunContext, names: tuple[str, ...], apply: bool) -> None:
    """Remove versions past factory.yaml's retention, with their signatures and attestations (dry run by default)."""
    settings = ctx.settings
    registry = ctx.registry(settings.registry)
    manifests = verify_mod.local_manifests(settings)
    result = prune_mod.prune(registry, settings.repository, settings.retention, now=datetime.now(UTC),
                             retired_images=appteams.retired_images(settings, manifests, date.today()),
                             prefixes=names, apply=apply)
    click.echo(prune_mod.table(result))


def _platform(text: str, where: str = "") -> str:
    """The normalised platform, or a usage error (``where`` says which argument)."""
    try:
        return str(platforms.parse(text))
    except ValueError as e:
        raise UsageError(f"{where}{e}") from None


@contextmanager
def _shown(ctx: RunContext, command: str, report_path: Path | None = None) -> Iterator[bool]:
    """The live view for the block when this is a terminal (log.live_wanted); its logs go to a file under
    the state folder meanwhile. Yields whether it is shown. The estimate is from the previous report."""
    log_path = None
    if click.get_current_context().meta.get(LIVE):
        try:
            log_path = console.new_log(ctx.settings.state_dir, command)
        except OSError as e:  # a state folder this user cannot write: the logs on the terminal, as without a view
            log.get("cli").warning("no live view: cannot write its log", error=str(e))
    if log_path is None:
        yield False
        return
    last = console.runs_dir(ctx.settings.state_dir) / console.LAST_REPORT
    previous = report_mod.timings_of(report_path) if report_path and report_path.exists() else {}
    with console.live_view(command, log_path, previous or report_mod.timings_of(last)):
        yield True


def _end_of_run(report: report_mod.RunReport, report_path: Path | None, live: RunContext | None = None) -> None:
    """Write the report, print the summary, and fail (exit 1) when any image failed. After the live view
    (``live``: its run context) the summary is a table, and the report is kept for the next estimate."""
    if report_path:
        report_path.write_text(report.to_json())
    if live and report.images:
        (console.runs_dir(live.settings.state_dir) / console.LAST_REPORT).write_text(report.to_json())
        width = min(console.WIDTH, shutil.get_terminal_size().columns)
        click.echo(console.summary_table(report_mod.summary_rows(report), width))
    elif report.images:
        click.echo(report_mod.summary(report))
    if not report.ok:
        raise PublishFailed(report.failure_lines())


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="factory", standalone_mode=False)
    except FactoryError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_ENVIRONMENT)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except Exception:  # noqa: BLE001  (the one top-level handler: a bug, so show everything a report needs)
        traceback.print_exc()
        click.echo(f"factory {__version__}: internal error (a bug); please report the traceback above",
                   err=True)
        sys.exit(EXIT_BUG)
    sys.exit(EXIT_OK)
