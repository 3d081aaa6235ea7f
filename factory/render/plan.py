"""Plan: pure functions from validated manifests and rendered contexts to what must be built.

The input fingerprint is a stable hash of everything that determines an image: its rendered
context, the base it is built on (upstream or parent index digest), its platforms and the
renderer's version. It is stored on every published image as the label ``FINGERPRINT_LABEL``
(``io.github.base-image-factory.fingerprint``); a publish whose fingerprint equals the current
version's writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NotRequired, TypedDict

from factory.adapters.gitinfo import Revision, public_url
from factory.core import platforms, versioning
from factory.core.errors import RegistryError, RepoFileError, UsageError
from factory.core.labels import (
    BASE_DIGEST_LABEL,
    DEBUG,
    FINGERPRINT_LABEL,
    PROD,
    VERSION_LABEL,
    created_timestamp,
)
from factory.core.model import Manifest, Parent, Upstream
from factory.oci.registry import Registry
from factory.render.contexts import MAX_CONTEXT_FILE, RENDER_VERSION, digest_files
from factory.spec import repofs
from factory.spec.config import Settings
from factory.spec.manifest import ManifestSet

FINGERPRINT_VERSION = 1  # bump when what goes into the fingerprint changes
LOOKUP_CONCURRENCY = 8


def read_context(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by path relative to it (posix separators). A link or a special file
    there is refused (RepoFileError), never followed: render writes none, so one is a committed attack."""
    if folder.is_symlink():
        raise RepoFileError(folder, "is a symbolic link; a rendered context is a folder: run `factory render` "
                                    "and commit images/")
    files = {}
    for entry in repofs.list_tree(folder):
        if not entry.regular:
            raise RepoFileError(entry.path, f"is {entry.kind}; a rendered context holds regular files only: "
                                            "run `factory render` and commit images/")
        files[entry.rel] = repofs.read_bytes(entry.path, folder, MAX_CONTEXT_FILE)
    return files


def context_digest(image_dir: Path, variant: str = PROD) -> str:
    """The committed context's digest, as the renderer computes it for ``RenderedImage``: the prod
    context is every file outside debug/, the debug context the files under debug/."""
    if variant == PROD:
        files = {p: c for p, c in read_context(image_dir).items() if not p.startswith(f"{DEBUG}/")}
    else:
        files = read_context(image_dir / variant)
    return digest_files(files)


def fingerprint(*, context_digest: str, base_digest: str, platforms: Sequence[str], variant: str = PROD) -> str:
    doc = {
        "v": FINGERPRINT_VERSION,
        "context": context_digest,
        "base": base_digest,
        "platforms": sorted(platforms),
        "render": RENDER_VERSION,
        "variant": variant,
    }
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# --- what must be built -----------------------------------------------------------------------

NEW, UPSTREAM_CHANGED, PARENT_CHANGED, MANIFEST_CHANGED, FORCED, SECURITY_FIXES, VULNERABLE = (
    "new", "upstream changed", "parent changed", "manifest changed", "forced", "security fixes", "vulnerable")


@dataclass(frozen=True)
class PendingFix:
    """One package of an image's current version with a security fix its org layer can apply (or, for a
    no-shell image, that only a new upstream image brings): the detail under the reason."""

    package: str
    installed: str
    candidate: str
    suite: str  # bookworm-security
    platforms: tuple[str, ...]  # where it is pending ("linux/amd64", and "debug linux/amd64" for the debug variant)

    def __str__(self) -> str:
        return f"{self.package} {self.installed} -> {self.candidate} ({self.suite})"


@dataclass(frozen=True)
class ImageFixes:
    """What `factory fixes` found in one image's current version (prod and debug variants), computed by
    the caller (``factory.publish.pipeline``): the plan reads it and asks nothing itself."""

    version: str  # the version checked: the reason applies only while it is still the current one
    fixable: tuple[PendingFix, ...] = ()  # security fixes the org layer applies on a rebuild
    upstream: tuple[PendingFix, ...] = ()  # no-shell image: only a new upstream image brings these
    errors: tuple[str, ...] = ()  # checks that failed: their fixes are unknown (never "none pending")
    left: tuple[PendingFix, ...] = ()  # pending when this version was built too: its build could not apply them


