"""The publish pipeline for one run: build, test, gate, push by digest, sign, attest, and only then tag.

Per image, parents first:
  resolve base -> fingerprint (skip when equal to the current version) -> build (OCI layout) ->
  test (hardened runtime) -> gates (layers/size, SBOM licenses, CVEs) -> push by digest ->
  sign -> attest (SBOM per platform, hardening conformance, SLSA provenance) -> the same for the
  debug variant -> tags: the immutable version first, then the floating ones.

A failure at any step leaves no tag of that image written or moved, and its descendants are not
attempted. A re-run after a fix completes without duplicating versions: the registry's tags are
the source of truth for the next patch number, and pushes of existing blobs are skipped.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import filelock

from factory import __version__
from factory.adapters import ci
from factory.adapters.docker import Docker
from factory.adapters.gitinfo import Revision
from factory.build import gates, imagetest
from factory.build.buildx import (
    BuildRequest,
    BuiltImage,
    build,
    created_timestamp,
    missing_platforms,
    unbuildable_platforms,
)
from factory.core import log, versioning
from factory.core.errors import (
    BuildFailed,
    CommandError,
    FactoryError,
    RegistryError,
    StepFailed,
)
from factory.core.model import Manifest
from factory.oci.layout import OCI_INDEX, sha256_digest
from factory.oci.registry import Ref, Registry
from factory.render import contexts as render
from factory.render import plan
from factory.spec import policy
from factory.spec.config import Settings
from factory.trust import attest

LOCK_TIMEOUT = 900  # seconds to wait for another publish of the same image
BUILDER_ID = "https://base-image-factory.dev/builders/factory-publish@v1"
BUILD_TYPE = "https://base-image-factory.dev/build-types/buildx-oci@v1"


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
    attestations: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    gates: dict = field(default_factory=dict)


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


@dataclass
class RunReport:
    run_id: str
    started: str
    finished: str = ""
    factory_version: str = __version__
    images: list[ImageResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. the nightly's drift and plan

    @property
    def ok(self) -> bool:
        return all(i.status in ("published", "up-to-date", "pushed") for i in self.images)

    def failure_lines(self) -> list[str]:
        """One line per failed or skipped image: where it stopped and why (the PublishFailed message)."""
        failed = [i for i in self.images if i.status in ("failed", "skipped")]
        return [f"{i.name}: {i.status}" + (f" at {i.step}" + (f" [{i.platform}]" if i.platform else "")
                                           + f": {i.error}" if i.error else "") for i in failed]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


@dataclass(frozen=True)
class Stages:
    """The pluggable stage implementations (real ones in production and integration tests)."""

    signer: object  # factory.sign.Signer
    sbom: object  # factory.sbom.SbomGenerator
    scanner: object  # factory.scan.Scanner
    vuln_ignores: tuple = ()


@dataclass(frozen=True)
class _Prepared:
    context: Path
    base_ref: str
    base_digest: str
    fingerprint: str
    existing: list[versioning.Version]
    version: versioning.Version


class Publisher:
    def __init__(self, settings: Settings, catalog, docker: Docker, stages: Stages, revision: Revision,
                 registry_for: Callable[[str], Registry], *, workdir: Path, force: bool = False) -> None:
        self.settings = settings
        self.catalog = catalog
        self.docker = docker
        self.stages = stages
        self.revision = revision
        self.registry_for = registry_for
        self.workdir = workdir
        self.force = force
        self.run_id = uuid.uuid4().hex[:12]
        self.target = registry_for(settings.registry)
        self.log = log.get("publish")

    # --- the run ------------------------------------------------------------------------------

    def publish(self, names: Sequence[str], *, only_platform: str | None = None) -> RunReport:
        """Publish ``names`` (parents first). With ``only_platform`` (fan-out): build, test, gate, push,
        sign and attest that platform's image by digest, and tag nothing: `merge` does the rest."""
        action = self._publish_image if only_platform is None else \
            (lambda m, result: self._publish_platform(m, result, only_platform))
        report = RunReport(run_id=self.run_id, started=utc_now())
        wanted = set(names)
        results: dict[str, ImageResult] = {}
        for m in self.catalog.ordered():
            if m.name not in wanted:
                continue
            broken = next((a.name for a in self.catalog.ancestors(m.name)
                           if a.name in results and results[a.name].status in ("failed", "skipped")), None)
            if broken:
                result = ImageResult(m.name, status="skipped", error=f"parent {broken} was not published")
            else:
                result = self._publish_locked(m, action)
            results[m.name] = result
            report.images.append(result)
        report.finished = utc_now()
        return report

    def merge(self, name: str, digests: Mapping[str, str]) -> RunReport:
        """Fan-out's last step: the per-platform images pushed by digest become one index, which is
        signed, attested and tagged exactly as a single-machine publish would."""
        report = RunReport(run_id=self.run_id, started=utc_now())
        report.images.append(self._publish_locked(self.catalog[name], lambda m, r: self._merge(m, r, digests)))
        report.finished = utc_now()
        return report

    def _publish_locked(self, m: Manifest, action: Callable[[Manifest, ImageResult], None]) -> ImageResult:
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

    def _prepare(self, m: Manifest, result: ImageResult) -> _Prepared | None:
        """Base, fingerprint and next version; None when the current version has the same inputs."""
        self.log.info("image", image=m.name, version=m.version)
        with self._step(m, result, "resolve base"):
            base_ref, base_digest = self._resolve_base(m)
        result.base = base_ref
        context = self.settings.images_dir / m.name
        with self._step(m, result, "fingerprint"):
            fp = self._fingerprint(m, context, base_digest, variant=render.PROD)
            existing = versioning.versions_in(self.target.list_tags(self.settings.repository), m.name)
            current = versioning.latest(existing, m.major, m.minor)
            up_to_date = (current and not self.force and self._published_fingerprint(m.name, current) == fp
                          and self._verifies(m, current))
        if up_to_date:
            result.status = "up-to-date"
            result.prod = self._current_result(m.name, current, fp)
            self.log.info("up to date", image=m.name, version=str(current))
            self._complete(m, result, _Prepared(context, base_ref, base_digest, fp, existing, current))
            return None
        return _Prepared(context, base_ref, base_digest, fp, existing,
                         versioning.next_version(existing, m.major, m.minor))

    def _publish_image(self, m: Manifest, result: ImageResult) -> None:
        prep = self._prepare(m, result)
        if prep is None:
            return
        result.prod = self._make_variant(m, result, prep.context / "Dockerfile", prep.base_ref, prep.base_digest,
                                         prep.fingerprint, prep.version, debug=False)
        self._finish(m, result, prep)

    def _publish_platform(self, m: Manifest, result: ImageResult, platform: str) -> None:
        if platform not in [str(p) for p in m.platforms]:
            raise StepFailed(m.name, "plan", f"{platform} is not one of the manifest's platforms",
                             hint=f"platforms: {', '.join(map(str, m.platforms))}")
        prep = self._prepare(m, result)
        if prep is None:
            return
        result.prod = self._make_variant(m, result, prep.context / "Dockerfile", prep.base_ref, prep.base_digest,
                                         prep.fingerprint, prep.version, debug=False, platforms=[platform])
        result.status = "pushed"
        self.log.info("pushed by digest", image=m.name, platform=platform, digest=result.prod.index_digest,
                      version=str(prep.version))

    def _merge(self, m: Manifest, result: ImageResult, digests: Mapping[str, str]) -> None:
        wanted = [str(p) for p in m.platforms]
        if sorted(digests) != sorted(wanted):
            raise StepFailed(m.name, "merge", f"got digests for {', '.join(sorted(digests)) or 'nothing'}, "
                             f"the manifest builds {', '.join(wanted)}")
        prep = self._prepare(m, result)
        if prep is None:
            return
        with self._step(m, result, "merge"):
            checks = self._verified_platform_checks(m, digests, prep)
            out = VariantResult(tag_prefix=m.name, version=str(prep.version), fingerprint=prep.fingerprint,
                                platforms={p: digests[p] for p in wanted})
            out.index_digest = self._put_index(out.platforms)
            out.checks = [asdict(c) for c in checks]
        index_ref = f"{self.settings.target}@{out.index_digest}"
        with self._step(m, result, "sign"):
            self.stages.signer.sign(index_ref, recursive=False)  # the platform images were signed by their jobs
            out.signatures = [index_ref] + [f"{self.settings.target}@{d}" for d in out.platforms.values()]
        with self._step(m, result, "attest"):
            started = datetime.now(UTC)
            build_args = self._build_args(prep.version, prep.fingerprint, prep.base_ref, prep.base_digest)
            out.attestations = self._attest_index(m, out, checks, prep.base_ref, build_args, started)
            out.attestations += [{"type": "cyclonedx", "platform": p, "subject": f"{self.settings.target}@{d}"}
                                 for p, d in sorted(out.platforms.items())]
        result.prod = out
        self._finish(m, result, prep)

    def _verified_platform_checks(self, m: Manifest, digests: Mapping[str, str], prep: _Prepared) -> list:
        """Trust nothing a fan-out job says: each platform image must carry this version and fingerprint,
        and a verified signature, SBOM attestation and passing conformance attestation."""
        signer, checks = self.stages.signer, []
        for platform, digest in sorted(digests.items()):
            ref = f"{self.settings.target}@{digest}"
            if self.target.head_manifest(self.settings.repository, digest) is None:
                raise StepFailed(m.name, "merge", f"{digest} is not in {self.settings.target}", platform=platform,
                                 hint=f"push it first: factory publish {m.name} --platform {platform} "
                                      "--push-by-digest-only")
            labels = self.target.labels(self.settings.repository, digest)
            if labels.get(plan.FINGERPRINT_LABEL) != prep.fingerprint:
                raise StepFailed(m.name, "merge", f"{digest} was built from other inputs (fingerprint "
                                 f"{labels.get(plan.FINGERPRINT_LABEL)}, expected {prep.fingerprint})", platform=platform)
            if labels.get("org.opencontainers.image.version") != str(prep.version):
                raise StepFailed(m.name, "merge", f"{digest} is version {labels.get('org.opencontainers.image.version')}"
                                 f", the next version is {prep.version}", platform=platform,
                                 hint="another publish happened in between: re-run the fan-out")
            signer.verify(ref)
            signer.verify_attestation(ref, "cyclonedx")
            statement = signer.verify_attestation(ref, attest.CONFORMANCE_PREDICATE_TYPE)[-1]
            result = statement["predicate"]["platforms"].get(platform, {})
            if not result.get("passed"):
                raise StepFailed(m.name, "merge", f"{digest} did not pass its checks", platform=platform)
            checks += [imagetest.CheckResult(c["name"], platform, digest, c["passed"], c["detail"])
                       for c in result["checks"]]
        return checks

    def _put_index(self, platforms: Mapping[str, str]) -> str:
        """The OCI index over the platform manifests, byte for byte as buildx writes it, so that a
        fanned-out publish gives the same index digest as a single-machine one."""
        entries = []
        for platform, digest in platforms.items():
            found = self.target.head_manifest(self.settings.repository, digest)
            os_, arch, *variant = platform.split("/")
            entries.append({"mediaType": found.media_type, "digest": digest, "size": found.size,
                            "platform": {"architecture": arch, "os": os_, **({"variant": variant[0]} if variant else {})}})
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, indent=2).encode()
        return self.target.put_manifest(self.settings.repository, sha256_digest(raw), raw, OCI_INDEX)

    def _complete(self, m: Manifest, result: ImageResult, prep: _Prepared) -> None:
        """The current version has these inputs. A run that died between its tag writes left some
        floating tags (or the whole debug variant) behind: finish them; write no new version."""
        if m.variant("debug"):
            debug_prefix = versioning.tag_prefix(m.name, debug=True)
            debug_versions = versioning.versions_in(self.target.list_tags(self.settings.repository), debug_prefix)
            if prep.version not in debug_versions:
                self.log.warning("completing an interrupted publish: the debug variant", image=m.name,
                                 version=str(prep.version))
                self._finish(m, result, prep, status="up-to-date")
                return
            result.debug = self._current_result(debug_prefix, prep.version, "")
        with self._step(m, result, "tag"):
            self._write_tags(result.prod, prep.existing, prep.version)
            if result.debug:
                self._write_tags(result.debug, debug_versions, prep.version)
        written = result.prod.tags + (result.debug.tags if result.debug else [])
        if written:
            self.log.warning("completed an interrupted publish: moved tags", image=m.name, tags=written)

    def _finish(self, m: Manifest, result: ImageResult, prep: _Prepared, *, status: str = "published") -> None:
        """After the prod index is pushed, signed and attested: the debug variant, then every tag."""
        if m.variant("debug"):
            prod_ref = f"{self.settings.target}@{result.prod.index_digest}"
            debug_fp = self._fingerprint(m, prep.context, result.prod.index_digest, variant=render.DEBUG)
            result.debug = self._make_variant(m, result, prep.context / "debug" / "Dockerfile", prod_ref,
                                              result.prod.index_digest, debug_fp, prep.version, debug=True)
        with self._step(m, result, "tag"):
            self._write_tags(result.prod, prep.existing, prep.version)
            if result.debug:
                debug_existing = versioning.versions_in(self.target.list_tags(self.settings.repository),
                                                        result.debug.tag_prefix)
                self._write_tags(result.debug, debug_existing, prep.version)
        result.status = status
        self.log.info("published", image=m.name, version=str(prep.version), index=result.prod.index_digest,
                      tags=result.prod.tags + (result.debug.tags if result.debug else []))

    def _make_variant(self, m: Manifest, result: ImageResult, dockerfile: Path, base_ref: str, base_digest: str,
                      fp: str, version: versioning.Version, *, debug: bool,
                      platforms: Sequence[str] | None = None) -> VariantResult:
        """Everything up to, not including, tags: build, test, gates, push, sign, attest.
        ``platforms`` narrows the build to some of the manifest's (fan-out: one per job)."""
        prefix = versioning.tag_prefix(m.name, debug=debug)
        out = VariantResult(tag_prefix=prefix, version=str(version), fingerprint=fp)
        label = "debug " if debug else ""
        platforms = list(platforms or [str(p) for p in m.platforms])
        started = datetime.now(UTC)
        build_args = self._build_args(version, fp, base_ref, base_digest)
        with self._step(m, result, f"{label}build"):
            if not self.settings.builder:  # a remote builder has its own machines; the local one needs QEMU
                missing = unbuildable_platforms(platforms)
                if missing:
                    raise StepFailed(m.name, f"{label}build", f"cannot build {', '.join(missing)} here: no QEMU "
                                     "emulation enabled in binfmt_misc", platform=missing[0],
                                     hint="run `make services` (it enables qemu-aarch64), or set `builder` to a "
                                          "buildx builder with native nodes")
            try:
                built = build(self.docker, BuildRequest(
                    name=prefix, dockerfile=dockerfile, platforms=tuple(platforms),
                    build_args=build_args,
                    source_date_epoch=self.revision.commit_time,
                ), self.workdir / prefix)
            except BuildFailed as e:
                raise StepFailed(m.name, f"{label}build", e.detail, platform=", ".join(e.platforms) or None,
                                 hint=_build_hint(e, platforms)) from e
            missing = missing_platforms(built, platforms)
            if missing:
                raise StepFailed(m.name, "build", f"the build produced no image for {', '.join(missing)}",
                                 platform=missing[0])
        out.index_digest, out.platforms = built.index_digest, dict(built.platform_digests)
        with self._step(m, result, f"{label}test"):
            checks = imagetest.test_image(self.docker, built.archive, built.layout,
                                          imagetest.Expectations.for_manifest(m, debug=debug))
            out.checks = [asdict(c) for c in checks]
            failed = imagetest.failures(checks)
            if failed:
                f = failed[0]
                raise StepFailed(m.name, f"{label}test", "; ".join(f"{c.name}: {c.detail}" for c in failed[:5]),
                                 platform=f.platform, hint="the image was not pushed; fix the manifest or its tests")
        with self._step(m, result, f"{label}gates"):
            gate_report = self._gates(m, built, base_ref, prefix, debug=debug)
            out.gates = gate_report.measurements
        with self._step(m, result, f"{label}push"):
            pushed = self.target.push_layout(built.layout, self.settings.repository)
            out.gates["push"] = {"blobs_uploaded": pushed.blobs_uploaded, "blobs_skipped": pushed.blobs_skipped,
                                 "bytes": pushed.bytes}
        ref = f"{self.settings.target}@{out.index_digest}"
        with self._step(m, result, f"{label}sign"):
            self.stages.signer.sign(ref, recursive=True)
            out.signatures = [ref] + [f"{self.settings.target}@{d}" for d in out.platforms.values()]
        with self._step(m, result, f"{label}attest"):
            out.attestations = self._attest(m, out, checks, gate_report, base_ref, build_args, started)
        return out

    # --- steps --------------------------------------------------------------------------------

    @contextmanager
    def _step(self, m: Manifest, result: ImageResult, name: str) -> Iterator[None]:
        """Time a step and turn any expected failure inside it into a StepFailed naming the step."""
        start = time.monotonic()
        self.log.info("step", image=m.name, step=name)
        try:
            yield
        except StepFailed:
            raise
        except FactoryError as e:
            # A failed command names its own step; StepFailed names it once, so only its detail is kept,
            # unless the command's step says more (gates: "sbom linux/arm64: `trivy ...` exited 2").
            message = e.detail if isinstance(e, CommandError) and e.step in name else e.message
            raise StepFailed(m.name, name, message, hint=e.hint) from e
        finally:
            result.timings[name] = round(time.monotonic() - start, 2)

    def _resolve_base(self, m: Manifest) -> tuple[str, str]:
        """(reference to build FROM, its index digest). Refuses a moved upstream tag and an unsigned parent."""
        if m.upstream:
            up = m.upstream
            found = self.registry_for(up.registry).head_manifest(up.repository, up.tag or up.digest)
            if found is None:
                raise StepFailed(m.name, "resolve base", f"upstream {up.image}:{up.tag} not found")
            if found.digest != up.digest:
                raise StepFailed(m.name, "resolve base",
                                 f"upstream tag {up.image}:{up.tag} now points at {found.digest}, the manifest pins "
                                 f"{up.digest}", hint="the tag moved under us: review it, then `factory drift --update`")
            self._require_platforms(m, self.registry_for(up.registry), up.repository, up.digest, up.image)
            return up.pinned_ref, up.digest
        parent = self.catalog[m.parent]
        tag = f"{parent.name}-v{parent.version}"
        found = self.target.head_manifest(self.settings.repository, tag)
        if found is None:
            raise StepFailed(m.name, "resolve base", f"parent {parent.name} has no published {tag}",
                             hint=f"publish {parent.name} first (factory publish {parent.name} {m.name})")
        ref = f"{self.settings.target}@{found.digest}"
        self.stages.signer.verify(ref)  # never build on a parent whose signature does not verify
        self._require_platforms(m, self.target, self.settings.repository, found.digest, f"parent {tag}")
        return ref, found.digest

    def _require_platforms(self, m: Manifest, registry: Registry, repo: str, digest: str, shown: str) -> None:
        """Refuse a base that lacks one of our platforms: BuildKit would quietly build FROM the image it
        has, and an "arm64" image would carry amd64 binaries (it even passes its tests, on an amd64 host)."""
        provided = registry.platforms(repo, digest)
        missing = [str(p) for p in m.platforms if str(p) not in provided]
        if missing:
            raise StepFailed(m.name, "resolve base", f"{shown}@{digest} has no image for {', '.join(missing)} "
                             f"(it has {', '.join(provided) or 'none'})", platform=missing[0],
                             hint="narrow the manifest's platforms, or pin a base that provides them")

    def _fingerprint(self, m: Manifest, context: Path, base_digest: str, *, variant: str) -> str:
        if not (context / "Dockerfile").is_file():
            raise StepFailed(m.name, "fingerprint", f"no rendered context at {context}",
                             hint="run `factory render` and commit images/")
        return plan.fingerprint(context_digest=plan.context_digest(context, variant), base_digest=base_digest,
                                platforms=[str(p) for p in m.platforms], variant=variant)

    def _verifies(self, m: Manifest, version: versioning.Version) -> bool:
        """The current version counts as ours only when its signature verifies with our key: an image
        whose label matches but that we cannot verify is replaced by a new, verifiable version."""
        found = self.target.head_manifest(self.settings.repository, versioning.immutable_tag(m.name, version))
        try:
            self.stages.signer.verify(f"{self.settings.target}@{found.digest}")
        except FactoryError as e:
            self.log.warning("current version does not verify: publishing a new one", image=m.name,
                             version=str(version), reason=e.message)
            return False
        return True

    def _published_fingerprint(self, name: str, version: versioning.Version) -> str | None:
        tag = versioning.immutable_tag(name, version)
        return self.target.labels(self.settings.repository, tag).get(plan.FINGERPRINT_LABEL)

    def _current_result(self, name: str, version: versioning.Version, fp: str) -> VariantResult:
        tag = versioning.immutable_tag(name, version)
        found = self.target.head_manifest(self.settings.repository, tag)
        return VariantResult(tag_prefix=name, version=str(version), fingerprint=fp,
                             index_digest=found.digest if found else "", tags=[])

    def _build_args(self, version: versioning.Version, fp: str, base_ref: str, base_digest: str) -> dict[str, str]:
        return {
            "FACTORY_VERSION": str(version),
            "FACTORY_REVISION": self.revision.sha,
            "FACTORY_CREATED": created_timestamp(self.revision.commit_time),
            "FACTORY_FINGERPRINT": fp,
            "BASE_REF": base_ref,
            "BASE_DIGEST": base_digest,
        }

    def _gates(self, m: Manifest, built: BuiltImage, base_ref: str, prefix: str, *, debug: bool) -> gates.GateReport:
        report = gates.GateReport()
        base_reg = self.registry_for(Ref.parse(base_ref).registry)
        base = gates.base_image(base_reg, base_ref, built.layout.platforms)
        today = datetime.now(UTC).date()
        gates.layer_and_size(m, self.settings, built, base, today, report, budgets=not debug)
        gates.sboms_and_licenses(m, self.settings, built, self.stages.sbom, self.workdir / prefix / "sbom", report)
        gates.vulnerabilities(m, self.settings, built, self.stages.scanner, self.stages.vuln_ignores, report,
                              image=m.name)
        gates.log_report(prefix, report)
        if report.errors:
            raise StepFailed(m.name, "gates", "; ".join(report.errors[:5]),
                             hint="see docs/gates.md for budgets, license lists and the vulnerability ignore file")
        report.measurements["warnings"] = report.warnings
        return report

    def _attest(self, m: Manifest, out: VariantResult, checks, gate_report: gates.GateReport, base_ref: str,
                build_args: dict[str, str], started: datetime) -> list[dict]:
        done = []
        for platform, path in sorted(gate_report.sboms.items()):
            ref = f"{self.settings.target}@{out.platforms[platform]}"
            self.stages.signer.attest(ref, path, "cyclonedx")
            done.append({"type": "cyclonedx", "platform": platform, "subject": ref})
        return done + self._attest_index(m, out, checks, base_ref, build_args, started)

    def _attest_index(self, m: Manifest, out: VariantResult, checks, base_ref: str, build_args: dict[str, str],
                      started: datetime) -> list[dict]:
        """The conformance and provenance attestations on the index (for one platform: its manifest)."""
        signer, index_ref = self.stages.signer, f"{self.settings.target}@{out.index_digest}"
        conformance = attest.conformance_predicate(
            image=out.tag_prefix, version=out.version, platform_results=_by_platform(checks),
            policy_rules=[r.id for r in policy.RULES], waivers=[asdict(w) for w in m.waivers],
            factory_version=__version__)
        signer.attest(index_ref, conformance, attest.CONFORMANCE_PREDICATE_TYPE)
        provenance = attest.slsa_provenance(
            builder_id=BUILDER_ID, build_type=BUILD_TYPE, manifest=_manifest_doc(m),
            context_digest=out.fingerprint, base_ref=base_ref, platforms=sorted(out.platforms),
            build_args=build_args, invocation={"run_id": self.run_id, "revision": self.revision.sha},
            started=started, finished=datetime.now(UTC),
            subjects={self.settings.target: out.index_digest})
        signer.attest(index_ref, provenance, "slsaprovenance1")
        return [{"type": attest.CONFORMANCE_PREDICATE_TYPE, "subject": index_ref},
                {"type": "slsaprovenance1", "subject": index_ref}]

    def _write_tags(self, v: VariantResult, existing: list[versioning.Version], version: versioning.Version) -> None:
        """The immutable tag first (never moved), then the floating ones; records the tags written."""
        repo = self.settings.repository
        immutable = versioning.immutable_tag(v.tag_prefix, version)
        if self.target.tag(repo, v.index_digest, immutable, expect_absent=True):
            v.tags.append(immutable)
        for tag in versioning.floating_tags_to_move(v.tag_prefix, version, existing):
            if self.target.tag(repo, v.index_digest, tag):
                v.tags.append(tag)
        # Publishers that do not share the lock (two machines) can both pass the immutable tag's
        # compare-then-write; the read-back catches most such races, this last look the rest but one
        # (docs/reliability.md). The floating tags we moved point at our signed digest; a re-run
        # moves them to the version the immutable tag holds.
        now = self.target.head_manifest(repo, immutable)
        if now is None or now.digest != v.index_digest:
            raise RegistryError(f"tag {immutable} was overwritten by another publisher (now "
                                f"{now.digest if now else 'absent'}, we wrote {v.index_digest}) while our tags moved",
                                hint="run the publish again: it moves every floating tag to that version")


def _build_hint(e: BuildFailed, wanted: Sequence[str]) -> str | None:
    # Words for people only: a RUN step that failed on some platforms, not all, is most often a
    # package or command that does not exist for that architecture.
    if e.platforms and set(e.platforms) < set(wanted) and "did not complete successfully" in e.stderr:
        return (f"a RUN step failed on {', '.join(e.platforms)} only: check that every package and command "
                "exists for that architecture (or narrow the manifest's platforms)")
    return None


def _by_platform(checks) -> dict[str, list]:
    out: dict[str, list] = {}
    for c in checks:
        out.setdefault(c.platform, []).append(c)
    return out


def _manifest_doc(m: Manifest) -> dict:
    return {"name": m.name, "version": m.version, "path": m.path.name, "distro": m.distro,
            "upstream": asdict(m.upstream) if m.upstream else None, "parent": m.parent}


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
