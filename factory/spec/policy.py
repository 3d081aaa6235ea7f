"""Policy: the organisation's rules for a production base image, drawn from the base-image guide.

Rules run in two stages:

- ``manifest``: from the manifests alone, by ``evaluate()`` (``factory validate``);
- ``artifact``: on what the publish pipeline built, by ``check_artifact()`` (layers, size,
  vulnerabilities).

Every rule has a stable id (never renumbered; a retired id is never reused), one severity and a
one-line rationale from the guide. Every message starts with ``<id> <slug>:`` and says what is
wrong, the value, and what to do.

Waivers: a manifest may waive a waivable rule with a reason and an expiry date. A waived finding
is reported as a warning that says so; an expired waiver, or one naming an unknown or unwaivable
rule, is an error of its own; a waiver of a manifest-stage rule that did not fire is a warning.
A waiver is in force through its ``expires`` day.

``render_docs()`` writes docs/policy.md from this registry and ``factory.lifecycle``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

from factory.core import lifecycle
from factory.core.errors import Problem
from factory.core.model import Manifest, Upstream, Vulnerability
from factory.core.reference import DOCKER_HUB, normalise_registry
from factory.spec.config import Settings

ERROR, WARNING = "error", "warning"
MANIFEST, ARTIFACT = "manifest", "artifact"


@dataclass(frozen=True)
class Rule:
    id: str  # "POL-001": matches the waiver schema ^[A-Z]+-[0-9]{3}$; stable forever
    slug: str  # "pinned-tag"
    severity: str  # "error" | "warning"
    title: str
    rationale: str  # one line, from the guide
    stage: str  # "manifest" | "artifact"
    waivable: bool = True  # False where a waiver would hide a broken invariant

    @property
    def label(self) -> str:
        return f"{self.id} {self.slug}"


# --- the registry: append only; ids are never renumbered or reused ---------------------------------

PINNED_TAG = Rule(
    "POL-001", "pinned-tag", ERROR,
    "Upstream names a release tag, not latest or another floating tag",
    "Guide: never use `latest` (not reproducible, changes under you); name an exact version "
    "such as python:3.11.9-slim-bookworm.",
    MANIFEST,
)
PINNED_DIGEST = Rule(
    "POL-002", "pinned-digest", ERROR,
    "Upstream is pinned by its sha256 index digest",
    "Guide: lock the base with a digest reference so a re-pushed or hijacked tag cannot change it.",
    MANIFEST,
)
ALLOWED_REGISTRY = Rule(
    "POL-003", "allowed-registry", ERROR,
    "Upstream comes from a registry on the allow-list",
    "Guide: use official, maintained images with a CVE-fix record; the allow-list names the "
    "sources the organisation has reviewed.",
    # The allow-list is factory.yaml's, reviewed there; a manifest's waiver would bypass that review.
    MANIFEST, waivable=False,
)
NON_ROOT = Rule(
    "POL-004", "non-root-user", ERROR,
    "The final user is not root (name root, uid 0) nor in a group that owns the system (gid 0 root, 6 disk, "
    "42 shadow)",
    "Guide: hardening means USER 1001, never root; avoid images that run with root rights.",
    # Every app inherits the base's user: no reason excuses root in a base image.
    MANIFEST, waivable=False,
)
EOL_PASSED = Rule(
    "POL-005", "eol-passed", ERROR,
    "The distro release (or the manifest's eol) is past end of life",
    "Guide: choose a base with a published EOL and security updates for the next 12-24 months.",
    MANIFEST,
)
EOL_SOON = Rule(
    "POL-006", "eol-soon", WARNING,
    "End of life falls inside the warning window (policy.eol_warning_days)",
    "Guide: an LTS baseline must last; plan the move before security updates stop.",
    MANIFEST,
)
EOL_UNKNOWN = Rule(
    "POL-007", "eol-unknown", WARNING,
    "No end-of-life date is known for the distro release",
    "Guide: choose a base with an explicit EOL date; without one nobody notices it expire.",
    MANIFEST,
)
EOL_EXTENDED = Rule(
    "POL-008", "eol-extended", ERROR,
    "A manifest's eol may tighten, never extend, the distro's or an ancestor's EOL",
    "Guide: the EOL is the vendor's published date; an image cannot outlive the release it is built on.",
    MANIFEST, waivable=False,
)
MUSL_RUNTIME = Rule(
    "POL-009", "musl-runtime", WARNING,
    "Alpine (musl libc) with a language runtime that commonly expects glibc",
    "Guide: Alpine's musl breaks some native addons, agents and wheels (e.g. cryptography) and "
    "resolves DNS differently; prefer slim Debian for python/node/java.",
    MANIFEST,
)
TAG_COLLISION = Rule(
    "POL-010", "tag-collision", ERROR,
    "No image's tags can equal another image's tags (a debug tag never equals a prod tag)",
    "Guide: the debug image sits beside prod and is never deployed; if its tag could name a prod "
    "image, it would be.",
    MANIFEST, waivable=False,
)
WAIVER_EXPIRED = Rule(
    "POL-011", "waiver-expired", ERROR,
    "A waiver is past its expiry date",
    "Waivers are temporary by design: renew with a fresh reason, or fix the finding.",
    MANIFEST, waivable=False,
)
WAIVER_BAD_RULE = Rule(
    "POL-012", "waiver-bad-rule", ERROR,
    "A waiver names an unknown rule, or one that cannot be waived",
    "A waiver that waives nothing hides a typo; some rules guard invariants no reason can excuse.",
    MANIFEST, waivable=False,
)
WAIVER_UNUSED = Rule(
    "POL-013", "waiver-unused", WARNING,
    "A waiver of a manifest-stage rule that did not fire",
    "A stale waiver would silently excuse the next real finding; remove it.",
    MANIFEST, waivable=False,
)
CA_CERTIFICATES = Rule(
    "POL-014", "ca-certificates", ERROR,
    "Images with a package manager install and refresh the CA bundle",
    "Guide: the org base runs update-ca-certificates, and the pre-release checks require TLS "
    "(curl -I https://...) to work in an air-gapped network.",
    MANIFEST,
)
UNIFORM_USER = Rule(
    "POL-015", "uniform-user", WARNING,
    "The user has the org's standard uid/gid (factory.yaml defaults.user, 1001)",
    "Guide: the org base image fixes one non-root USER 1001 so app teams can rely on file ownership.",
    MANIFEST,
)
UNIFORM_TIMEZONE = Rule(
    "POL-016", "uniform-timezone", WARNING,
    "The timezone is the org's standard one (factory.yaml defaults.timezone, UTC)",
    "Guide: the org base image sets one timezone for all images (ENV TZ=UTC).",
    MANIFEST,
)
PYTHON_UNBUFFERED = Rule(
    "POL-017", "python-unbuffered", WARNING,
    "Python images set PYTHONUNBUFFERED",
    "Guide: the org base redirects logs with ENV PYTHONUNBUFFERED=1 so output reaches the log "
    "driver at once.",
    MANIFEST,
)
DEBUG_VARIANT = Rule(
    "POL-018", "debug-variant", WARNING,
    "A debug variant sits beside the prod image",
    "Guide: prod is not undebuggable; build a debug image on the same base with busybox, curl, "
    "jq, used only for troubleshooting.",
    MANIFEST,
)
OFFICIAL_IMAGE = Rule(
    "POL-019", "official-image", WARNING,
    "Docker Hub upstreams are Docker Official Images (docker.io/library/...)",
    "Guide: use official, regularly updated images; avoid unofficial or unmaintained ones.",
    MANIFEST,
)
MULTI_ARCH = Rule(
    "POL-020", "multi-arch", WARNING,
    "The image is built for linux/amd64 and linux/arm64",
    "Guide: build multi-architecture (ARM64) images with buildx --platform linux/amd64,linux/arm64.",
    MANIFEST,
)
ADDED_LAYERS = Rule(
    "POL-021", "added-layers", ERROR,
    "Layers added over the base stay within policy.max_added_layers",
    "Guide: check docker history before release; target few layers (<= 5).",
    ARTIFACT,
)
TOTAL_LAYERS = Rule(
    "POL-022", "total-layers", ERROR,
    "Total layers stay within policy.max_total_layers",
    "Guide: check docker history before release; target few layers (<= 5).",
    ARTIFACT,
)
SIZE_OVERHEAD = Rule(
    "POL-023", "size-overhead", ERROR,
    "Size over the base stays within policy.max_size_overhead_percent",
    "Guide: the image size should stay close to its baseline (within 30%).",
    ARTIFACT,
)
VULNERABILITY = Rule(
    "POL-024", "vulnerability", ERROR,
    "No vulnerability at a severity in policy.fail_on_severities",
    "Guide: scanning is the admission gate; block CRITICAL findings (trivy --severity CRITICAL,HIGH in CI).",
    # Accepted findings go to the scanner's ignore file, one CVE at a time with a reason and an
    # expiry; a manifest waiver would excuse every finding at once.
    ARTIFACT, waivable=False,
)

WAIVER_TERM = Rule(
    "POL-025", "waiver-term", ERROR,
    "A waiver expires at most a year ahead (MAX_WAIVER_DAYS)",
    "A waiver until 9999 is a permanent exception nobody reviews again; renew it yearly with a current reason.",
    MANIFEST, waivable=False,
)
RELEASE_FROM_UPSTREAM = Rule(
    "POL-026", "release-matches-upstream", ERROR,
    "The declared release is the one the upstream's tag (or image name) names",
    "The end-of-life rules judge the release; a Debian 11 upstream declared as release 13 would pass them.",
    MANIFEST, waivable=False,
)

RULES: tuple[Rule, ...] = (
    PINNED_TAG, PINNED_DIGEST, ALLOWED_REGISTRY, NON_ROOT, EOL_PASSED, EOL_SOON, EOL_UNKNOWN,
    EOL_EXTENDED, MUSL_RUNTIME, TAG_COLLISION, WAIVER_EXPIRED, WAIVER_BAD_RULE, WAIVER_UNUSED,
    CA_CERTIFICATES, UNIFORM_USER, UNIFORM_TIMEZONE, PYTHON_UNBUFFERED, DEBUG_VARIANT,
    OFFICIAL_IMAGE, MULTI_ARCH, ADDED_LAYERS, TOTAL_LAYERS, SIZE_OVERHEAD, VULNERABILITY, WAIVER_TERM,
    RELEASE_FROM_UPSTREAM,
)
MAX_WAIVER_DAYS = 366  # a year ahead, leap day included


def rule_by_id(rule_id: str) -> Rule | None:
    return next((r for r in RULES if r.id == rule_id), None)


# --- shared helpers --------------------------------------------------------------------------------


class _Hit(NamedTuple):
    """One finding of one rule before waivers: where (key path) and what (message after the slug)."""

    key: str
    detail: str


@dataclass(frozen=True)
class _Scope:
    catalog: Mapping[str, Manifest]
    settings: Settings
    today: date

    def ancestors(self, manifest: Manifest) -> list[Manifest]:
        """Parent, grandparent, ... Stops at a missing parent or a cycle (reported by the manifest
        loader, not here)."""
        chain: list[Manifest] = []
        seen = {manifest.name}
        name = manifest.parent
        while name and name not in seen and name in self.catalog:
            seen.add(name)
            chain.append(self.catalog[name])
            name = self.catalog[name].parent
        return chain

    def lineage(self, manifest: Manifest) -> list[Manifest]:
        """The manifest and its ancestors: everything whose image layers end up in it."""
        return [manifest, *self.ancestors(manifest)]


def _problem(manifest: Manifest, rule: Rule, key: str, detail: str, severity: str | None = None) -> Problem:
    return Problem(
        path=str(manifest.path),
        line=manifest.line_of(key) if key else None,
        key=key,
        message=f"{rule.label}: {detail}",
        severity=severity or rule.severity,
    )


def _is_scratch(upstream: Upstream) -> bool:
    # FROM scratch names no image to pull, so there is no tag, digest or registry to check.
    return upstream.image in ("scratch", "library/scratch", "docker.io/library/scratch")


# --- manifest-stage checks: one function per rule, yielding _Hit ----------------------------------

# Tags that move to new content by design. Checked on the first dash-separated word, so
# "stable-slim", "lts-alpine" and "latest-dev" count too.
FLOATING_TAGS = frozenset({
    "latest", "stable", "edge", "nightly", "rolling", "current", "lts", "main", "master", "dev",
    "devel", "develop", "testing", "unstable", "sid", "next", "canary", "beta", "alpha",
    "snapshot", "head", "trunk",
})
_EXAMPLE_TAGS = {
    "debian": "12.5-slim", "ubuntu": "24.04", "alpine": "3.22.1", "distroless": "nonroot",
    "scratch": "1.2.3",
}
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _is_floating(tag: str) -> bool:
    return re.split(r"[-_]", tag.lower(), maxsplit=1)[0] in FLOATING_TAGS


def _check_pinned_tag(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    up = m.upstream
    if up is None or _is_scratch(up):
        return
    example = _EXAMPLE_TAGS.get(m.distro, "1.2.3")
    if not up.tag:
        yield _Hit("upstream.tag", f"upstream.tag is missing for {up.image!r}: pin a release tag like "
                                   f"{example} beside the digest, so readers and drift checks know which "
                                   "release the digest is")
    elif _is_floating(up.tag):
        yield _Hit("upstream.tag", f"upstream tag {up.tag!r} is mutable (it moves to new releases); "
                                   f"pin a release tag like {example}")


def _check_pinned_digest(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    up = m.upstream
    if up is None or _is_scratch(up):
        return
    fetch = f"`docker buildx imagetools inspect {up.image}:{up.tag or '<tag>'}` (the index digest)"
    if not up.digest:
        yield _Hit("upstream.digest", f"upstream.digest is missing for {up.image!r}: pin it with the "
                                      f"digest from {fetch}")
        return
    if _DIGEST.fullmatch(up.digest):
        return
    algorithm, _, hex_part = up.digest.partition(":")
    if algorithm != "sha256":
        why = f"algorithm {algorithm!r} is not sha256"
    elif hex_part.lower() != hex_part:
        why = "it has uppercase hex digits"
    else:
        why = f"it has {len(hex_part)} characters after 'sha256:', not 64 lowercase hex digits"
    yield _Hit("upstream.digest", f"upstream.digest {up.digest!r} is malformed: {why}; expected "
                                  f"sha256:<64 lowercase hex>, copy it from {fetch}")


def _check_allowed_registry(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    up = m.upstream
    if up is None or _is_scratch(up):
        return
    allowed = {normalise_registry(r) for r in scope.settings.policy.allowed_registries}
    registry = normalise_registry(up.registry)
    if registry not in allowed:
        yield _Hit("upstream.image", f"upstream registry {registry!r} (image {up.image!r}) is not on the "
                                     f"allow-list policy.allowed_registries ({', '.join(sorted(allowed))}); "
                                     "mirror the image into an allowed registry, or add the registry to "
                                     "factory.yaml after review")


# Groups that own the system on Debian, Ubuntu and Alpine: root, disk (raw block devices), shadow
# (password hashes). A user in one of them is root in all but name.
PRIVILEGED_GIDS = {0: "root", 6: "disk", 42: "shadow"}


def _check_non_root(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    user = m.user
    if user.name == "root" or user.uid == 0:
        yield _Hit("user.uid" if user.uid == 0 else "user.name",
                   f"the image runs as root (user {user.name!r}, uid {user.uid}); set "
                   "user: {name: app, uid: 1001, gid: 1001}")
    elif user.gid in PRIVILEGED_GIDS:
        yield _Hit("user.gid", f"user {user.name!r} is in the {PRIVILEGED_GIDS[user.gid]} group (gid {user.gid}), "
                               "which owns system files or devices; use a group of its own, e.g. gid: 1001")


class _Bound(NamedTuple):
    """One limit on a manifest's end of life, and where it comes from."""

    eol: date
    key: str  # where in this manifest to point: "release", "eol" or "parent"
    source: str  # "debian 12 bookworm, end of Debian LTS"
    row: lifecycle.Lifecycle | None  # the table row, when the limit comes from the table
    own_eol: bool = False  # the manifest's own `eol` key