@dataclass(frozen=True)
class PlannedImage:
    name: str
    build: bool
    reasons: tuple[str, ...]
    fingerprint: str | None  # None when it depends on a parent that is itself being rebuilt
    current_version: str | None
    current_digest: str | None
    next_version: str  # what a publish would write now
    base: str  # upstream pinned ref, or the parent's name
    base_digest: str | None  # what it would be built on now; None while its parent is being rebuilt
    platforms: tuple[str, ...]
    depends_on: str | None
    security_fixes: tuple[PendingFix, ...] = ()  # under the reason "security fixes"


@dataclass(frozen=True)
class Plan:
    images: tuple[PlannedImage, ...]  # dependency order: parents first
    notes: tuple[str, ...] = ()  # what the plan does not build but a reader should know (no-shell fixes ...)
    fixes: Mapping[str, ImageFixes] = field(default_factory=dict)  # the input the security reasons came from

    def to_build(self) -> list[PlannedImage]:
        return [i for i in self.images if i.build]


@dataclass(frozen=True)
class _Published:
    """What the registry says about one image: its current version (if any) and its parent's index."""

    version: versioning.Version | None
    digest: str | None
    fingerprint: str | None
    base_digest: str | None
    parent_digest: str | None  # the parent's `<parent>-v<major>.<minor>` index, as publish resolves it


def make_plan(manifests: ManifestSet, settings: Settings, registry_for: Callable[[str], Registry],
              names: Sequence[str] = (), *, force: bool = False,
              fixes: Mapping[str, ImageFixes] | None = None,
              vulnerable: Mapping[str, str] | None = None) -> Plan:
    """For each manifest (or the named ones and all their descendants): its fingerprint against the one
    on its current published version. Reads one tag list, then per image one GET of its current version's
    index, whose annotations carry the fingerprint and base digest (a version published before the factory
    annotated its indexes: its labels, one platform manifest and its config more); a child whose parent is
    not in the plan needs a HEAD of the parent's tag -- a bounded number at a time over the target
    registry's one client. Nothing is
    built or pulled; upstream tags are `factory drift`'s job. ``fixes`` (manifest name -> what `factory
    fixes` found in its current version; empty when policy.security_fixes is off) adds the reason
    "security fixes" to an image whose current version has fixes its org layer can apply. ``vulnerable``
    (manifest name -> the current version in which `factory scan` found a blocking vulnerability) adds
    "vulnerable": the fix is a rebuild, on today's packages."""
    target = registry_for(settings.registry)
    tags = target.list_tags(settings.repository)
    in_scope = _in_scope(manifests, names)
    with ThreadPoolExecutor(max_workers=LOOKUP_CONCURRENCY) as pool:
        current = list(pool.map(lambda m: _look_up(target, settings.repository, tags, m), in_scope))
        by_name = {m.name: published for m, published in zip(in_scope, current, strict=True)}
        looked_up = list(pool.map(lambda m: _with_parent(target, settings.repository, m, manifests, by_name),
                                  in_scope))
    planned: dict[str, PlannedImage] = {}
    for m, published in zip(in_scope, looked_up, strict=True):
        parent = planned.get(m.parent) if m.parent else None
        forced = force and (not names or m.name in names)
        flagged = published.version is not None and (vulnerable or {}).get(m.name) == str(published.version)
        planned[m.name] = _plan_one(m, settings, published, parent, forced, _current_fixes(fixes, m, published),
                                    vulnerable=flagged)
    return Plan(tuple(planned.values()), fixes_notes(fixes or {}, [m.name for m in in_scope]), dict(fixes or {}))


def _current_fixes(fixes: Mapping[str, ImageFixes] | None, m: Manifest, published: _Published) -> ImageFixes | None:
    """What was found in ``m``'s current version; None when nothing was checked, or another version was."""
    found = (fixes or {}).get(m.name)
    if found is None or published.version is None or found.version != str(published.version):
        return None
    return found


