"""What a version is built from: the base image resolved to a digest (and checked), the fingerprint
of every input, and the build arguments that write them into the image's labels.

And the security fixes the org layer applies (``base_fixes``): before the build of an apt or apk image
(policy.security_fixes not off), the base image's own package database is read from its layers on each
platform and matched against the release's archive index; the packages with a security fix pending become
the build argument SECURITY_FIXES, and a hardening-only image gets ORG_LAYER=run (its one added layer is then
a RUN that upgrades them, not the COPY). Neither is an input of the fingerprint: the plan cannot know them,
and the same committed context on the same base is the same version's build. A base without a package
database (busybox-like, scratch) costs no archive request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from factory.adapters.gitinfo import Revision
from factory.core import labels, lifecycle, versioning
from factory.core.errors import LayoutError, StepFailed
from factory.core.model import Manifest, Upstream
from factory.core.reference import Ref
from factory.oci import rootfs
from factory.oci.registry import Registry, platform_digests
from factory.publish.destination import Destination
from factory.render import plan
from factory.render.contexts import applies_fixes, fixes_build_args
from factory.security.check import IndexSource, release_of
from factory.security.fixes import Fix, pending_fixes
from factory.security.installed import PACKAGE_DATABASES, InstalledPackage, package_database
from factory.spec.config import Settings
from factory.spec.manifest import ManifestSet
from factory.trust.sign import Signing


def resolve_base(m: Manifest, manifests: ManifestSet, dest: Destination, registry_for: Callable[[str], Registry],
                 signer: Signing) -> tuple[str, str]:
    """(reference to build FROM, its index digest). Refuses a moved upstream tag and an unsigned parent."""
    if m.upstream:
        up = m.upstream
        registry = registry_for(up.registry)
        found = registry.head_manifest(up.repository, up.tag or up.digest or "")
        if found is None:
            raise StepFailed(m.name, "resolve base", f"upstream {up.image}:{up.tag} not found")
        if found.digest != up.digest:
            raise StepFailed(m.name, "resolve base",
                             f"upstream tag {up.image}:{up.tag} now points at {found.digest}, the manifest pins "
                             f"{up.digest}", hint="the tag moved under us: review it, then `factory drift --update`")
        require_platforms(m, registry, up.repository, found.digest, up.image)
        return up.pinned_ref, found.digest
    assert m.parent is not None  # the schema allows exactly one of upstream and parent
    parent = manifests[m.parent]
    tag = f"{parent.name}-v{parent.version}"
    found = dest.registry.head_manifest(dest.repository, tag)
    if found is None:
        raise StepFailed(m.name, "resolve base", f"parent {parent.name} has no published {tag}",
                         hint=f"publish {parent.name} first (factory publish {parent.name} {m.name})")
    ref = dest.by_digest(found.digest)
    signer.verify(ref)  # never build on a parent whose signature does not verify
    require_platforms(m, dest.registry, dest.repository, found.digest, f"parent {tag}")
    return ref, found.digest


def require_platforms(m: Manifest, registry: Registry, repo: str, digest: str, shown: str) -> None:
    """Refuse a base that lacks one of our platforms: BuildKit would quietly build FROM the image it
    has, and an "arm64" image would carry amd64 binaries (it even passes its tests, on an amd64 host)."""
    provided = registry.platforms(repo, digest)
    missing = [str(p) for p in m.platforms if str(p) not in provided]
    if missing:
        raise StepFailed(m.name, "resolve base", f"{shown}@{digest} has no image for {', '.join(missing)} "
                         f"(it has {', '.join(provided) or 'none'})", platform=missing[0],
                         hint="narrow the manifest's platforms, or pin a base that provides them")


def fingerprint(m: Manifest, context: Path, base_digest: str, *, variant: str) -> str:
    """The fingerprint of the committed context, the base and the platforms: equal inputs, equal value."""
    if not (context / "Dockerfile").is_file():
        raise StepFailed(m.name, "fingerprint", f"no rendered context at {context}",
                         hint="run `factory render` and commit images/")
    return plan.fingerprint(context_digest=plan.context_digest(context, variant), base_digest=base_digest,
                            platforms=[str(p) for p in m.platforms], variant=variant)


def build_args(revision: Revision, version: versioning.Version, fp: str, base_ref: str,
               base_digest: str, *, base_name: str = "", source: str = "") -> dict[str, str]:
    """The --build-arg values the rendered Dockerfile turns into the image's labels. ``base_name``: the
    base by tag (``base_name()``; the base.name label), ``source``: the source repository's https URL."""
    return {
        "FACTORY_VERSION": str(version),
        "FACTORY_REVISION": revision.sha,
        "FACTORY_CREATED": labels.created_timestamp(revision.commit_time),
        "FACTORY_SOURCE": source,
        "FACTORY_FINGERPRINT": fp,
        "BASE_REF": base_ref,
        "BASE_NAME": base_name or base_ref,
        "BASE_DIGEST": base_digest,
    }