def _eol_bounds(m: Manifest, scope: _Scope) -> list[_Bound]:
    """Every date the image's life is bounded by: its distro release, its own eol, every ancestor's."""
    bounds = []
    row = lifecycle.lookup(m.distro, m.release)
    if row:
        bounds.append(_Bound(row.eol, "release", f"{row.label}, {row.basis}", row))
    bounds += _upstream_bounds(m)
    if m.eol:
        bounds.append(_Bound(m.eol, "eol", "this manifest's eol", None, own_eol=True))
    for ancestor in scope.ancestors(m):
        row = lifecycle.lookup(ancestor.distro, ancestor.release)
        if row:
            bounds.append(_Bound(row.eol, "parent", f"from ancestor {ancestor.name!r}: {row.label}, {row.basis}", row))
        if ancestor.eol:
            bounds.append(_Bound(ancestor.eol, "parent", f"the eol of ancestor {ancestor.name!r}", None))
    return bounds


# Releases older than the lifecycle table, by codename: an upstream tag naming one is past its end of life.
_OLD_CODENAMES = {"debian": {"jessie": "8", "stretch": "9", "buster": "10"},
                  "ubuntu": {"trusty": "14.04", "xenial": "16.04", "bionic": "18.04"}}
_OFFICIAL_VERSION = {"debian": r"([0-9]{1,2})(?![0-9])", "ubuntu": r"([0-9]{2}\.[0-9]{2})",
                     "alpine": r"([0-9]+\.[0-9]+)"}


