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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from factory import versioning
from factory.render import DEBUG, FINGERPRINT_LABEL, PROD, RENDER_VERSION, digest_files

FINGERPRINT_VERSION = 1  # bump when what goes into the fingerprint changes
LOOKUP_CONCURRENCY = 8


def read_context(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by path relative to it (posix separators)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


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

NEW, UPSTREAM_CHANGED, PARENT_CHANGED, MANIFEST_CHANGED, FORCED = (
    "new", "upstream changed", "parent changed", "manifest changed", "forced")


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
    platforms: tuple[str, ...]
    depends_on: str | None


@dataclass(frozen=True)
class Plan:
    images: tuple[PlannedImage, ...]  # dependency order: parents first

    def to_build(self) -> list[PlannedImage]:
        return [i for i in self.images if i.build]


@dataclass(frozen=True)
class _Published:
    version: versioning.Version
    digest: str
    fingerprint: str | None
    base_digest: str | None


def make_plan(catalog, settings, registry_for: Callable, names: Sequence[str] = (), *, force: bool = False) -> Plan:
    """For each manifest (or the named ones and their descendants): its fingerprint against the one on its
    current published version. One tag list for the repository, then per image one HEAD and one config read
    for its current version, and one HEAD per parent; nothing is built or pulled."""
    target = registry_for(settings.registry)
    tags = target.list_tags(settings.repository)
    roots = set(names) or set(catalog)
    wanted = roots | {d.name for n in roots for d in catalog.descendants(n)}
    ordered = [m for m in catalog.ordered() if m.name in wanted]
    # The look-ups are independent of each other: a bounded number at a time over one connection pool.
    with ThreadPoolExecutor(max_workers=LOOKUP_CONCURRENCY) as pool:
        current = dict(zip([m.name for m in ordered],
                           pool.map(lambda m: _published(target, settings.repository, tags, m), ordered)))
    planned: dict[str, PlannedImage] = {}
    for m in ordered:
        published = current[m.name]
        parent = planned.get(m.parent) if m.parent else None
        planned[m.name] = _plan_one(m, settings, target, published, parent, force and m.name in roots)
    return Plan(tuple(planned.values()))


def _published(target, repository: str, tags: Sequence[str], m) -> _Published | None:
    current = versioning.latest(versioning.versions_in(tags, m.name), m.major, m.minor)
    if current is None:
        return None
    tag = versioning.immutable_tag(m.name, current)
    found = target.head_manifest(repository, tag)
    labels = target.labels(repository, tag) if found else {}
    return _Published(current, found.digest if found else "", labels.get(FINGERPRINT_LABEL),
                      labels.get("org.opencontainers.image.base.digest"))


def _base_digest(m, settings, target, parent: PlannedImage | None) -> str | None:
    """The digest the image would be built on now; None when the parent is about to change."""
    if m.upstream:
        return m.upstream.digest
    if parent is not None and parent.build:
        return None
    if parent is not None and parent.current_digest:
        return parent.current_digest
    found = target.head_manifest(settings.repository, f"{m.parent}-v{m.version}")
    return found.digest if found else None


def _plan_one(m, settings, target, published: _Published | None, parent: PlannedImage | None,
              force: bool) -> PlannedImage:
    platforms = tuple(str(p) for p in m.platforms)
    base_digest = _base_digest(m, settings, target, parent)
    fp = None
    if base_digest:
        fp = fingerprint(context_digest=context_digest(settings.images_dir / m.name), base_digest=base_digest,
                         platforms=platforms)
    reasons = []
    if force:
        reasons.append(FORCED)
    if published is None:
        reasons.append(NEW)
    elif fp is None:
        reasons.append(PARENT_CHANGED)
    elif fp != published.fingerprint:
        if published.base_digest != base_digest:
            reasons.append(UPSTREAM_CHANGED if m.upstream else PARENT_CHANGED)
        else:
            reasons.append(MANIFEST_CHANGED)
    return PlannedImage(
        name=m.name, build=bool(reasons), reasons=tuple(reasons), fingerprint=fp,
        current_version=str(published.version) if published else None,
        current_digest=published.digest if published else None,
        next_version=str(versioning.Version(m.major, m.minor, published.version.patch + 1) if published
                         else versioning.Version(m.major, m.minor, 0)),
        base=m.upstream.pinned_ref if m.upstream else m.parent, platforms=platforms, depends_on=m.parent)


# --- output formats ---------------------------------------------------------------------------

def table(plan: Plan) -> str:
    rows = [("image", "build", "reasons", "current", "fingerprint")]
    for i in plan.images:
        rows.append((i.name, "yes" if i.build else "no", ", ".join(i.reasons) or "up to date",
                     i.current_version or "-", (i.fingerprint or "(after parent)").removeprefix("sha256:")[:12]))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def as_json(plan: Plan) -> str:
    return json.dumps([asdict(i) for i in plan.images], indent=2)


# Native runners per architecture, for fan-out (GitHub-hosted labels; override with your own).
RUNNERS = {"linux/amd64": "ubuntu-24.04", "linux/arm64": "ubuntu-24.04-arm"}


def levels(plan: Plan) -> dict[str, int]:
    """Build level of each image to build: 0 when its parent is not being rebuilt, else parent's + 1.
    A workflow fans out one level at a time and merges it before the next level builds on it."""
    out: dict[str, int] = {}
    for i in plan.to_build():
        out[i.name] = out[i.depends_on] + 1 if i.depends_on in out else 0
    return out


def github_matrix(plan: Plan, runners: Mapping[str, str] = RUNNERS, *, level: int | None = None) -> dict:
    """One entry per image x platform to build (optionally only one level), in dependency order."""
    depth = levels(plan)
    include = [{"image": i.name, "platform": p, "runner": runners.get(p, "ubuntu-24.04"),
                "platform_slug": p.replace("/", "-"), "depends_on": i.depends_on or "", "level": depth[i.name]}
               for i in plan.to_build() for p in i.platforms if level is None or depth[i.name] == level]
    return {"include": include}


def bake(plan: Plan, catalog, settings) -> dict:
    """A `docker buildx bake` file for the images to build: contexts, platforms, the build args and
    labels a publish passes, and the tags it would write. A child of a parent built in the same bake
    gets the parent's target as its base (a named context); otherwise the parent's published digest."""
    building = {i.name for i in plan.to_build()}
    targets = {}
    for i in plan.to_build():
        m = catalog[i.name]
        version = versioning.Version(*map(int, i.next_version.split(".")))
        args = {"FACTORY_VERSION": i.next_version, "FACTORY_FINGERPRINT": i.fingerprint or ""}
        target = {"context": str(settings.images_dir / i.name), "dockerfile": "Dockerfile",
                  "platforms": list(i.platforms), "args": args,
                  "labels": {FINGERPRINT_LABEL: i.fingerprint or ""},
                  "tags": [f"{settings.target}:{t}" for t in
                           [versioning.immutable_tag(m.name, version), *versioning.floating_tags(m.name, version)]]}
        if i.depends_on in building:
            args["BASE_REF"] = "parent"
            target["contexts"] = {"parent": f"target:{_bake_name(i.depends_on)}"}
        elif i.depends_on:
            parent = next(p for p in plan.images if p.name == i.depends_on)
            args["BASE_REF"] = f"{settings.target}@{parent.current_digest}"
            args["BASE_DIGEST"] = parent.current_digest or ""
        targets[_bake_name(i.name)] = target
    return {"group": {"default": {"targets": list(targets)}}, "target": targets}


def _bake_name(name: str) -> str:
    return name.replace(".", "_")  # bake target names may not contain dots
