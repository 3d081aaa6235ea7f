"""The catalog app teams read: every published org image, collected from the registry.

The registry is the source of truth for what exists: tags, index and platform manifests, image
configs and their labels, sizes. The local manifests add what the registry does not carry (the
upstream as pinned, the parent, the end-of-life date and its source). Signatures and SBOMs are read
only through cosign verification (``factory.sign.Signer``): an image whose signature does not verify
is shown unsigned, and a package list comes only from an SBOM attestation that verified.

``collect()`` returns a frozen ``SiteCatalog``; ``factory.consume.site`` writes it as HTML, JSON and
Markdown. ``catalog.json`` is ``as_document(catalog)``, described by schema/catalog.schema.json.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jsonschema

from factory.build import gates, sbom
from factory.build.scan import describe as describe_scan
from factory.consume import changelog, freshness, lifecycle
from factory.core import log, versioning
from factory.core.errors import EnvironmentProblem, RegistryError, VerificationFailed
from factory.core.labels import (
    BASE_DIGEST_LABEL,
    BASE_NAME_LABEL,
    CONFORMANCE_PREDICATE_TYPE,
    CREATED_LABEL,
    DEBUG,
    DESCRIPTION_LABEL,
    FINGERPRINT_LABEL,
    PROD,
    VARIANT_LABEL,
)
from factory.core.model import Deprecation, Manifest
from factory.core.reference import Ref
from factory.oci import registry as oci_registry
from factory.oci.registry import Registry
from factory.security.check import FixesChecker
from factory.security.record import SecurityFixes
from factory.security.report import ERROR, FixesReport
from factory.spec import policy, schemas
from factory.spec.config import Settings
from factory.trust import sign
from factory.trust.sign import Signer
from factory.trust.verify import VerifyReport, cosign_commands, latest_scan

SCHEMA_VERSION = 1
SITE_PUBLIC_KEY = "cosign.pub"  # the public key's name inside the written site
EOL_STATUSES = ("supported", "warning", "eol", "unknown")

# An immutable tag: <prefix>-v<major>.<minor>.<patch>, the prefix as manifest names are written.
_IMMUTABLE_TAG_RE = re.compile(r"^([a-z0-9][a-z0-9._-]*)-v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


# --- the model (asdict() of SiteCatalog is catalog.json) -----------------------------------------


@dataclass(frozen=True)
class Eol:
    date: str | None  # YYYY-MM-DD
    status: str  # one of EOL_STATUSES
    days_left: int | None
    source: str  # where the date comes from ("debian 12 bookworm, end of Debian LTS")


@dataclass(frozen=True)
class Base:
    """What a version was built FROM, from its base.name and base.digest labels."""

    name: str
    digest: str
    image: str | None = None  # the org image (tag prefix) when the base is one of ours
    version: str | None = None


@dataclass(frozen=True)
class Upstream:
    image: str
    tag: str | None
    digest: str | None


@dataclass(frozen=True)
class PlatformEntry:
    platform: str
    digest: str  # the platform manifest
    size: int  # compressed bytes a pull downloads: config + layers
    layers: int
    base_size: int | None  # None when the base could not be read
    base_layers: int | None
    overhead: int | None  # size - base_size
    packages: int | None  # from the verified SBOM attestation; None when none verified
    security_pending: freshness.PendingNow  # security fixes pending when the catalog was built
    security_applied: freshness.AppliedAtBuild  # what its build applied, from the verified conformance record


@dataclass(frozen=True)
class Changes:
    """A version against the one before it."""

    previous: str  # the version compared with
    platform: str  # the platform whose SBOMs were compared
    base_changed: bool
    base_before: str
    base_after: str
    packages: changelog.PackageDiff | None  # None when either SBOM did not verify
    note: str = ""  # why packages is None


@dataclass(frozen=True)
class VulnScan:
    """A version's newest verified vulnerability scan, as app teams read it."""

    status: str  # "scanned" | "not scanned"
    summary: str  # "scanned 2026-12-01: 0 critical, 2 high (...)" or "NOT scanned: <why>"
    blocking: tuple[str, ...] = ()  # ids that fail the gate today: rebuild
    counts: dict[str, int] = field(default_factory=dict)  # by severity, the highest of the platforms