def upstream_release(m: Manifest) -> tuple[str, str] | None:
    """The release the upstream itself names, and how: a codename in its tag (bookworm-slim,
    3.11-slim-bookworm), the version of a distro's official image (debian:12.5-slim, ubuntu:22.04,
    alpine:3.23.6), or distroless's image name (static-debian12). None when it names none."""
    up = m.upstream
    if up is None or _is_scratch(up):
        return None
    family = "debian" if m.distro == "distroless" else m.distro
    if m.distro == "distroless":
        found = re.search(r"debian([0-9]+)", up.repository)
        return (found[1], f"the image name {up.repository!r}") if found else None
    codenames = {row.codename: row.release for row in lifecycle.LIFECYCLE if row.distro == family and row.codename}
    codenames.update(_OLD_CODENAMES.get(family, {}))
    for word in re.split(r"[-_.]", (up.tag or "").lower()):
        if word in codenames:
            return codenames[word], f"the codename {word!r} in upstream tag {up.tag!r}"
    official = up.repository.rsplit("/", 1)[-1] == family and family in _OFFICIAL_VERSION
    found = re.match(_OFFICIAL_VERSION.get(family, "$^"), up.tag or "") if official else None
    return (found[1], f"upstream tag {up.tag!r} of the official {family} image") if found else None