def base_name(m: Manifest, manifests: ManifestSet, dest: Destination) -> str:
    """The base by tag, for the base.name label and annotation: the upstream's ``image:tag``, or the parent's
    ``<registry>/<repository>:<parent>-v<x.y>`` (the tag resolve_base resolves), never a digest reference."""
    if isinstance(m.base, Upstream):
        up = m.base
        return f"{up.image}:{up.tag}" if up.tag else up.image
    parent = manifests[m.base.name]
    return f"{dest.name}:{parent.name}-v{parent.version}"


def oci_annotations(m: Manifest, args: Mapping[str, str]) -> dict[str, str]:
    """The OCI annotations of the index and of each platform manifest, from the same values as the labels
    (``build_args``): created, revision, source, version, licenses, base.name, base.digest and the
    fingerprint. An empty source and a licence that is no SPDX expression (NOASSERTION) are left out."""
    values = {
        labels.CREATED_LABEL: args["FACTORY_CREATED"],
        labels.REVISION_LABEL: args["FACTORY_REVISION"],
        labels.SOURCE_LABEL: args.get("FACTORY_SOURCE", ""),
        labels.VERSION_LABEL: args["FACTORY_VERSION"],
        labels.LICENSES_LABEL: "" if m.licenses in labels.NOT_LICENSE_EXPRESSIONS else (m.licenses or ""),
        labels.BASE_NAME_LABEL: args.get("BASE_NAME", ""),
        labels.BASE_DIGEST_LABEL: args.get("BASE_DIGEST", ""),
        labels.FINGERPRINT_LABEL: args["FACTORY_FINGERPRINT"],
    }
    assert tuple(values) == labels.ANNOTATED_LABELS  # one list of what is annotated: core/labels.py
    return {k: v for k, v in values.items() if v}


# --- security fixes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseFixes:
    """What the org layer upgrades: per platform the base image's security fixes, and the build arguments
    that name them. Empty when fixes do not apply (policy off, no shell, no package database)."""

    fixes: Mapping[str, tuple[Fix, ...]] = field(default_factory=dict)  # platform -> the base's security fixes
    args: Mapping[str, str] = field(default_factory=dict)  # ARCHIVE_SUITES, SECURITY_FIXES (ORG_LAYER=run)


def base_fixes(m: Manifest, settings: Settings, registry_for: Callable[[str], Registry], base_ref: str,
               base_digest: str, archives: IndexSource) -> BaseFixes:
    """The base's pending security fixes on each of ``m``'s platforms, and SECURITY_FIXES/ORG_LAYER."""
    if not fixes_apply(m, settings):
        return BaseFixes()
    release = release_of(m, {}, {})
    if release is None:
        raise StepFailed(m.name, "security fixes", f"cannot tell the {m.distro} release whose archive fixes the base",
                         hint="set `release` in the manifest, or policy.security_fixes: off")
    ref = Ref.parse(base_ref)
    registry = registry_for(ref.registry)
    _, manifests = platform_digests(registry, ref.repository, base_digest)
    found: dict[str, tuple[Fix, ...]] = {}
    suites: set[tuple[str, str, str]] = set()
    for platform in (str(p) for p in m.platforms):
        installed = base_packages(registry, ref.repository, manifests[platform], release.distro)
        if installed:  # no package database: nothing to upgrade, and no archive is read for it
            index = archives.index_for(release.distro, release.codename, platform)
            found[platform] = pending_fixes(installed, index).security
            suites |= {(s.mirror, s.name, s.date.isoformat() if s.date else "") for s in index.suites()}
    return BaseFixes(found, fix_args(m, found, archive_state(suites)))


# What the no-shell Dockerfile copies from a distroless upstream (COPY --from=upstream): without them
# BuildKit fails late and opaquely ("failed to walk .../etc: no such file or directory").
UPSTREAM_USER_FILES = ("etc/passwd", "etc/group")