def fixes_notes(fixes: Mapping[str, ImageFixes], names: Sequence[str]) -> tuple[str, ...]:
    """Notes for what the plan does not rebuild: fixes only a new upstream brings, and failed checks."""
    notes = []
    for name in names:
        found = fixes.get(name)
        if found is None:
            continue
        if found.upstream:
            notes.append(f"{name} {found.version}: {len(found.upstream)} security fix(es) only a new upstream image "
                         f"brings (no shell: upstream must rebuild; drift picks the rebuild up): "
                         + ", ".join(map(str, found.upstream)))
        if found.left:
            notes.append(f"{name} {found.version}: {len(found.left)} security fix(es) its build could not apply "
                         f"(held or kept back; a rebuild would not either): " + ", ".join(map(str, found.left)))
        notes += [f"{name} {found.version}: fixes not checked: {e}" for e in found.errors]
    return tuple(notes)


def _in_scope(manifests: ManifestSet, names: Sequence[str]) -> list[Manifest]:
    """Every manifest, or the named ones and their descendants; parents first."""
    if not names:
        return manifests.ordered()
    wanted = set(names) | {d.name for n in names for d in manifests.descendants(n)}
    return [m for m in manifests.ordered() if m.name in wanted]


def _look_up(target: Registry, repository: str, tags: Sequence[str], m: Manifest) -> _Published:
    """``m``'s current version (from the tag list) and what its index says: one GET, its digest that of
    the bytes. An index without the fingerprint annotation (published before there were any) is read as
    before, from its labels."""
    current = versioning.latest(versioning.versions_in(tags, m.name), m.major, m.minor)
    if current is None:
        return _Published(None, None, None, None, None)
    try:
        raw, _, digest = target.get_manifest(repository, versioning.immutable_tag(m.name, current))
    except RegistryError as e:
        if e.status != 404:
            raise
        return _Published(current, None, None, None, None)  # the tag went away since the tag list was read
    found = json.loads(raw).get("annotations") or {}  # checked by get_manifest: strings only
    if FINGERPRINT_LABEL not in found:
        found = target.labels(repository, digest)
    return _Published(current, digest, found.get(FINGERPRINT_LABEL), found.get(BASE_DIGEST_LABEL), None)


def _with_parent(target: Registry, repository: str, m: Manifest, manifests: ManifestSet,
                 looked_up: Mapping[str, _Published]) -> _Published:
    """``looked_up[m.name]`` with its parent's index digest, for a child: the parent's current version when
    the plan looked it up (publish moves `<parent>-v<x.y>` to its newest `x.y.z`, which that is), else a HEAD
    of that tag."""
    published = looked_up[m.name]
    if not isinstance(m.base, Parent):
        return published
    parent = manifests[m.base.name]
    if parent.name in looked_up:
        return replace(published, parent_digest=looked_up[parent.name].digest)
    found = target.head_manifest(repository, f"{parent.name}-v{parent.version}")
    return replace(published, parent_digest=found.digest if found else None)


def _plan_one(m: Manifest, settings: Settings, published: _Published, parent: PlannedImage | None,
              forced: bool, fixes: ImageFixes | None = None, *, vulnerable: bool = False) -> PlannedImage:
    platforms = tuple(str(p) for p in m.platforms)
    if isinstance(m.base, Upstream):
        base_digest = m.base.digest
    elif parent is not None and parent.build:
        base_digest = None  # known only once the parent is published
    else:
        base_digest = published.parent_digest  # None: the parent has no published version to build on
    fp = None
    if base_digest:
        fp = fingerprint(context_digest=context_digest(settings.images_dir / m.name), base_digest=base_digest,
                         platforms=platforms)
    reasons = [FORCED] if forced else []
    if published.version is None:
        reasons.append(NEW)
    elif fp is None:
        reasons.append(PARENT_CHANGED)
    elif fp != published.fingerprint:
        if published.base_digest != base_digest:
            reasons.append(UPSTREAM_CHANGED if isinstance(m.base, Upstream) else PARENT_CHANGED)
        else:
            reasons.append(MANIFEST_CHANGED)
    security = fixes.fixable if fixes and m.has_shell else ()
    if security:
        reasons.append(SECURITY_FIXES)
    if vulnerable:
        reasons.append(VULNERABLE)
    current = published.version
    return PlannedImage(
        name=m.name, build=bool(reasons), reasons=tuple(reasons), fingerprint=fp,
        current_version=str(current) if current else None, current_digest=published.digest,
        next_version=str(versioning.Version(m.major, m.minor, current.patch + 1 if current else 0)),
        base=m.base.pinned_ref if isinstance(m.base, Upstream) else m.base.name, base_digest=base_digest,
        platforms=platforms, depends_on=m.parent, security_fixes=security)


