"""Upstream drift: does each upstream tag still point at the digest its manifest pins?

A look-up is one HEAD per upstream (the registry client reuses one connection pool and token cache
per registry). When the HEAD reports another digest than the pinned one (or none), the manifest is
fetched and its bytes hashed: a digest is only ever reported, and written by ``--update``, when it
was computed from the bytes (a HEAD's header alone could name anything; one that equals the pin
changes nothing, and a registry lying so could as well serve the old bytes). ``--update`` rewrites
only the digest on the manifest's ``upstream.digest`` line, keeping comments and formatting;
``--commit`` makes one commit per manifest with GitPython.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from factory.adapters import gitinfo
from factory.core.errors import EnvironmentProblem, FactoryError, UsageError
from factory.core.model import Manifest, Upstream
from factory.oci.documents import SHA256 as SHA256_DIGEST
from factory.oci.registry import Registry
from factory.spec.manifest import ManifestSet

LOOKUP_CONCURRENCY = 8


@dataclass(frozen=True)
class Drift:
    name: str
    path: str
    image: str
    tag: str
    pinned: str
    current: str | None  # None: the tag no longer exists
    error: str = ""

    @property
    def drifted(self) -> bool:
        return not self.error and self.current != self.pinned


RegistryFor = Callable[[str], Registry]


def check(manifests: Sequence[Manifest], registry_for: RegistryFor) -> list[Drift]:
    """One HEAD per upstream, a bounded number at a time; parent-based manifests have no upstream."""
    tagged = [(m, m.base, m.base.tag) for m in manifests if isinstance(m.base, Upstream) and m.base.tag]
    with ThreadPoolExecutor(max_workers=LOOKUP_CONCURRENCY) as pool:
        return list(pool.map(lambda one: _check_one(one[0], one[1], one[2], registry_for), tagged))


def _check_one(m: Manifest, up: Upstream, tag: str, registry_for: RegistryFor) -> Drift:
    ref = up.ref
    try:
        current = current_digest(registry_for(ref.registry), ref.repository, tag, up.digest or "")
    except FactoryError as e:
        return Drift(m.name, str(m.path), up.image, tag, up.digest or "", None, error=e.message)
    return Drift(m.name, str(m.path), up.image, tag, up.digest or "", current)


def current_digest(registry: Registry, repository: str, tag: str, pinned: str) -> str | None:
    """The digest ``tag`` points at now (None: the tag is gone). The HEAD's digest is taken when it is
    the pinned one; any other is read back with a GET whose bytes give the digest (and must match the
    registry's header)."""
    found = registry.head_manifest(repository, tag)
    if found is None:
        return None
    if found.digest == pinned:
        return pinned
    _, _, digest = registry.get_manifest(repository, tag)
    return digest


@dataclass(frozen=True)
class DriftRun:
    drifts: list[Drift]
    updated: list[Drift]  # manifests rewritten (and committed, when asked)
    commits: list[str]

    @property
    def drifted(self) -> list[Drift]:
        return [d for d in self.drifts if d.drifted]


def run(manifests: ManifestSet, registry_for: RegistryFor, *, update: bool = False, commit: bool = False,
        branch: str | None = None, repo_root: Path | None = None) -> DriftRun:
    """Look every upstream up; with ``update`` rewrite drifted digests; with ``commit`` one commit each.
    Raises when an upstream could not be looked up: a nightly must not mistake "unreachable" for "unchanged"."""
    drifts = check(manifests.ordered(), registry_for)
    errors = [d for d in drifts if d.error]
    if errors:
        raise EnvironmentProblem(f"{len(errors)} upstream(s) could not be looked up: "
                                 + ", ".join(f"{d.name} ({d.error})" for d in errors))
    updatable = [d for d in drifts if d.drifted and d.current]  # a vanished tag has nothing to pin to
    commits: list[str] = []
    if update:
        for d in updatable:
            assert d.current is not None  # updatable only holds found tags
            update_manifest(manifests[d.name], d.current)
        if commit and updatable:
            commits = commit_updates(repo_root or Path.cwd(), updatable, branch)
    return DriftRun(drifts, updatable if update else [], commits)


def update_manifest(m: Manifest, new_digest: str) -> None:
    """Replace the pinned digest on its own line, and nothing else in the file."""
    if not SHA256_DIGEST.fullmatch(new_digest):  # only digests computed from bytes come here; never anything else
        raise UsageError(f"{m.path}: refusing to write upstream.digest: the new value is not sha256:<64 hex>")
    pinned = m.base.digest if isinstance(m.base, Upstream) else None
    line_no = m.line_of("upstream.digest")
    lines = m.path.read_text(encoding="utf-8").splitlines(keepends=True)
    if not pinned or not line_no or pinned not in lines[line_no - 1]:
        raise UsageError(f"{m.path}: cannot find upstream.digest {pinned} on line {line_no}",
                         hint="write the digest on the same line as its key: `digest: sha256:...`")
    lines[line_no - 1] = lines[line_no - 1].replace(pinned, new_digest)
    m.path.write_text("".join(lines), encoding="utf-8")


def commit_message(d: Drift) -> str:
    return f"{d.name}: bump upstream {d.tag} {_short(d.pinned)} -> {_short(d.current or '')}"


def commit_updates(repo_root: Path, drifts: Sequence[Drift], branch: str | None) -> list[str]:
    """One commit per updated manifest, on ``branch`` (created from HEAD when missing)."""
    if branch:
        gitinfo.checkout_branch(repo_root, branch)
    shas = [gitinfo.commit(repo_root, [Path(d.path)], commit_message(d)) for d in drifts]
    return [s for s in shas if s]


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def table(drifts: Sequence[Drift]) -> str:
    rows = [("image", "upstream", "pinned", "current", "state")]
    for d in drifts:
        state = "error: " + d.error if d.error else ("DRIFTED" if d.drifted else "ok")
        rows.append((d.name, f"{d.image}:{d.tag}", _short(d.pinned), _short(d.current or "") or "(gone)", state))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def as_json(drifts: Sequence[Drift]) -> str:
    return json.dumps([asdict(d) | {"drifted": d.drifted} for d in drifts], indent=2)
