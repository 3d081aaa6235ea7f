"""`factory prune`: remove published versions past the retention policy, with their signatures
and attestations, through the distribution API. A dry run (the default) deletes nothing.

Kept (factory.yaml ``retention``), per image (tag prefix):
- the newest ``keep_patches`` versions of each major, unless the image is past its end of life;
- every version built fewer than ``keep_days`` days ago (the ``created`` annotation of the index,
  else the ``created`` label);
- every version a floating tag points at;
- every version a kept version is built on (its ``base.digest`` in this repository: a parent, or
  the prod image of a debug variant), so that what is kept still verifies.

Deleting a version deletes, by digest: cosign's ``sha256-<hex>.sig`` / ``.att`` / ``.sbom`` tags of
the index and of each platform manifest, OCI referrers where the registry serves them, the platform
manifests no kept index lists, and the index (which removes its immutable tag). A registry that
refuses deletes (HTTP 405, ``UNSUPPORTED``) stops the run before anything is deleted. Blobs stay until
the registry's garbage collection (``registry garbage-collect``) runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from factory.consume import lifecycle
from factory.consume.catalog import floating_tags_of, prefixes_in
from factory.core import log, versioning
from factory.core.errors import EnvironmentProblem, RegistryError
from factory.core.labels import BASE_DIGEST_LABEL, CREATED_LABEL
from factory.core.versioning import Version
from factory.oci.registry import Registry
from factory.spec.config import Retention

COSIGN_SUFFIXES = (".sig", ".att", ".sbom")


@dataclass(frozen=True)
class Candidate:
    prefix: str
    version: Version
    digest: str  # the index
    created: datetime | None
    floating: tuple[str, ...] = ()  # floating tags pointing here now
    base_digest: str = ""

    @property
    def tag(self) -> str:
        return versioning.immutable_tag(self.prefix, self.version)


@dataclass(frozen=True)
class Decision:
    candidate: Candidate
    keep: bool
    reason: str


@dataclass
class PruneResult:
    decisions: list[Decision]
    applied: bool
    deleted: list[str] = field(default_factory=list)  # every manifest digest deleted, artefacts included

    @property
    def removed(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]


def decide(candidates: Sequence[Candidate], retention: Retention, *, now: datetime,
           retired: Iterable[str] = ()) -> list[Decision]:
    """Pure: what the policy keeps, and why. ``retired``: prefixes past their end of life."""
    retired = set(retired)
    reasons: dict[tuple[str, Version], str] = {}
    for c in candidates:
        reasons.setdefault((c.prefix, c.version), "")
    by_major: dict[tuple[str, int], list[Candidate]] = {}
    for c in candidates:
        by_major.setdefault((c.prefix, c.version.major), []).append(c)
    for (prefix, major), group in by_major.items():
        if prefix in retired:
            continue
        for c in sorted(group, key=lambda c: c.version, reverse=True)[:retention.keep_patches]:
            reasons[(c.prefix, c.version)] = f"one of the newest {retention.keep_patches} of major {major}"
    young = now - timedelta(days=retention.keep_days)
    for c in candidates:
        key = (c.prefix, c.version)
        if not reasons[key] and c.floating:
            reasons[key] = "a floating tag points at it: " + ", ".join(c.floating)
        if not reasons[key] and c.created is not None and c.created > young:
            reasons[key] = f"younger than {retention.keep_days} days"
    _keep_bases(candidates, reasons)
    return [Decision(c, bool(reasons[(c.prefix, c.version)]),
                     reasons[(c.prefix, c.version)] or "past the retention policy") for c in candidates]


def _keep_bases(candidates: Sequence[Candidate], reasons: dict[tuple[str, Version], str]) -> None:
    """Keep what a kept version is built on, transitively (a debug variant's prod, a child's parent)."""
    by_digest = {c.digest: c for c in candidates}
    changed = True
    while changed:  # bounded: each pass keeps at least one more candidate, or stops
        changed = False
        for c in candidates:
            base = by_digest.get(c.base_digest)
            if reasons[(c.prefix, c.version)] and base and not reasons[(base.prefix, base.version)]:
                reasons[(base.prefix, base.version)] = f"{c.tag} is built on it"
                changed = True


def _created(annotations: Mapping[str, str], labels: Mapping[str, str]) -> datetime | None:
    text = annotations.get(CREATED_LABEL) or labels.get(CREATED_LABEL)
    if not text:
        return None
    try:
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


class Pruner:
    def __init__(self, registry: Registry, repository: str, retention: Retention) -> None:
        self.registry = registry
        self.repo = repository
        self.retention = retention
        self.log = log.get("prune")

    def candidates(self, tags: Sequence[str], prefixes: Sequence[str]) -> list[Candidate]:
        out = []
        for prefix in prefixes:
            floating = self._floating(tags, prefix)
            for version in versioning.versions_in(tags, prefix):
                found = self.registry.head_manifest(self.repo, versioning.immutable_tag(prefix, version))
                if found is None:
                    continue
                doc = json.loads(self.registry.get_manifest(self.repo, found.digest)[0])
                labels = self.registry.labels(self.repo, found.digest)
                out.append(Candidate(prefix, version, found.digest, _created(doc.get("annotations") or {}, labels),
                                     floating.get(found.digest, ()), labels.get(BASE_DIGEST_LABEL, "")))
        return out

    def _floating(self, tags: Sequence[str], prefix: str) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {}
        for tag in floating_tags_of(tags, prefix):
            found = self.registry.head_manifest(self.repo, tag)
            if found:
                out.setdefault(found.digest, []).append(tag)
        return {d: tuple(sorted(t)) for d, t in out.items()}

    def run(self, decisions: Sequence[Decision], tags: Sequence[str], *, apply: bool) -> PruneResult:
        result = PruneResult(list(decisions), apply)
        if not apply or not result.removed:
            return result
        protected = self._protected_children(tags, {d.candidate.digest for d in result.removed})
        for decision in result.removed:
            self._delete_version(decision.candidate, tags, protected, result)
        return result

    def _protected_children(self, tags: Sequence[str], deleting: set[str]) -> set[str]:
        """Platform manifests some index that stays lists (of any image in the repository, candidate
        or not): copies and rebuilds can share them."""
        staying = set()
        for tag in tags:
            if tag.startswith("sha256-"):  # cosign's artefacts are no images
                continue
            found = self.registry.head_manifest(self.repo, tag)
            if found and found.digest not in deleting:
                staying.add(found.digest)
        return {child for digest in staying for child in self._children(digest)}

    def _children(self, digest: str) -> list[str]:
        doc = json.loads(self.registry.get_manifest(self.repo, digest)[0])
        return [m["digest"] for m in doc.get("manifests", [])]

    def _artefacts(self, digest: str, tags: Sequence[str]) -> list[str]:
        """Manifest digests of cosign's tag-scheme artefacts and the OCI referrers of ``digest``."""
        stem = digest.replace(":", "-")
        out = []
        for tag in (stem + s for s in COSIGN_SUFFIXES if stem + s in tags):
            found = self.registry.head_manifest(self.repo, tag)
            if found:
                out.append(found.digest)
        return out + [r.digest for r in self.registry.referrers(self.repo, digest)]

    def _delete_version(self, c: Candidate, tags: Sequence[str], protected: set[str],
                        result: PruneResult) -> None:
        children = [d for d in self._children(c.digest) if d not in protected]
        order = [a for d in (c.digest, *children) for a in self._artefacts(d, tags)] + [c.digest, *children]
        for digest in dict.fromkeys(order):  # an artefact shared by two subjects is deleted once
            self._delete(digest, result)
        self.log.info("deleted", tag=c.tag, digest=c.digest, manifests=len(order))

    def _delete(self, digest: str, result: PruneResult) -> None:
        try:
            self.registry.delete_manifest(self.repo, digest)
        except RegistryError as e:
            if e.status == 404:  # already gone (another subject's artefact, or a concurrent prune)
                return
            if e.status == 405 or e.code == "UNSUPPORTED":
                before = f"{len(result.deleted)} manifest(s) were deleted before" if result.deleted \
                    else "nothing was deleted"
                raise EnvironmentProblem(
                    f"the registry refuses deletes ({e.message}); {before}",
                    hint="enable deletes in the registry (distribution: storage.delete.enabled: true) "
                         "or prune with the registry's own retention rules") from None
            raise
        result.deleted.append(digest)


