"""`factory check-dockerfile PATH...`: is every base of an app team's Dockerfile one it may build on?

For each ``FROM`` (stage references and ``scratch`` are fine): an org image (or, in a build stage
only, an allowed upstream), pinned by digest, the digest a published version of the tag's image
whose signature verifies with the org key, not a debug variant in the final image, and its
lifecycle: superseded (which version is newer, and what changed), deprecated (the successor) or
retired (past end of life) fail; end of life within ``policy.eol_warning_days`` warns.

Two sources answer the same questions: the registry with cosign (``RegistrySource``), or a
``catalog.json`` for air-gapped CI (``CatalogSource``: signatures as the catalog verified them).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from factory.consume import dockerfile, lifecycle
from factory.consume.lifecycle import State
from factory.core import versioning
from factory.core.errors import RegistryError, UsageError, VerificationFailed
from factory.core.labels import DEBUG, PROD, VARIANT_LABEL
from factory.core.model import Deprecation
from factory.core.reference import Ref
from factory.core.versioning import Version
from factory.oci.registry import Registry
from factory.trust.sign import Signing

ERROR, WARNING = "error", "warning"

# rule id -> what it means (SARIF's rule descriptions, docs/app-teams.md)
RULES: Mapping[str, str] = {
    "unresolved-arg": "The FROM uses a build argument that has no default: the base cannot be checked.",
    "not-org-base": "The base is neither an org base image nor an allowed upstream.",
    "upstream-final-stage": "An allowed upstream is fine in a build stage, never in the final image.",
    "unpinned": "The base is not pinned by digest (@sha256:...).",
    "unpublished": "The digest is not a published version of the tag's org image.",
    "unsigned": "The digest's signature does not verify with the org key.",
    "debug-final-stage": "A debug variant (shell and tools, for troubleshooting) in the final image.",
    "superseded": "A newer version of the same major is published.",
    "deprecated": "The image is deprecated: move to its successor.",
    "retired": "The image is past its end of life.",
    "eol-soon": "The image reaches its end of life soon.",
}
_IMMUTABLE_OR_FLOATING_RE = re.compile(r"^(?P<prefix>[a-z0-9][a-z0-9._-]*?)(-v\d+(\.\d+){0,2})?$")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    level: str  # ERROR or WARNING
    image: str  # the FROM's image, substituted
    message: str

    def render(self) -> str:
        return f"{self.path}:{self.line}: {self.level}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class Published:
    prefix: str
    version: Version
    digest: str
    variant: str  # PROD or DEBUG


_Make = Callable[..., Finding]  # (rule, message[, level]) -> a Finding at the FROM being checked


class Source(Protocol):
    """What the check needs to know about the org's published images."""

    target: str  # <registry>/<repository>

    def versions(self, prefix: str) -> Sequence[Published]: ...

    def signature_problem(self, p: Published) -> str | None: ...

    def state(self, p: Published) -> State: ...

    def changes(self, old: Published, new: Published) -> str: ...


def prefix_of_tag(tag: str) -> str:
    """The image (tag prefix) a tag names: ``x-v1``, ``x-v1.2``, ``x-v1.2.3`` and ``x`` are all ``x``."""
    found = _IMMUTABLE_OR_FLOATING_RE.match(tag)
    return found["prefix"] if found else tag


def _normalised(ref: Ref) -> str:
    return f"{ref.registry}/{ref.repository}"


