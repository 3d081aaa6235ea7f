"""What a version is built from: the base image resolved to a digest (and checked), the fingerprint
of every input, and the build arguments that write them into the image's labels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from factory.adapters.gitinfo import Revision
from factory.core import labels, versioning
from factory.core.errors import StepFailed
from factory.core.model import Manifest
from factory.oci.registry import Registry
from factory.publish.destination import Destination
from factory.render import plan
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
               base_digest: str) -> dict[str, str]:
    """The --build-arg values the rendered Dockerfile turns into the image's labels."""
    return {
        "FACTORY_VERSION": str(version),
        "FACTORY_REVISION": revision.sha,
        "FACTORY_CREATED": labels.created_timestamp(revision.commit_time),
        "FACTORY_FINGERPRINT": fp,
        "BASE_REF": base_ref,
        "BASE_DIGEST": base_digest,
    }
