"""The version the registry holds now: whether it was built from the same inputs and verifies with
our key, in which case a publish builds nothing."""

from __future__ import annotations

from factory.core import labels, log, versioning
from factory.core.errors import FactoryError
from factory.publish.destination import Destination
from factory.publish.report import VariantResult
from factory.trust.sign import Signing


def is_current(dest: Destination, signer: Signing, name: str, version: versioning.Version, fp: str) -> bool:
    """``version`` of ``name`` has fingerprint ``fp`` and a signature that verifies."""
    return published_fingerprint(dest, name, version) == fp and verifies(dest, signer, name, version)


def published_fingerprint(dest: Destination, name: str, version: versioning.Version) -> str | None:
    tag = versioning.immutable_tag(name, version)
    return dest.registry.labels(dest.repository, tag).get(labels.FINGERPRINT_LABEL)


def verifies(dest: Destination, signer: Signing, name: str, version: versioning.Version) -> bool:
    """The current version counts as ours only when its signature verifies with our key: an image
    whose label matches but that we cannot verify is replaced by a new, verifiable version."""
    found = dest.registry.head_manifest(dest.repository, versioning.immutable_tag(name, version))
    try:
        if found is None:  # the tag went away since its labels were read
            raise FactoryError(f"{versioning.immutable_tag(name, version)} is not in {dest.name}")
        signer.verify(dest.by_digest(found.digest))
    except FactoryError as e:
        log.get("publish").warning("current version does not verify: publishing a new one", image=name,
                                   version=str(version), reason=e.message)
        return False
    return True


def current_result(dest: Destination, prefix: str, version: versioning.Version, fp: str) -> VariantResult:
    """The result of a variant that is already published (no tags written yet)."""
    found = dest.registry.head_manifest(dest.repository, versioning.immutable_tag(prefix, version))
    return VariantResult(tag_prefix=prefix, version=str(version), fingerprint=fp,
                         index_digest=found.digest if found else "", tags=[])