class Checker:
    def __init__(self, source: Source, *, allowed_upstreams: Sequence[str] = (), eol_warning_days: int = 180,
                 today: date) -> None:
        self.source = source
        self.allowed = tuple(allowed_upstreams)  # registry/repository patterns (fnmatch), e.g. docker.io/library/*
        self.eol_warning_days = eol_warning_days
        self.today = today

    def check(self, froms: Iterable[dockerfile.From]) -> list[Finding]:
        out: list[Finding] = []
        for f in froms:
            if f.stage_ref or f.scratch:
                continue
            out += self._one(f)
        return out

    def _one(self, f: dockerfile.From) -> list[Finding]:
        def finding(rule: str, message: str, level: str = ERROR) -> Finding:
            return Finding(f.path, f.line, rule, level, f.image, message)

        if f.unresolved:
            return [finding("unresolved-arg", f"{f.written}: {f.unresolved} has no default; "
                                              "give it one or pass --build-arg")]
        try:
            ref = Ref.parse(f.image)
        except RegistryError as e:
            return [finding("not-org-base", f"{f.image}: not an image reference ({e.message})")]
        if _normalised(ref) != self.source.target:
            problem = self._upstream(f, ref, finding)
            return [problem] if problem else []
        if not ref.digest:
            return [finding("unpinned", f"{f.image} is not pinned by digest: copy the FROM line from the catalog "
                                        f"({f.image}@sha256:...)")]
        return self._org(f, ref, finding)

    def _upstream(self, f: dockerfile.From, ref: Ref, finding: _Make) -> Finding | None:
        name = _normalised(ref)
        if not any(fnmatch.fnmatchcase(name, p) for p in self.allowed):
            return finding("not-org-base", f"{f.image} is not an org base image ({self.source.target}) "
                                           "nor an allowed upstream")
        if f.final:
            return finding("upstream-final-stage", f"{f.image} is an allowed upstream, but the final image must "
                                                   f"be built on an org base image ({self.source.target})")
        if not ref.digest:
            return finding("unpinned", f"{f.image} is not pinned by digest")
        return None

    def _org(self, f: dockerfile.From, ref: Ref, finding: _Make) -> list[Finding]:
        prefix = prefix_of_tag(ref.tag or "")
        versions = self.source.versions(prefix) if ref.tag else ()
        found = next((p for p in versions if p.digest == ref.digest), None)
        if found is None:
            what = f"a published version of {prefix}" if ref.tag else "tagged: name the image's tag"
            return [finding("unpublished", f"{ref.digest} is not {what}")]
        out = []
        problem = self.source.signature_problem(found)
        if problem:
            out.append(finding("unsigned", f"{prefix} {found.version} ({found.digest[:19]}): the signature does "
                                           f"not verify with the org key: {problem}"))
        if found.variant == DEBUG and f.final:
            out.append(finding("debug-final-stage", f"{prefix} is a debug variant in the final image: "
                                                    "use it only in a build stage, never deploy it"))
        out += self._lifecycle(found, versions, finding)
        return out

    def _lifecycle(self, found: Published, versions: Sequence[Published], finding: _Make) -> list[Finding]:
        state = self.source.state(found)
        where = f"{found.prefix} {found.version}"
        if state.state == lifecycle.RETIRED:
            return [finding("retired", f"{where}: {state.detail}")]
        if state.state == lifecycle.DEPRECATED:
            return [finding("deprecated", f"{where}: {state.detail}")]
        out = []
        if state.state == lifecycle.SUPERSEDED:
            newest = next((p for p in versions if str(p.version) == state.newest), None)
            what = self.source.changes(found, newest) if newest else ""
            out.append(finding("superseded", f"{where}: {state.detail}" + (f" ({what})" if what else "")))
        if state.eol:
            days = (date.fromisoformat(state.eol) - self.today).days
            if 0 <= days <= self.eol_warning_days:
                out.append(finding("eol-soon", f"{where}: end of life {state.eol}, in {days} days", WARNING))
        return out


def check_files(paths: Sequence[Path], checker: Checker, build_args: Mapping[str, str] | None = None) \
        -> tuple[list[Finding], int]:
    """(findings, number of FROM lines checked) over every Dockerfile."""
    findings, count = [], 0
    for path in paths:
        found = dockerfile.froms(str(path), dockerfile.read(path), dict(build_args or {}))
        count += len(found)
        findings += checker.check(found)
    return findings, count


# --- sources -------------------------------------------------------------------------------------