@dataclass(frozen=True)
class VersionEntry:
    version: str
    tag: str  # the immutable tag
    digest: str  # the index
    created: str  # the org.opencontainers.image.created label
    tags: tuple[str, ...]  # floating tags that point here now
    signed: bool
    base: Base
    platforms: tuple[PlatformEntry, ...]
    changes: Changes | None  # None for the first version
    notes: tuple[str, ...] = ()  # what could not be read, and why
    lifecycle: str = lifecycle.CURRENT  # factory.consume.lifecycle.STATES
    scan: VulnScan | None = None  # the newest verified scan (at publish or by `factory scan`)


@dataclass(frozen=True)
class ImageEntry:
    name: str  # the tag prefix: "debian-12-minbase", "debian-12-minbase-debug"
    image: str  # the manifest name ("debian-12-minbase" for both)
    variant: str  # "prod" | "debug"
    description: str
    manifest: bool  # a local manifest was found (upstream, parent and eol come from it)
    upstream: Upstream | None
    parent: str | None
    eol: Eol
    latest: str
    digest: str  # the latest version's index digest
    floating_tags: tuple[str, ...]
    from_line: str
    verify_commands: tuple[str, ...]
    page: str  # relative path of the image's page in the site
    debug: str | None  # prod: the name of its debug variant's entry
    versions: tuple[VersionEntry, ...]  # newest first
    deprecated: Deprecation | None = None  # the manifest's `deprecated`


@dataclass(frozen=True)
class SiteCatalog:
    schema_version: int
    generated: str
    registry: str
    repository: str
    public_key: str | None  # "cosign.pub" (a file in the site) or a KMS URI
    reference_platform: str  # the platform changelogs compare
    images: tuple[ImageEntry, ...]  # prod images by name, each followed by its debug variant
    unpublished: tuple[str, ...]  # manifests with no published version yet

    def entry(self, name: str) -> ImageEntry:
        return next(i for i in self.images if i.name == name)


# --- pure helpers --------------------------------------------------------------------------------


def eol_status(eol: date | None, today: date, warning_days: int) -> tuple[str, int | None]:
    """(status, days left): "eol" after the date, "warning" within ``warning_days`` of it (the same
    window as policy rule eol-soon), "supported" before that, "unknown" without a date."""
    if eol is None:
        return "unknown", None
    days = (eol - today).days
    if days < 0:
        return "eol", days
    return ("warning" if days <= warning_days else "supported"), days


def prefixes_in(tags: Iterable[str]) -> list[str]:
    """Every tag prefix that has at least one immutable version tag (cosign's sha256-*.sig are not)."""
    return sorted({m[1] for m in map(_IMMUTABLE_TAG_RE.match, tags) if m})


def floating_tags_of(tags: Iterable[str], prefix: str) -> list[str]:
    """The floating tags of exactly this prefix: ``prefix``, ``prefix-v1``, ``prefix-v1.2``."""
    pattern = re.compile(rf"^{re.escape(prefix)}(-v(0|[1-9]\d*)(\.(0|[1-9]\d*))?)?$")
    return sorted(t for t in tags if pattern.match(t))


def from_line(target: str, prefix: str, major: int, digest: str) -> str:
    """What an app team writes: the major floating tag, pinned by the digest it points at now."""
    return f"FROM {target}:{prefix}-v{major}@{digest}"


def overhead(size: int, base_size: int | None) -> int | None:
    return None if base_size is None else size - base_size


def changes_between(previous: VersionEntry, current: VersionEntry, reference_platform: str,
                    packages: Mapping[tuple[str, str], Mapping[str, sbom.Package] | None]) -> Changes:
    """``current`` against ``previous``: the base digest, and the packages on the reference platform
    (or the first platform both have). ``packages`` maps (version, platform) -> package map, None
    where the SBOM did not verify."""
    platform = _common_platform(previous, current, reference_platform)
    if platform is None:
        return _changes(previous, current, "", None, "no platform in common")
    old, new = packages.get((previous.version, platform)), packages.get((current.version, platform))
    diff, note = None, ""
    if old is None or new is None:
        missing = [v.version for v, p in ((previous, old), (current, new)) if p is None]
        note = f"no verified SBOM for {' and '.join(missing)} on {platform}"
    else:
        diff = changelog.diff_packages(old, new)
    return _changes(previous, current, platform, diff, note)


