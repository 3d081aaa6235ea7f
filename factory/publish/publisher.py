"""The publish pipeline for one run: build, test, gate, push by digest, sign, attest, and only then tag.

Per image, parents first:
  resolve base -> fingerprint (skip when equal to the current version) -> build (OCI layout) ->
  test (hardened runtime) -> gates (layers/size, SBOM licenses, CVEs) -> push by digest ->
  sign -> attest (SBOM per platform, hardening conformance, SLSA provenance) -> the same for the
  debug variant -> tags: the immutable version first, then the floating ones.

A failure at any step leaves no tag of that image written or moved, and its descendants are not
attempted. A re-run after a fix completes without duplicating versions: the registry's tags are
the source of truth for the next patch number, and pushes of existing blobs are skipped.

This module is the order of things; each concern is a module of its own: ``inputs`` (base and
fingerprint), ``current`` (is the published version already this one), ``variant`` (build to
attest), ``attestations``, ``fanout`` (per-platform jobs and their merge), ``index``, ``tags`` and
``report``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import filelock
import requests

from factory.adapters import ci
from factory.adapters.docker import Docker
from factory.adapters.gitinfo import Revision, public_url, remote_url
from factory.adapters.tools import Runner
from factory.archive.fetch import Archives
from factory.core import labels, log, progress, versioning
from factory.core.errors import StepFailed
from factory.core.model import Manifest
from factory.oci.registry import Registry
from factory.publish import current, fanout, inputs, tags
from factory.publish.attestations import Attestor, sbom_entry
from factory.publish.destination import Destination
from factory.publish.index import put_index
from factory.publish.report import STOPPED, ImageResult, RunReport, VariantResult, outcome, utc_now
from factory.publish.stages import Stages
from factory.publish.steps import step
from factory.publish.variant import Inputs, VariantBuilder
from factory.security.check import IndexSource
from factory.spec.config import Settings
from factory.spec.manifest import ManifestSet

LOCK_TIMEOUT = 900  # seconds to wait for another publish of the same image

Action = Callable[[Manifest, ImageResult], None]


@dataclass(frozen=True)
class Prepared:
    """An image whose current version is not up to date: what its next version is built from."""

    context: Path
    base_ref: str
    base_digest: str
    fingerprint: str
    existing: list[versioning.Version]
    version: versioning.Version
    base_name: str = ""  # the base by tag (inputs.base_name)

    def prod_inputs(self) -> Inputs:
        return Inputs(self.context / "Dockerfile", self.base_ref, self.base_digest, self.fingerprint, self.version,
                      self.base_name)


class Publisher:
    def __init__(self, settings: Settings, manifests: ManifestSet, docker: Docker, stages: Stages, revision: Revision,
                 registry_for: Callable[[str], Registry], *, workdir: Path, force: bool = False,
                 security: current.SecurityCheck | None = None) -> None:
        self.settings = settings
        self.security = security  # None: policy.security_fixes is off, a current version's fixes are not checked
        self.manifests = manifests
        self.stages = stages
        self.revision = revision
        self.registry_for = registry_for
        self.workdir = workdir
        self.force = force
        self.run_id = uuid.uuid4().hex[:12]
        self.target = registry_for(settings.registry)
        self.dest = Destination.of(settings, self.target)
        self.attestor = Attestor(stages.signer, self.dest, revision, self.run_id,
                                 author=settings.vendor or "base-image factory", images_dir=settings.images_dir,
                                 source_url=public_url(settings.source_url) or remote_url(settings.root),
                                 helper_image=settings.helper_image)
        self.archives = run_archives(settings, security)
        self.variants = VariantBuilder(settings, docker, stages, revision, self.dest, registry_for, self.attestor,
                                       workdir, self.archives)
        self.log = log.get("publish")

    # --- the run ------------------------------------------------------------------------------

    def publish(self, names: Sequence[str], *, only_platform: str | None = None) -> RunReport:
        """Publish ``names`` (parents first). With ``only_platform`` (fan-out): build, test, gate, push,
        sign and attest that platform's image by digest, and tag nothing: `merge` does the rest."""
        action: Action = self._publish_image if only_platform is None else \
            partial(self._publish_platform, platform=only_platform)
        report = RunReport(run_id=self.run_id, started=utc_now())
        results: dict[str, ImageResult] = {}
        view = progress.current()
        view.units([m.name for m in self.manifests.ordered() if m.name in names])
        for m in self.manifests.ordered():
            if m.name in names:
                view.unit_started(m.name)
                results[m.name] = self._unless_parent_broke(m, results, action)
                report.images.append(results[m.name])
                view.unit_done(m.name, outcome(results[m.name]))
        report.finished = utc_now()
        report.archives = archive_stats(self.archives)
        return report

    def merge(self, name: str, digests: Mapping[str, str]) -> RunReport:
        """Fan-out's last step: the per-platform images pushed by digest become one index, which is
        signed, attested and tagged exactly as a single-machine publish would."""
        report = RunReport(run_id=self.run_id, started=utc_now())
        progress.current().units([name])
        progress.current().unit_started(name)
        report.images.append(self._publish_locked(self.manifests[name], lambda m, r: self._merge(m, r, digests)))
        progress.current().unit_done(name, outcome(report.images[-1]))
        report.finished = utc_now()
        return report

    def _unless_parent_broke(self, m: Manifest, results: Mapping[str, ImageResult], action: Action) -> ImageResult:
        """An image built on an ancestor that failed in this run would build on the old one: skip it."""
        broken = next((a.name for a in self.manifests.ancestors(m.name)
                       if a.name in results and results[a.name].status in STOPPED), None)
        if broken:
            return ImageResult(m.name, status="skipped", error=f"parent {broken} was not published")
        return self._publish_locked(m, action)

    def _publish_locked(self, m: Manifest, action: Action) -> ImageResult:
        """Run ``action`` holding this image's lock, so that two publishes on one machine take turns."""
        lock_dir = self.settings.state_dir / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(lock_dir / f"{self.settings.repository.replace('/', '_')}.{m.name}.lock")
        result = ImageResult(m.name)
        try:
            with ci.group(f"publish {m.name}"), lock.acquire(timeout=LOCK_TIMEOUT):
                action(m, result)
        except filelock.Timeout:
            result.status, result.step = "failed", "lock"
            result.error = f"another publish of {m.name} held the lock for {LOCK_TIMEOUT}s"
        except StepFailed as e:
            result.status, result.step, result.platform = "failed", e.step, e.platform or ""
            result.error = e.message + (f" (hint: {e.hint})" if e.hint else "")
        if result.status == "failed":
            self.log.error("image failed", image=m.name, step=result.step, platform=result.platform or None,
                           error=result.error)
            ci.error(result.error, title=f"{m.name}: {result.step} failed")
        return result

    # --- one image ----------------------------------------------------------------------------

    def _prepare(self, m: Manifest, result: ImageResult) -> Prepared | None:
        """Base, fingerprint and next version; None when the current version has the same inputs
        (then whatever an interrupted run left undone is completed)."""
        self.log.info("image", image=m.name, version=m.version)
        with step(result, "resolve base"):
            base_ref, base_digest = inputs.resolve_base(m, self.manifests, self.dest, self.registry_for,
                                                        self.stages.signer)
        result.base = base_ref
        base_name = inputs.base_name(m, self.manifests, self.dest)
        context = self.settings.images_dir / m.name
        with step(result, "fingerprint"):
            fp = inputs.fingerprint(m, context, base_digest, variant=labels.PROD)
            existing = tags.versions_of(self.dest, m.name)
            now = versioning.latest(existing, m.major, m.minor)
            up_to_date = now is not None and not self.force and current.is_current(
                self.dest, self.stages.signer, m.name, now, fp, self.security)
        if now is not None and up_to_date:
            result.status = "up-to-date"
            result.prod = current.current_result(self.dest, m.name, now, fp)
            self.log.info("up to date", image=m.name, version=str(now))
            self._complete(m, result, Prepared(context, base_ref, base_digest, fp, existing, now, base_name))
            return None
        return Prepared(context, base_ref, base_digest, fp, existing, base_name=base_name, version=
                        versioning.next_version(existing, m.major, m.minor))

    def _publish_image(self, m: Manifest, result: ImageResult) -> None:
        prep = self._prepare(m, result)
        if prep is None:
            return
        result.prod = self.variants.make(m, result, prep.prod_inputs(), debug=False)
        self._finish(m, result, prep)

    def _publish_platform(self, m: Manifest, result: ImageResult, platform: str) -> None:
        fanout.check_platform(m, platform)
        prep = self._prepare(m, result)
        if prep is None:
            return
        result.prod = self.variants.make(m, result, prep.prod_inputs(), debug=False, platforms=[platform])
        result.status = "pushed"
        self.log.info("pushed by digest", image=m.name, platform=platform, digest=result.prod.index_digest,
                      version=str(prep.version))

    def _merge(self, m: Manifest, result: ImageResult, digests: Mapping[str, str]) -> None:
        fanout.check_digests(m, digests)
        prep = self._prepare(m, result)
        if prep is None:
            return
        with step(result, "merge"):
            checks, security = fanout.verified_checks(m, digests, prep.fingerprint, prep.version, self.dest,
                                                      self.stages.signer)
            out = VariantResult(tag_prefix=m.name, version=str(prep.version), fingerprint=prep.fingerprint,
                                platforms={str(p): digests[str(p)] for p in m.platforms})
            # the annotations a one-machine build writes on its index: the same index digest
            merged_args = inputs.build_args(self.revision, prep.version, prep.fingerprint, prep.base_ref,
                                            prep.base_digest, base_name=prep.base_name,
                                            source=self.attestor.source_url)
            out.index_digest = put_index(self.dest, out.platforms, inputs.oci_annotations(m, merged_args))
            out.checks = [asdict(c) for c in checks]
        index_ref = self.dest.by_digest(out.index_digest)
        with step(result, "sign"):
            self.stages.signer.sign(index_ref, recursive=False)  # the platform images were signed by their jobs
            out.signatures = [index_ref] + [self.dest.by_digest(d) for d in out.platforms.values()]
        with step(result, "attest"):
            started = datetime.now(UTC)
            build_args = inputs.build_args(self.revision, prep.version, prep.fingerprint, prep.base_ref,
                                           prep.base_digest)
            out.security_fixes = security.to_json() if security else {}
            out.attestations = self.attestor.index(m, out, checks, prep.base_ref, build_args, started,
                                                   security=security, platform_provenance=False)
            # The platform jobs attested their SBOMs; the report lists them as a single publish would.
            out.attestations += [sbom_entry(p, self.dest.by_digest(d)) for p, d in sorted(out.platforms.items())]
        result.prod = out
        self._finish(m, result, prep)

    # --- the debug variant and the tags ---------------------------------------------------------

    def _complete(self, m: Manifest, result: ImageResult, prep: Prepared) -> None:
        """The current version has these inputs. A run that died between its tag writes left some
        floating tags (or the whole debug variant) behind: finish them; write no new version."""
        assert result.prod is not None  # set by _prepare before it calls this
        debug_versions: list[versioning.Version] = []
        if m.variant("debug"):
            debug_prefix = versioning.tag_prefix(m.name, debug=True)
            debug_versions = tags.versions_of(self.dest, debug_prefix)
            if prep.version not in debug_versions:
                self.log.warning("completing an interrupted publish: the debug variant", image=m.name,
                                 version=str(prep.version))
                self._finish(m, result, prep, status="up-to-date")
                return
            result.debug = current.current_result(self.dest, debug_prefix, prep.version, "")
        with step(result, "tag"):
            self._write_tags(result.prod, prep.existing, prep.version)
            if result.debug:
                self._write_tags(result.debug, debug_versions, prep.version)
        if result.tags():
            self.log.warning("completed an interrupted publish: moved tags", image=m.name, tags=result.tags())

    def _finish(self, m: Manifest, result: ImageResult, prep: Prepared, *, status: str = "published") -> None:
        """After the prod index is pushed, signed and attested: the debug variant, then every tag."""
        prod = result.prod
        assert prod is not None  # every caller has set it
        if m.variant("debug"):
            debug = Inputs(prep.context / "debug" / "Dockerfile", self.dest.by_digest(prod.index_digest),
                           prod.index_digest,
                           inputs.fingerprint(m, prep.context, prod.index_digest, variant=labels.DEBUG), prep.version,
                           # base.name: the prod image by its immutable tag (written after the debug variant)
                           f"{self.dest.name}:{versioning.immutable_tag(m.name, prep.version)}")
            result.debug = self.variants.make(m, result, debug, debug=True)
        with step(result, "tag"):
            self._write_tags(prod, prep.existing, prep.version)
            if result.debug:
                self._write_tags(result.debug, tags.versions_of(self.dest, result.debug.tag_prefix), prep.version)
        result.status = status
        self.log.info("published", image=m.name, version=str(prep.version), index=prod.index_digest,
                      tags=result.tags())

    def _write_tags(self, v: VariantResult, existing: list[versioning.Version], version: versioning.Version) -> None:
        # A method, not a direct call, so that the integration tests can race another writer in here.
        tags.write_tags(self.dest, v, existing, version)


def run_archives(settings: Settings, security: current.SecurityCheck | None) -> IndexSource:
    """The run's one reader of archive indexes: the security check's (the current versions were checked
    with it, so each index is read once per run), else one of its own. Nothing is fetched until asked."""
    if security is not None:
        return security.checker.archives
    runner = Runner(extra_path=(settings.tools_bin,), only_path=settings.tools_path)  # as RunContext makes it
    return Archives(settings.archives, requests.Session(), runner)


def archive_stats(archives: IndexSource) -> dict[str, int]:
    """What the run downloaded from distribution archives (the report's ``archives``)."""
    if not isinstance(archives, Archives):
        return {}
    return {"requests": archives.stats.requests, "bytes": archives.stats.bytes}