# --- output formats ---------------------------------------------------------------------------

TABLE_WIDTH = 100  # columns the table keeps to (the security fixes under a reason fold, then "+N more")
FIX_LINES = 3  # lines of packages shown under "security fixes"; the JSON format lists every one


def table(plan: Plan) -> str:
    rows = [("image", "build", "reasons", "current", "fingerprint")]
    for i in plan.images:
        rows.append((i.name, "yes" if i.build else "no", ", ".join(i.reasons) or "up to date",
                     i.current_version or "-", i.fingerprint.removeprefix("sha256:")[:12] if i.fingerprint
                     else "(after parent)"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    # The reasons wrap in their column so that a row keeps to TABLE_WIDTH (five reasons are ~70 columns).
    widths[2] = min(widths[2], max(16, TABLE_WIDTH - sum(widths) + widths[2] - 2 * (len(widths) - 1)))
    lines = ["  ".join(v.ljust(w) for v, w in zip(rows[0], widths, strict=True)).rstrip()]
    for i, row in zip(plan.images, rows[1:], strict=True):
        reasons = textwrap.wrap(row[2], widths[2], break_on_hyphens=False) or [""]
        lines.append("  ".join(v.ljust(w) for v, w in zip((*row[:2], reasons[0], *row[3:]), widths,
                                                           strict=True)).rstrip())
        lines += [" " * (widths[0] + widths[1] + 4) + more for more in reasons[1:]]
        lines += fold([str(f) for f in i.security_fixes], indent="    ")
    count = len(plan.to_build())
    lines.append(f"{count} of {len(plan.images)} to build" if count else "nothing to build")
    lines += [textwrap.fill(f"note: {n}", TABLE_WIDTH, subsequent_indent="  ", break_on_hyphens=False)
              for n in plan.notes]
    return "\n".join(lines)


def fold(items: Sequence[str], *, indent: str, width: int = TABLE_WIDTH, max_lines: int = FIX_LINES) -> list[str]:
    """``items`` joined by ", " into lines of at most ``width`` columns; past ``max_lines`` lines the rest
    is counted, "+N more", at the end of the last line when it fits there, else on a line of its own."""
    lines: list[str] = []
    current = ""
    for n, item in enumerate(items):
        candidate = f"{current}, {item}" if current else item
        if current and len(indent) + len(candidate) > width:
            if len(lines) + 1 == max_lines:  # this line is the last one: it ends with the count of the rest
                more = f", +{len(items) - n} more"
                lines.append(indent + (current + more if len(indent + current + more) <= width else current))
                if len(indent + current + more) > width:
                    lines.append(indent + more.removeprefix(", "))
                return lines
            lines.append(indent + current)
            candidate = item
        current = candidate
    if current:
        lines.append(indent + current)
    return lines


def as_json(plan: Plan) -> str:
    return json.dumps([asdict(i) for i in plan.images], indent=2)


# Native runners per platform, for fan-out (GitHub-hosted labels; `factory plan --runner P=LABEL` overrides).
RUNNERS = {"linux/amd64": "ubuntu-24.04", "linux/arm64": "ubuntu-24.04-arm"}
DEFAULT_RUNNER = "ubuntu-24.04"  # a platform without a native runner builds under QEMU


def parse_runners(items: Sequence[str]) -> dict[str, str]:
    """``PLATFORM=LABEL`` options into {normalised platform: runner label}."""
    out = {}
    for item in items:
        platform, sep, label = item.partition("=")
        if not sep or not label.strip():
            raise UsageError(f"--runner {item!r}: expected PLATFORM=LABEL, e.g. linux/arm64=ubuntu-24.04-arm")
        try:
            out[str(platforms.parse(platform))] = label.strip()
        except ValueError as e:
            raise UsageError(f"--runner {item!r}: {e}") from None
    return out


def levels(plan: Plan) -> dict[str, int]:
    """Build level of each image to build: 0 when its parent is not being rebuilt, else parent's + 1.
    A workflow fans out one level at a time and merges it before the next level builds on it."""
    out: dict[str, int] = {}
    for i in plan.to_build():
        out[i.name] = out[i.depends_on] + 1 if i.depends_on in out else 0
    return out


class MatrixEntry(TypedDict):
    image: str
    platform: str
    runner: str
    platform_slug: str
    depends_on: str
    level: int


class BakeTarget(TypedDict):
    context: str
    dockerfile: str
    platforms: list[str]
    args: dict[str, str]
    labels: dict[str, str]
    tags: list[str]
    contexts: NotRequired[dict[str, str]]


class BakeFile(TypedDict):
    group: dict[str, dict[str, list[str]]]
    target: dict[str, BakeTarget]


def github_matrix(plan: Plan, runners: Mapping[str, str] = RUNNERS, *,
                  level: int | None = None) -> dict[str, list[MatrixEntry]]:
    """One entry per image x platform to build (optionally only one level), in dependency order."""
    depth = levels(plan)
    include = [MatrixEntry(image=i.name, platform=p, runner=runners.get(p, DEFAULT_RUNNER),
                           platform_slug=p.replace("/", "-"), depends_on=i.depends_on or "", level=depth[i.name])
               for i in plan.to_build() for p in i.platforms if level is None or depth[i.name] == level]
    return {"include": include}


def bake(plan: Plan, settings: Settings, revision: Revision | None = None) -> BakeFile:
    """A `docker buildx bake` file (run from the repository root) for the images to build: contexts,
    platforms, the build args and labels a publish passes, and the tags a publish would write. A child of
    a parent built in the same bake gets the parent's target as its base (a named context); otherwise it
    is built on the parent's published index digest. The factory's own publish does not use this file."""
    names = {i.name: _bake_name(i.name) for i in plan.to_build()}
    clashes = sorted(n for n, t in names.items() if list(names.values()).count(t) > 1)
    if clashes:
        raise UsageError(f"images {', '.join(clashes)} map to the same bake target name",
                         hint="bake target names cannot hold dots; rename one of the manifests")
    targets = {names[i.name]: _bake_target(i, settings, revision, names) for i in plan.to_build()}
    return {"group": {"default": {"targets": list(targets)}}, "target": targets}


def _bake_target(i: PlannedImage, settings: Settings, revision: Revision | None,
                 in_bake: Mapping[str, str]) -> BakeTarget:
    args = {"FACTORY_VERSION": i.next_version}
    labels = {VERSION_LABEL: i.next_version}
    if i.fingerprint:  # a child of a parent built in the same bake has none yet
        args["FACTORY_FINGERPRINT"] = labels[FINGERPRINT_LABEL] = i.fingerprint
    if revision:
        created = created_timestamp(revision.commit_time)
        args |= {"FACTORY_REVISION": revision.sha, "FACTORY_CREATED": created,
                 "SOURCE_DATE_EPOCH": str(revision.commit_time)}
    if public_url(settings.source_url):  # the source label (a publish falls back to the git remote)
        args["FACTORY_SOURCE"] = public_url(settings.source_url)
    target = BakeTarget(context=os.path.relpath(settings.images_dir / i.name, settings.root), dockerfile="Dockerfile",
                        platforms=list(i.platforms), args=args, labels=labels, tags=_tags(i, settings))
    if i.depends_on is not None and i.depends_on in in_bake:
        args["BASE_REF"] = "parent"
        target["contexts"] = {"parent": f"target:{in_bake[i.depends_on]}"}
    elif i.depends_on:
        if not i.base_digest:
            raise UsageError(f"{i.name}: its parent {i.depends_on} has no published version to build on",
                             hint=f"publish {i.depends_on} first, or plan both: factory plan {i.depends_on} {i.name}")
        args["BASE_REF"] = f"{settings.target}@{i.base_digest}"
        args["BASE_DIGEST"] = labels[BASE_DIGEST_LABEL] = i.base_digest
    return target


def _tags(i: PlannedImage, settings: Settings) -> list[str]:
    version = versioning.Version(*map(int, i.next_version.split(".")))
    tags = [versioning.immutable_tag(i.name, version), *versioning.floating_tags(i.name, version)]
    return [f"{settings.target}:{t}" for t in tags]


def _bake_name(name: str) -> str:
    return name.replace(".", "_")  # bake target names may not contain dots