def _changes(previous: VersionEntry, current: VersionEntry, platform: str, diff: changelog.PackageDiff | None,
             note: str) -> Changes:
    return Changes(previous=previous.version, platform=platform, base_changed=previous.base.digest
                   != current.base.digest, base_before=previous.base.digest, base_after=current.base.digest,
                   packages=diff, note=note)


def _common_platform(a: VersionEntry, b: VersionEntry, preferred: str) -> str | None:
    common = [p.platform for p in b.platforms if p.platform in {q.platform for q in a.platforms}]
    if preferred in common:
        return preferred
    return common[0] if common else None


def schema() -> dict[str, Any]:
    return schemas.load("catalog")


def as_document(catalog: SiteCatalog) -> dict[str, Any]:
    """catalog.json's content, checked against schema/catalog.schema.json (a mismatch is a bug)."""
    doc: dict[str, Any] = json.loads(json.dumps(asdict(catalog)))  # tuples become lists, as JSON Schema expects
    jsonschema.Draft202012Validator(schema()).validate(doc)
    return doc


# --- collection ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    """One version as read from the registry, before the changelog is computed."""

    entry: VersionEntry
    labels: Mapping[str, str]
    packages: Mapping[str, Mapping[str, sbom.Package] | None]  # platform -> package map (None: no verified SBOM)