def prune(registry: Registry, repository: str, retention: Retention, *, now: datetime,
          retired_images: Iterable[str] = (), prefixes: Sequence[str] = (), apply: bool = False) -> PruneResult:
    """``retired_images``: manifest names past their end of life (their majors keep nothing by count)."""
    tags = registry.list_tags(repository)
    pruner = Pruner(registry, repository, retention)
    prefixes = list(prefixes) or prefixes_in(tags)
    images = set(retired_images)
    retired = [p for p in prefixes if lifecycle.prefix_of(p) in images]
    candidates = pruner.candidates(tags, prefixes)
    return pruner.run(decide(candidates, retention, now=now, retired=retired), tags, apply=apply)


def table(result: PruneResult) -> str:
    lines = [f"{'tag':48} {'action':8} why"]
    for d in result.decisions:
        action = "keep" if d.keep else ("deleted" if result.applied else "delete")
        lines.append(f"{d.candidate.tag:48} {action:8} {d.reason}")
    removed = len(result.removed)
    lines.append(f"{len(result.decisions) - removed} kept, {removed} "
                 + (f"deleted ({len(result.deleted)} manifests with their signatures and attestations)"
                    if result.applied else "to delete (dry run: nothing deleted; --apply deletes)"))
    return "\n".join(lines)