def needs_upstream_user_files(m: Manifest) -> bool:
    """A distroless upstream's /etc/passwd and /etc/group are kept (an org parent's come from the factory)."""
    return m.distro == "distroless" and isinstance(m.base, Upstream)


def check_upstream_user_files(m: Manifest, registry_for: Callable[[str], Registry], base_ref: str,
                              base_digest: str, platforms: Sequence[str]) -> None:
    """Before the build: a distroless upstream must carry /etc/passwd and /etc/group on every platform
    built (the helper adds the user to them). Raises StepFailed saying what to do."""
    if not needs_upstream_user_files(m):
        return
    ref = Ref.parse(base_ref)
    registry = registry_for(ref.registry)
    _, manifests = platform_digests(registry, ref.repository, base_digest)
    for platform in platforms:
        manifest = json.loads(registry.get_manifest(ref.repository, manifests[platform])[0])
        layers = rootfs.layers_of(manifest)
        opener = registry.layer_opener(ref.repository)
        for path in UPSTREAM_USER_FILES:
            if rootfs.read_file(layers, opener, path) is None:
                raise StepFailed(m.name, "upstream check", f"upstream {base_ref} has no /{path} on {platform}: "
                                 "the build copies it to add the user", platform=platform,
                                 hint="use a distroless upstream that ships them (the gcr.io/distroless images "
                                      "do), or declare distro: scratch, which writes its own")
        _check_os_release(m, base_ref, platform, _os_release_version(layers, opener))


def _os_release_version(layers: Sequence[rootfs.Layer], opener: rootfs.LayerOpener) -> str | None:
    """VERSION_ID of the image's os-release (usr/lib first: /etc/os-release is often a link to it)."""
    for path in ("usr/lib/os-release", "etc/os-release"):
        try:
            content = rootfs.read_file(layers, opener, path, rootfs.Limits(max_file=64 * 1024))
        except LayoutError:
            continue  # a link (not followed): the other path holds the file
        for line in (content or b"").decode("utf-8", "replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "VERSION_ID":
                return value.strip().strip("'\"")
    return None


def _check_os_release(m: Manifest, base_ref: str, platform: str, version: str | None) -> None:
    """The release the upstream says it is must be the manifest's: the end-of-life rules judged that one."""
    if version is None or m.release is None:
        return
    family = "debian" if m.distro == "distroless" else m.distro
    if lifecycle.normalise_release(family, version) != lifecycle.normalise_release(family, m.release):
        raise StepFailed(m.name, "upstream check", f"upstream {base_ref} is {family} {version} by its os-release "
                         f"on {platform}, but the manifest declares release {m.release!r}", platform=platform,
                         hint=f"set release: \"{lifecycle.normalise_release(family, version)}\" (the end-of-life "
                              "rules judge it), or pin an upstream of the declared release")


def archive_state(suites: Iterable[tuple[str, str, str]]) -> str:
    """A short digest of the (mirror, suite, index date) read: equal for one state of the archive."""
    return hashlib.sha256(json.dumps(sorted(suites)).encode()).hexdigest()[:16]


def fixes_apply(m: Manifest, settings: Settings) -> bool:
    """Whether ``m``'s org layer applies security fixes: what the renderer decided (an apt or apk image,
    policy.security_fixes not off), read from the one place that decides it."""
    return applies_fixes(m, settings)


def base_packages(registry: Registry, repository: str, manifest_digest: str,
                  distro: str) -> tuple[InstalledPackage, ...]:
    """The packages the package database in one platform image's layers lists; () when it has none."""
    manifest = json.loads(registry.get_manifest(repository, manifest_digest)[0])
    content = rootfs.read_file(rootfs.layers_of(manifest), registry.layer_opener(repository),
                               PACKAGE_DATABASES[distro])
    return package_database(distro, content) if content is not None else ()


def fix_args(m: Manifest, fixes: Mapping[str, Sequence[Fix]], state: str) -> dict[str, str]:
    """The build args of the base's security fixes: the renderer's contract (fixes_build_args) with the sorted
    union over the platforms of the packages with a security fix (one not installed on a platform is skipped
    there by apt's --only-upgrade)."""
    names = (f.package for found in fixes.values() for f in found if f.kind == "security")
    return fixes_build_args(m, names, state)