class Collector:
    """Reads the registry (and cosign) for one catalog. One instance per run: it caches the base
    images it has measured, which several versions share."""

    def __init__(self, settings: Settings, registry_for: Callable[[str], Registry], signer: Signer,
                 manifests: Mapping[str, Manifest], *, today: date, public_key: Path | str | None = None,
                 reference_platform: str = changelog.DEFAULT_PLATFORM, now: datetime | None = None,
                 fixes: FixesChecker | None = None) -> None:
        self.settings = settings
        self.fixes = fixes  # None: policy.security_fixes is off, pending fixes are not checked
        self.registry_for = registry_for
        self.registry = registry_for(settings.registry)
        self.signer = signer
        self.manifests = manifests
        self.today = today
        self.now = now or datetime.now(UTC)
        self.reference_platform = reference_platform
        # cosign reads this key (a file or a KMS URI); the commands shown to app teams name the site's copy.
        self._key_arg = str(public_key) if public_key else None
        self._bases: dict[str, gates.BaseImage | str] = {}  # base digest -> sizes, or why unreadable
        self.log = log.get("catalog")

    @property
    def key(self) -> str:
        """The key cosign verifies with: --key, else the configured KMS URI, else the signer's public key
        file (the configured key's .pub, or the dev key's)."""
        return self._key_arg or self.signer.public_key

    @property
    def public_key(self) -> str | None:
        """What to hand the signer: the --key given, or None for the signer's own default."""
        return self._key_arg

    @property
    def key_file(self) -> Path | None:
        """The public key file to copy into the site; None for a KMS key."""
        return None if "://" in self.key else Path(self.key)

    @property
    def shown_key(self) -> str:
        """The --key the catalog's cosign commands use: the site's copy of a key file, or a KMS URI."""
        return SITE_PUBLIC_KEY if self.key_file else self.key

    def collect(self) -> SiteCatalog:
        if self.key_file and not self.key_file.is_file():
            # Without the key every image would look unsigned: refuse instead of misleading.
            raise EnvironmentProblem(f"public key {self.key_file} not found",
                                     hint="pass --key PATH (the .pub of the key images are signed with), "
                                          "or run `factory keygen` for the development key")
        repo = self.settings.repository
        tags = self.registry.list_tags(repo)
        entries = [self._image(prefix, tags) for prefix in prefixes_in(tags)]
        entries = _link_bases(_link_debug(entries))
        published = {e.image for e in entries}
        return SiteCatalog(
            schema_version=SCHEMA_VERSION,
            generated=self.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            registry=self.settings.registry,
            repository=repo,
            public_key=self.shown_key,
            reference_platform=self.reference_platform,
            images=tuple(_ordered(entries)),
            unpublished=tuple(sorted(set(self.manifests) - published)),
        )

    # --- one image -----------------------------------------------------------------------------

    def _image(self, prefix: str, tags: list[str]) -> ImageEntry:
        self.log.info("image", image=prefix)
        pointers = self._floating_pointers(prefix, tags)
        reads = [self._version(prefix, v, pointers) for v in versioning.versions_in(tags, prefix)]
        packages = {(r.entry.version, p): pk for r in reads for p, pk in r.packages.items()}
        versions = [reads[0].entry] + [
            replace(cur.entry, changes=changes_between(prev.entry, cur.entry, self.reference_platform, packages))
            for prev, cur in itertools.pairwise(reads)]
        newest, labels = versions[-1], reads[-1].labels
        variant = labels.get(VARIANT_LABEL, PROD)
        image = prefix.removesuffix(versioning.DEBUG_SUFFIX) if variant == DEBUG else prefix
        m = self.manifests.get(image)
        major = int(newest.version.split(".")[0])
        floating_major = f"{prefix}-v{major}"
        pinned = next((d for d, names in pointers.items() if floating_major in names), newest.digest)
        return ImageEntry(
            name=prefix, image=image, variant=variant,
            description=m.description if m else labels.get(DESCRIPTION_LABEL, ""),
            manifest=m is not None,
            upstream=Upstream(m.upstream.image, m.upstream.tag, m.upstream.digest) if m and m.upstream else None,
            parent=m.parent if m else None,
            eol=self._eol(m),
            latest=newest.version, digest=newest.digest, floating_tags=newest.tags,
            from_line=from_line(self.settings.target, prefix, major, pinned),
            verify_commands=tuple(self._verify_commands(f"{self.settings.target}:{floating_major}", pinned,
                                                        newest.platforms)),
            page=f"images/{prefix}.html", debug=None,
            versions=tuple(reversed(self._lifecycle(versions, m))),
            deprecated=m.deprecated if m else None,
        )

    def _lifecycle(self, versions: list[VersionEntry], m: Manifest | None) -> list[VersionEntry]:
        """Each version's lifecycle state (factory.consume.lifecycle)."""
        eol = lifecycle.image_eol(m, self.manifests, self.settings, self.today)
        numbers = [versioning.Version(*map(int, v.version.split("."))) for v in versions]
        return [replace(v, lifecycle=lifecycle.state_of(n, numbers, eol=eol, today=self.today,
                                                          deprecated=m.deprecated if m else None).state)
                for v, n in zip(versions, numbers, strict=True)]

    def _floating_pointers(self, prefix: str, tags: list[str]) -> dict[str, tuple[str, ...]]:
        """index digest -> the floating tags of ``prefix`` that point at it now."""
        out: dict[str, list[str]] = {}
        for tag in floating_tags_of(tags, prefix):
            found = self.registry.head_manifest(self.settings.repository, tag)
            if found:
                out.setdefault(found.digest, []).append(tag)
        return {d: tuple(sorted(names, key=len, reverse=True)) for d, names in out.items()}

    def _version(self, prefix: str, version: versioning.Version,
                 pointers: Mapping[str, tuple[str, ...]]) -> _Read:
        repo, target = self.settings.repository, self.settings.target
        tag = versioning.immutable_tag(prefix, version)
        index_digest, platform_digests = oci_registry.platform_digests(self.registry, repo, tag)
        manifests = {p: json.loads(self.registry.get_manifest(repo, d)[0]) for p, d in platform_digests.items()}
        first = next(iter(manifests.values()))
        labels = (json.loads(self.registry.get_blob(repo, first["config"]["digest"])).get("config") or {}) \
            .get("Labels") or {}
        notes: list[str] = []
        base = Base(labels.get(BASE_NAME_LABEL, ""), labels.get(BASE_DIGEST_LABEL, ""))
        base_sizes = self._base_sizes(base, sorted(manifests), notes)
        platforms: list[PlatformEntry] = []
        packages: dict[str, Mapping[str, sbom.Package] | None] = {}
        conformance = self._conformance(f"{target}@{index_digest}", notes)
        recorded = self._security_record(conformance)
        scanned = self._scan(target, platform_digests, conformance)
        for platform, doc in sorted(manifests.items()):
            size = doc["config"]["size"] + sum(layer["size"] for layer in doc.get("layers", []))
            document = self._sbom(f"{target}@{platform_digests[platform]}", platform, notes)
            found = packages[platform] = None if document is None else sbom.packages(document)
            base_size = base_sizes.size.get(platform) if base_sizes else None
            where = FixesReport(prefix, str(version), tag, index_digest, platform, platform_digests[platform], ERROR)
            platforms.append(PlatformEntry(
                platform=platform, digest=platform_digests[platform], size=size, layers=len(doc.get("layers", [])),
                base_size=base_size, base_layers=base_sizes.layers.get(platform) if base_sizes else None,
                overhead=overhead(size, base_size),
                packages=None if found is None else len(found),
                security_pending=self._pending(prefix, labels, where, document),
                security_applied=recorded if isinstance(recorded, freshness.AppliedAtBuild)
                else freshness.applied_at_build(recorded, platform)))
        entry = VersionEntry(
            version=str(version), tag=tag, digest=index_digest, created=labels.get(CREATED_LABEL, ""),
            tags=pointers.get(index_digest, ()), signed=self._signed(f"{target}@{index_digest}", notes),
            base=base, platforms=tuple(platforms), changes=None, notes=tuple(notes), scan=scanned)
        if labels.get(FINGERPRINT_LABEL) is None:
            self.log.warning("no fingerprint label: not a factory image?", tag=tag)
        return _Read(entry, labels, packages)

    # --- what may be missing -------------------------------------------------------------------

    def _base_sizes(self, base: Base, platforms: list[str], notes: list[str]) -> gates.BaseImage | None:
        """Layer counts and sizes of the base, per platform (cached: versions share bases)."""
        if not base.name or not base.digest:
            notes.append("no base.name / base.digest label: overhead unknown")
            return None
        if base.digest not in self._bases:
            try:
                ref = Ref.parse(base.name)
                self._bases[base.digest] = gates.base_image(
                    self.registry_for(ref.registry), f"{ref.registry}/{ref.repository}@{base.digest}", platforms)
            except RegistryError as e:
                self._bases[base.digest] = f"base {base.name}@{base.digest} not readable: {e.message}"
                self.log.warning("base not readable", base=base.name, error=e.message)
        found = self._bases[base.digest]
        if isinstance(found, str):
            notes.append(found)
            return None
        return found

    def _signed(self, ref: str, notes: list[str]) -> bool:
        try:
            self.signer.verify(ref, public_key=self.public_key)
            return True
        except VerificationFailed as e:
            notes.append(e.message)
            return False

    def _sbom(self, ref: str, platform: str, notes: list[str]) -> Mapping[str, Any] | None:
        try:
            return sign.verified_sbom(self.signer, ref, self.public_key)
        except VerificationFailed as e:
            notes.append(f"{platform}: {e.message}")
            return None

    def _pending(self, prefix: str, labels: Mapping[str, str], where: FixesReport,
                 document: Mapping[str, Any] | None) -> freshness.PendingNow:
        """The security fixes pending now in this platform, from its verified SBOM (never "none" when unknown)."""
        variant = labels.get(VARIANT_LABEL, PROD)
        m = self.manifests.get(prefix.removesuffix(versioning.DEBUG_SUFFIX) if variant == DEBUG else prefix)
        if self.fixes is None:
            return freshness.pending_now(None, "policy.security_fixes is off")
        if m is None:
            return freshness.pending_now(None, "no local manifest: the distro release is not known")
        if document is None:
            return freshness.pending_now(None, "no verified SBOM attestation")
        return freshness.pending_now(self.fixes.match_verified(m, where, document))

    def _conformance(self, ref: str, notes: list[str]) -> Mapping[str, Any] | str:
        """The version's newest verified conformance predicate, or why none could be read."""
        try:
            statements = self.signer.verify_attestation(ref, CONFORMANCE_PREDICATE_TYPE, public_key=self.public_key)
        except VerificationFailed as e:
            notes.append(f"conformance: not read: {e.message}")
            return e.message
        predicate: Mapping[str, Any] = statements[-1].get("predicate") or {}
        return predicate

    def _security_record(self, conformance: Mapping[str, Any] | str) -> SecurityFixes | freshness.AppliedAtBuild:
        """The ``securityFixes`` record of the version's verified conformance attestation; "not recorded"
        when it has none; an entry that says why when none verifies or the record is malformed."""
        if isinstance(conformance, str):
            return freshness.AppliedAtBuild(False, note=f"not read: {conformance}")
        try:
            found = freshness.parse_record(conformance)
        except ValueError as e:
            return freshness.AppliedAtBuild(False, note=f"not read: {e}")
        return freshness.NOT_RECORDED if found is None else found

    def _scan(self, target: str, platform_digests: Mapping[str, str],
              conformance: Mapping[str, Any] | str) -> VulnScan:
        record = latest_scan(self.signer, target, platform_digests,
                             None if isinstance(conformance, str) else conformance, {"public_key": self.public_key})
        platforms = list((record.get("platforms") or {}).values())
        blocking = tuple(sorted({b for p in platforms for b in p.get("blocking") or []}))
        counts: dict[str, int] = {}
        for p in platforms:
            for severity, n in (p.get("counts") or {}).items():
                counts[severity] = max(counts.get(severity, 0), int(n))
        return VulnScan(str(record.get("status")), describe_scan(record), blocking, counts)

    def _eol(self, m: Manifest | None) -> Eol:
        if m is None:
            return Eol(None, "unknown", None, "no local manifest")
        found = policy.effective_eol(m, self.manifests, self.settings, self.today)
        day, source = found if found else (None, "no end-of-life date known")
        status, days = eol_status(day, self.today, self.settings.policy.eol_warning_days)
        return Eol(day.isoformat() if day else None, status, days, source)

    def _verify_commands(self, ref: str, digest: str, platforms: Iterable[PlatformEntry]) -> list[str]:
        report = VerifyReport(ref, index_digest=digest, platforms={p.platform: p.digest for p in platforms})
        return cosign_commands(report, self.signer, self.shown_key if "://" in self.shown_key else Path(self.shown_key))