class RegistrySource:
    """The registry is the truth for what is published; cosign for what is signed; the verified
    lifecycle attestation for deprecation and end of life (superseded is read from the tags)."""

    def __init__(self, target: str, registry: Registry, signer: Signing, *, public_key: str | None,
                 today: date) -> None:
        self.target = target
        self.ref = Ref.parse(target)
        self.registry = registry
        self.signer = signer
        self.public_key = public_key
        self.today = today
        self._tags: list[str] | None = None
        self._versions: dict[str, Sequence[Published]] = {}  # one read per prefix per run

    def tags(self) -> list[str]:
        if self._tags is None:
            self._tags = self.registry.list_tags(self.ref.repository)
        return self._tags

    def versions(self, prefix: str) -> Sequence[Published]:
        if prefix not in self._versions:
            self._versions[prefix] = self._read_versions(prefix)
        return self._versions[prefix]

    def _read_versions(self, prefix: str) -> Sequence[Published]:
        repo, out = self.ref.repository, []
        for version in versioning.versions_in(self.tags(), prefix):
            found = self.registry.head_manifest(repo, versioning.immutable_tag(prefix, version))
            if found:
                variant = DEBUG if prefix.endswith(versioning.DEBUG_SUFFIX) else PROD
                out.append(Published(prefix, version, found.digest, variant))
        return tuple(out)

    def signature_problem(self, p: Published) -> str | None:
        try:
            self.signer.verify(f"{self.target}@{p.digest}", public_key=self.public_key)
        except VerificationFailed as e:
            return e.message
        labels = self.registry.labels(self.ref.repository, p.digest)  # the variant as the image says it
        if labels.get(VARIANT_LABEL, p.variant) != p.variant:
            return f"its variant label says {labels[VARIANT_LABEL]}"
        return None

    def state(self, p: Published) -> State:
        live = lifecycle.state_of(p.version, [v.version for v in self.versions(p.prefix)], eol=None,
                                  today=self.today, deprecated=None)
        signed = lifecycle.attested(self.signer, f"{self.target}@{p.digest}", self.public_key)
        if signed is None or signed.state in (lifecycle.CURRENT, lifecycle.SUPERSEDED):
            return State(live.state, live.version, live.newest, eol=signed.eol if signed else None)
        return signed

    def changes(self, old: Published, new: Published) -> str:
        return (f"see `factory diff {self.target}:{versioning.immutable_tag(old.prefix, old.version)} "
                f"{self.target}:{versioning.immutable_tag(new.prefix, new.version)}`")


class CatalogSource:
    """catalog.json (`factory catalog`): no registry, no cosign; signatures as the catalog verified them."""

    def __init__(self, path: Path, *, today: date) -> None:
        try:
            doc = json.loads(path.read_text())
            self.target = f"{doc['registry']}/{doc['repository']}"
            self.images: dict[str, Mapping[str, Any]] = {i["name"]: i for i in doc["images"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{path}: not a catalog.json ({e})",
                             hint="write one with `factory catalog --out DIR`") from None
        self.today = today

    def _version_entries(self, prefix: str) -> list[Mapping[str, Any]]:
        return list(self.images.get(prefix, {}).get("versions", ()))

    def versions(self, prefix: str) -> Sequence[Published]:
        image = self.images.get(prefix, {})
        return tuple(Published(prefix, Version(*map(int, v["version"].split("."))), v["digest"],
                               image.get("variant", PROD)) for v in self._version_entries(prefix))

    def signature_problem(self, p: Published) -> str | None:
        entry = next(v for v in self._version_entries(p.prefix) if v["digest"] == p.digest)
        return None if entry.get("signed") else "the catalog records it unsigned: " + "; ".join(entry.get("notes", []))

    def state(self, p: Published) -> State:
        image = self.images[p.prefix]
        eol = (image.get("eol") or {}).get("date")
        deprecated = image.get("deprecated")
        return lifecycle.state_of(p.version, [v.version for v in self.versions(p.prefix)],
                                  eol=date.fromisoformat(eol) if eol else None, today=self.today,
                                  deprecated=Deprecation(deprecated["successor"], deprecated.get("reason", ""))
                                  if deprecated else None)

    def changes(self, old: Published, new: Published) -> str:
        """What changed from ``old`` up to ``new``, summed from the catalog's changelogs."""
        counts = {"upgraded": 0, "added": 0, "removed": 0}
        base_changed = False
        for v in self._version_entries(old.prefix):
            version = Version(*map(int, v["version"].split(".")))
            changes = v.get("changes") or {}
            if old.version < version <= new.version:
                base_changed |= bool(changes.get("base_changed"))
                for key in counts:
                    counts[key] += len((changes.get("packages") or {}).get(key, ()))
        parts = [f"{n} package(s) {k}" for k, n in counts.items() if n]
        return ", ".join((["new base image"] if base_changed else []) + parts) or "no package changes recorded"


# --- output --------------------------------------------------------------------------------------


def as_json(findings: Sequence[Finding], checked: int) -> str:
    errors = sum(f.level == ERROR for f in findings)
    return json.dumps({"checked": checked, "errors": errors, "warnings": len(findings) - errors,
                       "findings": [asdict(f) for f in findings]}, indent=2)


def table(findings: Sequence[Finding], checked: int) -> str:
    lines = [f.render() for f in findings]
    errors = sum(f.level == ERROR for f in findings)
    lines.append(f"{checked} FROM line(s) checked: {errors} error(s), {len(findings) - errors} warning(s)")
    return "\n".join(lines)