def _upstream_bounds(m: Manifest) -> list[_Bound]:
    """The end of life of the release the upstream names, when that is not the declared one; a release
    older than every row of the table ended before the oldest row did."""
    named = upstream_release(m)
    if named is None or (m.release and lifecycle.normalise_release(m.distro, m.release)
                         == lifecycle.normalise_release(m.distro, named[0])):
        return []
    release, how = named
    row = lifecycle.lookup(m.distro, release)
    if row:
        return [_Bound(row.eol, "upstream.tag", f"{row.label} by {how}, {row.basis}", row)]
    rows = [r for r in lifecycle.LIFECYCLE if r.distro == m.distro]
    oldest = min(rows, key=lambda r: _release_number(r.release), default=None)
    if oldest and _release_number(release) < _release_number(oldest.release):
        return [_Bound(oldest.eol, "upstream.tag", f"{m.distro} {release} by {how}, older than {oldest.label} "
                                                   f"(end of life {oldest.eol})", None)]
    return []


def _release_number(release: str) -> tuple[int, ...]:
    return tuple(int(part) for part in release.split(".") if part.isdigit())


def _check_release_from_upstream(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    named = upstream_release(m)
    if named is None or m.release is None:
        return
    if lifecycle.normalise_release(m.distro, m.release) != lifecycle.normalise_release(m.distro, named[0]):
        yield _Hit("release", f"release {m.release!r} is not the {m.distro} release {named[0]} named by "
                              f"{named[1]}; set release: \"{named[0]}\" (the end-of-life rules judge it)")


def _move_advice(bound: _Bound, today: date) -> str:
    if bound.key == "parent":
        return "move the parent image to a supported release"
    if bound.row is None:
        return "move to a supported release and update eol, or retire the image"
    newest = lifecycle.newest(bound.row.distro)
    if newest and newest.eol > today and newest != bound.row:
        return f"move to {newest.label} (supported until {newest.eol})"
    return "move to a supported release (see the lifecycle table in docs/policy.md)"


def _effective_eol(m: Manifest, scope: _Scope) -> _Bound | None:
    # min() keeps the first of equal dates: the manifest's own limits come before its ancestors'.
    return min(_eol_bounds(m, scope), key=lambda b: b.eol, default=None)


def effective_eol(m: Manifest, catalog: Mapping[str, Manifest], settings: Settings,
                  today: date) -> tuple[date, str] | None:
    """The end-of-life date the eol rules judge ``m`` by (the earliest of its release's, its own
    eol and its ancestors') and where it comes from; None when nothing bounds it. For the catalog."""
    bound = _effective_eol(m, _Scope(catalog, settings, today))
    return (bound.eol, bound.source) if bound else None


def _check_eol_passed(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    bound = _effective_eol(m, scope)
    if bound and bound.eol < scope.today:
        days = (scope.today - bound.eol).days
        yield _Hit(bound.key, f"end of life was {bound.eol} ({days} days ago; {bound.source}): security "
                              f"fixes have stopped; {_move_advice(bound, scope.today)}")


def _check_eol_soon(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    bound = _effective_eol(m, scope)
    window = scope.settings.policy.eol_warning_days
    if bound and 0 <= (bound.eol - scope.today).days <= window:
        days = (bound.eol - scope.today).days
        yield _Hit(bound.key, f"end of life is {bound.eol} (in {days} days; {bound.source}), inside the "
                              f"{window}-day window policy.eol_warning_days; plan ahead: "
                              f"{_move_advice(bound, scope.today)}")


def _check_eol_unknown(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    if m.distro == "scratch" or _eol_bounds(m, scope):
        return  # scratch carries no distro that could reach end of life
    known = ", ".join(row.release for row in lifecycle.LIFECYCLE if row.distro == m.distro)
    if m.release is None:
        yield _Hit("release", f"no end-of-life date is known: release is not set for distro {m.distro!r}; "
                              f"set release (known: {known}) or eol: YYYY-MM-DD from the vendor's lifecycle page")
    else:
        yield _Hit("release", f"no end-of-life date is known for {m.distro} {m.release} (the lifecycle table "
                              f"knows {known or 'no release of it'}); set eol: YYYY-MM-DD from the vendor's "
                              "lifecycle page, or add the release to factory/lifecycle.py")


def _check_eol_extended(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    if not m.eol:
        return
    limit = min((b for b in _eol_bounds(m, scope) if not b.own_eol), key=lambda b: b.eol, default=None)
    if limit and m.eol > limit.eol:
        whose = "the distro's EOL" if limit.key == "release" else "the inherited EOL"
        # Teams with paid extended support (Ubuntu Pro ESM) waive the EOL rules instead, with that reason.
        paid = " (paid extended support: waive POL-005/POL-006 instead)" if limit.row else ""
        yield _Hit("eol", f"eol {m.eol} cannot extend {whose} {limit.eol} ({limit.source}); set eol to "
                          f"{limit.eol} or earlier, or remove it{paid}")


# Runtimes whose ecosystems ship glibc-linked binaries (wheels, node addons, JVM agents, .NET
# native libraries, gems with extensions). Go builds static binaries and is not listed.
GLIBC_RUNTIMES = frozenset({"python", "node", "java", "dotnet", "ruby"})


def _check_musl_runtime(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    if m.distro == "alpine" and m.runtime in GLIBC_RUNTIMES:
        yield _Hit("runtime", f"runtime {m.runtime!r} on alpine (musl libc): prebuilt glibc binaries "
                              "(wheels, native addons, agents) fail or build from source, and musl resolves "
                              "DNS differently; prefer a slim Debian upstream (e.g. -slim-bookworm), or waive "
                              "with the reason the workload is known to work")


_VERSION_SUFFIX = r"-v[0-9]+(\.[0-9]+){0,2}"


def _tag_clash(name: str, other: Manifest) -> str | None:
    """How the prod tags of image ``name`` (``name``, ``name-v1.2.3`` ...) would equal a tag of
    ``other``; None when they cannot."""
    if re.fullmatch(re.escape(other.name) + _VERSION_SUFFIX, name):
        return f"the version tags of {other.name!r} ({other.name}-v<major>[.<minor>[.<patch>]])"
    for variant in other.variants:
        prefix = f"{other.name}-{variant.name}"
        if re.fullmatch(re.escape(prefix) + f"({_VERSION_SUFFIX})?", name):
            return f"the {variant.name} tags of {other.name!r} ({prefix}, {prefix}-v<major>.<minor>.<patch>)"
    return None


def _check_tag_collision(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    for other in sorted(scope.catalog.values(), key=lambda o: o.name):
        if other.name == m.name:
            continue
        clash = _tag_clash(m.name, other)
        if clash:
            yield _Hit("name", f"name {m.name!r} makes prod tags that collide with {clash}, "
                               f"defined in {other.path}; rename this image so that its name does not start "
                               f"with '{other.name}-' followed by a variant name or v<digit>")


# Distros whose image is changed with a package manager; distroless already ships its CA bundle,
# and scratch images carry only what their manifest copies in.
_PACKAGE_MANAGER_DISTROS = frozenset({"debian", "ubuntu", "alpine"})


def _check_ca_certificates(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    if m.distro in _PACKAGE_MANAGER_DISTROS and not any(x.ca_certificates for x in scope.lineage(m)):
        yield _Hit("ca_certificates", f"ca_certificates is false on {m.distro}: the image gets no refreshed "
                                      "CA bundle and TLS fails in air-gapped networks; set "
                                      "ca_certificates: true")


def _check_uniform_user(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    org = scope.settings.defaults["user"]
    user = m.user
    if user.uid == 0 or user.name == "root" or user.gid in PRIVILEGED_GIDS:
        return  # POL-004 speaks for root
    if (user.uid, user.gid) != (org["uid"], org["gid"]):
        key = "user.uid" if user.uid != org["uid"] else "user.gid"
        yield _Hit(key, f"user {user.name!r} has uid {user.uid} gid {user.gid}, not the org standard uid "
                        f"{org['uid']} gid {org['gid']} (factory.yaml defaults.user); use the standard ids, "
                        "or waive with the reason this image needs others")


def _check_uniform_timezone(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    org = scope.settings.defaults["timezone"]
    if m.timezone != org:
        yield _Hit("timezone", f"timezone {m.timezone!r} differs from the org standard {org!r} "
                               "(factory.yaml defaults.timezone); remove the key to use the standard, or "
                               "waive with the reason")
    env_tz = dict(m.env).get("TZ")
    if env_tz is not None and env_tz != m.timezone:
        yield _Hit("env.TZ", f"env.TZ {env_tz!r} contradicts timezone {m.timezone!r}; remove env.TZ (the "
                             "timezone key sets TZ)")


def _check_python_unbuffered(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    if m.runtime != "python":
        return
    # Any non-empty value turns buffering off (python -u); ENV is inherited from ancestors.
    if not any(dict(x.env).get("PYTHONUNBUFFERED") for x in scope.lineage(m)):
        yield _Hit("env", "runtime python without env PYTHONUNBUFFERED: Python block-buffers stdout when it "
                          "is not a terminal, so logs arrive late or are lost on a crash; add "
                          "env: {PYTHONUNBUFFERED: \"1\"}")


def _check_debug_variant(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    if m.variant("debug") is None:
        yield _Hit("variants", "no debug variant: add variants: {debug: {packages: [busybox, curl, jq]}} "
                               "so incidents can be investigated on the same base without tools in prod")


def _check_official_image(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    up = m.upstream
    if up is None or _is_scratch(up) or up.registry != DOCKER_HUB:
        return
    if not up.repository.startswith("library/"):
        yield _Hit("upstream.image", f"upstream {up.image!r} is a Docker Hub community image, not a Docker "
                                     "Official Image (docker.io/library/...); prefer the official image or "
                                     "the vendor's own registry, or waive naming the verified publisher")


REQUIRED_ARCHITECTURES = ("amd64", "arm64")


def _check_multi_arch(m: Manifest, scope: _Scope) -> Iterator[_Hit]:
    archs = {p.arch for p in m.platforms}
    missing = [a for a in REQUIRED_ARCHITECTURES if a not in archs]
    if missing:
        have = ", ".join(str(p) for p in m.platforms)
        yield _Hit("platforms", f"platforms [{have}] lack {', '.join('linux/' + a for a in missing)}; add it, "
                                "or remove the key to use the factory.yaml default")


_MANIFEST_CHECKS: tuple[tuple[Rule, Callable[[Manifest, _Scope], Iterator[_Hit]]], ...] = (
    (PINNED_TAG, _check_pinned_tag),
    (PINNED_DIGEST, _check_pinned_digest),
    (ALLOWED_REGISTRY, _check_allowed_registry),
    (NON_ROOT, _check_non_root),
    (EOL_PASSED, _check_eol_passed),
    (EOL_SOON, _check_eol_soon),
    (EOL_UNKNOWN, _check_eol_unknown),
    (EOL_EXTENDED, _check_eol_extended),
    (MUSL_RUNTIME, _check_musl_runtime),
    (TAG_COLLISION, _check_tag_collision),
    (CA_CERTIFICATES, _check_ca_certificates),
    (UNIFORM_USER, _check_uniform_user),
    (UNIFORM_TIMEZONE, _check_uniform_timezone),
    (PYTHON_UNBUFFERED, _check_python_unbuffered),
    (DEBUG_VARIANT, _check_debug_variant),
    (OFFICIAL_IMAGE, _check_official_image),
    (MULTI_ARCH, _check_multi_arch),
    (RELEASE_FROM_UPSTREAM, _check_release_from_upstream),
)


# --- waivers -------------------------------------------------------------------------------------


class _ActiveWaiver(NamedTuple):
    position: int  # in the manifest's waivers list
    expires: date
    reason: str

    def note(self) -> str:
        return f" [waived until {self.expires} by waivers.{self.position}: {self.reason}]"


def _active_waivers(m: Manifest, today: date) -> dict[str, _ActiveWaiver]:
    """Rule id -> the waiver in force for it (known, waivable, not expired)."""
    active: dict[str, _ActiveWaiver] = {}
    for index, waiver in enumerate(m.waivers):
        rule = rule_by_id(waiver.rule)
        if rule and rule.waivable and today <= waiver.expires <= _latest_expiry(today):
            active.setdefault(rule.id, _ActiveWaiver(index, waiver.expires, waiver.reason))
    return active


def _latest_expiry(today: date) -> date:
    return date.fromordinal(today.toordinal() + MAX_WAIVER_DAYS)


def _waiver_problems(m: Manifest, today: date, fired: set[str]) -> Iterator[Problem]:
    """Problems with the waivers themselves; ``fired`` holds the manifest-stage rule ids that fired."""
    for index, waiver in enumerate(m.waivers):
        key = f"waivers.{index}"
        rule = rule_by_id(waiver.rule)
        if rule is None:
            yield _problem(m, WAIVER_BAD_RULE, f"{key}.rule",
                           f"waiver names unknown rule {waiver.rule!r}; run `factory policy` for the rule ids")
        elif not rule.waivable:
            yield _problem(m, WAIVER_BAD_RULE, f"{key}.rule",
                           f"{rule.label} cannot be waived ({rule.title.lower()}); fix the finding instead")
        elif waiver.expires > _latest_expiry(today):
            yield _problem(m, WAIVER_TERM, f"{key}.expires",
                           f"waiver of {rule.label} expires on {waiver.expires}, more than {MAX_WAIVER_DAYS} days "
                           f"ahead; set expires to {_latest_expiry(today)} or earlier and review it then")
        elif waiver.expires < today:
            yield _problem(m, WAIVER_EXPIRED, f"{key}.expires",
                           f"waiver of {rule.label} expired on {waiver.expires}; fix the finding, or renew "
                           "the waiver with a new expires date and a current reason")
        elif rule.stage == MANIFEST and rule.id not in fired:
            yield _problem(m, WAIVER_UNUSED, key,
                           f"waiver of {rule.label} is unused: the rule does not fire for this image; "
                           "remove the waiver")


def _apply_waivers(m: Manifest, rule: Rule, hits: Sequence[_Hit],
                   active: Mapping[str, _ActiveWaiver]) -> list[Problem]:
    waiver = active.get(rule.id)
    if waiver is None:
        return [_problem(m, rule, hit.key, hit.detail) for hit in hits]
    return [_problem(m, rule, hit.key, hit.detail + waiver.note(), severity=WARNING) for hit in hits]


# --- the two entry points ------------------------------------------------------------------------


def evaluate(catalog: Mapping[str, Manifest], settings: Settings, today: date) -> list[Problem]:
    """Every manifest-stage finding for every manifest, with waivers applied, in name order."""
    scope = _Scope(catalog, settings, today)
    problems: list[Problem] = []
    for name in sorted(catalog):
        manifest = catalog[name]
        active = _active_waivers(manifest, today)
        fired: set[str] = set()
        for rule, check in _MANIFEST_CHECKS:
            hits = list(check(manifest, scope))
            if hits:
                fired.add(rule.id)
                problems += _apply_waivers(manifest, rule, hits, active)
        problems += _waiver_problems(manifest, today, fired)
    return problems


def check_artifact(
    manifest: Manifest,
    settings: Settings,
    today: date,
    *,
    platform: str,
    added_layers: int | None = None,
    total_layers: int | None = None,
    size_bytes: int | None = None,
    base_size_bytes: int | None = None,
    vulnerabilities: Sequence[Vulnerability] | None = None,
) -> list[Problem]:
    """Artifact-stage findings for one built platform image, with the manifest's waivers applied.

    Pass what was measured; a measurement left as None is not judged (so layers/size and the
    vulnerability scan can be gated at different steps). ``base_size_bytes`` is the size of the
    image this one is built FROM (upstream or parent) on the same platform. Waiver problems
    themselves (expired, unknown rule) are reported by ``evaluate()``.
    """
    policy = settings.policy
    where = f"{platform}: "
    hits: list[tuple[Rule, _Hit]] = []
    if added_layers is not None and added_layers > policy.max_added_layers:
        hits.append((ADDED_LAYERS, _Hit("packages", f"{where}{added_layers} layers added over the base, budget "
                                                    f"{policy.max_added_layers} (policy.max_added_layers); merge "
                                                    "build steps, or raise the budget in factory.yaml")))
    if total_layers is not None and total_layers > policy.max_total_layers:
        hits.append((TOTAL_LAYERS, _Hit("", f"{where}{total_layers} layers in total, budget "
                                            f"{policy.max_total_layers} (policy.max_total_layers); pick an "
                                            "upstream with fewer layers, or raise the budget in factory.yaml")))
    # A scratch base has no size to compare with: the overhead ratio would be infinite.
    if size_bytes is not None and base_size_bytes:
        overhead = (size_bytes - base_size_bytes) * 100 / base_size_bytes
        if overhead > policy.max_size_overhead_percent:
            hits.append((SIZE_OVERHEAD, _Hit("packages", f"{where}image is {_mb(size_bytes)}, {overhead:.1f}% over "
                                                         f"its base's {_mb(base_size_bytes)}, budget "
                                                         f"{policy.max_size_overhead_percent:g}% "
                                                         "(policy.max_size_overhead_percent); drop packages, "
                                                         "move tools to the debug variant, or raise the budget")))
    failing = {s.upper() for s in policy.fail_on_severities}
    for vuln in sorted(vulnerabilities or (), key=lambda v: (v.severity, v.id, v.package)):
        if vuln.severity.upper() in failing:
            fix = f"fixed in {vuln.fixed_version}" if vuln.fixed_version else "no fix released yet"
            hits.append((VULNERABILITY, _Hit("", f"{where}{vuln.severity.upper()} {vuln.id} in {vuln.package} "
                                                 f"{vuln.installed_version} ({fix}): rebuild on a newer upstream "
                                                 "digest, "
                                                 "or accept it in the scanner ignore file with a reason and an "
                                                 "expiry")))
    active = _active_waivers(manifest, today)
    problems: list[Problem] = []
    for rule in RULES:
        problems += _apply_waivers(manifest, rule, [h for r, h in hits if r is rule], active)
    return problems


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


# --- docs ----------------------------------------------------------------------------------------

DOCS_COMMAND = "factory policy --format markdown > docs/policy.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def rule_table_rows() -> list[dict[str, str | bool]]:
    """The registry as plain rows: for `factory policy --format json` and the docs."""
    return [
        {"id": r.id, "slug": r.slug, "severity": r.severity, "stage": r.stage, "waivable": r.waivable,
         "title": r.title, "rationale": r.rationale}
        for r in RULES
    ]


def render_docs() -> str:
    """docs/policy.md, generated from the rule registry and the lifecycle table."""
    lines = [
        f"<!-- Generated from factory/spec/policy.py and factory/core/lifecycle.py: do not edit. Regenerate with"
        f" `{DOCS_COMMAND}`; tests/unit/test_policy_docs.py fails when this file is stale. -->",
        "",
        "# Policy rules",
        "",
        "Every org base image is checked against these rules, drawn from the base-image selection guide",
        "(`../shared/reference/base-image-selection-guide.zh.txt`). Rules of the **manifest** stage run in",
        "`factory validate` (from the manifests alone); rules of the **artifact** stage run in `factory publish`",
        "on the built image, before anything is pushed. An **error** fails the command (exit 1); a **warning**",
        "is printed and does not. Each message starts with the rule id and slug, e.g.",
        "`POL-001 pinned-tag: upstream tag 'latest' is mutable ...`. Rule ids are stable: they are never",
        "renumbered, and a retired id is never reused. `factory policy` prints this table",
        "(`--format json` for tools).",
        "",
        "## Rules",
        "",
        "| ID | Slug | Severity | Stage | Waivable | Rule | Rationale |",
        "|----|------|----------|-------|----------|------|-----------|",
    ]
    for r in RULES:
        lines.append(f"| {r.id} | `{r.slug}` | {r.severity} | {r.stage} | {'yes' if r.waivable else 'no'} "
                     f"| {_cell(r.title)} | {_cell(r.rationale)} |")
    lines += [
        "",
        "## Waivers",
        "",
        "A manifest may waive a waivable rule for a while, with a reason and an expiry date:",
        "",
        "```yaml",
        "waivers:",
        "  - rule: POL-009",
        "    reason: the service uses only pure-Python wheels; verified in INC-1234",
        "    expires: \"2027-03-31\"",
        "```",
        "",
        "- A waived finding is still printed, as a warning ending in `[waived until <date> by waivers.<n>: <reason>]`.",
        "- A waiver is in force through its `expires` day; from the next day it is an error of its own",
        f"  ({WAIVER_EXPIRED.label}) and the finding it covered counts again at its own severity.",
        f"- A waiver naming an unknown rule, or a rule marked not waivable, is an error ({WAIVER_BAD_RULE.label}).",
        f"- A waiver of a manifest-stage rule that did not fire is a warning ({WAIVER_UNUSED.label}): remove it.",
        f"- A waiver expires at most {MAX_WAIVER_DAYS} days ahead ({WAIVER_TERM.label}), and its reason has at",
        "  least 10 characters besides spaces: an exception is reviewed again every year.",
        f"- Root ({NON_ROOT.label}) and a registry off the allow-list ({ALLOWED_REGISTRY.label}) cannot be waived:",
        "  every app inherits the base's user, and the allow-list is reviewed in factory.yaml, not per manifest.",
        "- Waivers of artifact-stage rules apply in `factory publish`. Vulnerabilities are not waived per",
        "  manifest: accept a single finding in the scanner's ignore file, with a reason and an expiry.",
        "",
        "## Lifecycle table",
        "",
        "The end-of-life rules use this table, keyed by a manifest's `distro` and `release`. The effective",
        "end of life of an image is the earliest of: its row's date, its own `eol`, and the row and `eol` of",
        "every ancestor (`parent` chain). A manifest's `eol` can tighten the date, never extend it",
        f"({EOL_EXTENDED.label}). Past it: {EOL_PASSED.label} (error); within `policy.eol_warning_days`:",
        f"{EOL_SOON.label} (warning); no row and no `eol`: {EOL_UNKNOWN.label} (warning).",
        "",
        "Which date a row means: the last day the *public* image and archive get security fixes without a",
        "paid subscription, because that is what a rebuild can pick up. Debian: the end of Debian LTS (LTS",
        "fixes reach the public archive; regular security support ends earlier, Debian 12 on 2026-06-10).",
        "Ubuntu: the end of standard security maintenance (ESM needs Ubuntu Pro and never reaches the public",
        "image; a team with Ubuntu Pro waives the EOL rules with that reason). Alpine: the branch's end of",
        "support. distroless: the date of the Debian release it is built on.",
        "",
        "| Distro | Release | Codename | End of life | Date meaning | Source |",
        "|--------|---------|----------|-------------|--------------|--------|",
    ]
    for row in lifecycle.LIFECYCLE:
        lines.append(f"| {row.distro} | {row.release} | {row.codename or '-'} | {row.eol} | {_cell(row.basis)} "
                     f"| {row.source} |")
    return "\n".join(lines) + "\n"


def render_rule_table() -> str:
    """The registry as aligned text, for `factory policy`."""
    header = ("ID", "SEVERITY", "STAGE", "WAIVABLE", "SLUG", "RULE")
    rows = [header] + [(r.id, r.severity, r.stage, "yes" if r.waivable else "no", r.slug, r.title) for r in RULES]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows
    )