def _link_debug(entries: list[ImageEntry]) -> list[ImageEntry]:
    """Point each prod entry at its debug variant's entry."""
    debug_of = {e.image: e.name for e in entries if e.variant == "debug"}
    return [replace(e, debug=debug_of.get(e.image)) if e.variant == "prod" else e for e in entries]


def _link_bases(entries: list[ImageEntry]) -> list[ImageEntry]:
    """Name the org image and version behind each base digest that is one of ours (parents, and
    the prod image under a debug variant)."""
    ours = {v.digest: (e.name, v.version) for e in entries for v in e.versions}

    def linked(v: VersionEntry) -> VersionEntry:
        if v.base.digest not in ours:
            return v
        image, version = ours[v.base.digest]
        return replace(v, base=replace(v.base, image=image, version=version))

    return [replace(e, versions=tuple(map(linked, e.versions))) for e in entries]


def _ordered(entries: list[ImageEntry]) -> list[ImageEntry]:
    """Prod images by name, each followed by its debug variant; orphan debug entries last."""
    by_name = {e.name: e for e in entries}
    out = []
    for e in sorted((e for e in entries if e.variant != "debug"), key=lambda e: e.name):
        out.append(e)
        if e.debug:
            out.append(by_name[e.debug])
    out += sorted((e for e in entries if e not in out), key=lambda e: e.name)
    return out


def collect(settings: Settings, registry_for: Callable[[str], Registry], signer: Signer,
            manifests: Mapping[str, Manifest], *, today: date, public_key: Path | str | None = None,
            now: datetime | None = None, fixes: FixesChecker | None = None) -> SiteCatalog:
    return Collector(settings, registry_for, signer, manifests, today=today, public_key=public_key,
                     now=now, fixes=fixes).collect()
