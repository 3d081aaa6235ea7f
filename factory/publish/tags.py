"""Tags, written last: the immutable version tag first (never moved), then the floating ones.

Two publishers that do not share the lock (two machines) can both pass the immutable tag's
compare-then-write. The registry's own tag write refuses to move an existing immutable tag; the
read-back after the floating tags moved catches the rest but one (docs/reliability.md)."""

from __future__ import annotations

from factory.core import versioning
from factory.core.errors import RegistryError
from factory.publish.destination import Destination
from factory.publish.report import VariantResult


def write_tags(dest: Destination, v: VariantResult, existing: list[versioning.Version],
               version: versioning.Version) -> None:
    """Point ``v``'s tags at its index; records in ``v.tags`` the tags that were written or moved."""
    immutable = versioning.immutable_tag(v.tag_prefix, version)
    if dest.registry.tag(dest.repository, v.index_digest, immutable, expect_absent=True):
        v.tags.append(immutable)
    for tag in versioning.floating_tags_to_move(v.tag_prefix, version, existing):
        if dest.registry.tag(dest.repository, v.index_digest, tag):
            v.tags.append(tag)
    # The floating tags we moved point at our signed digest; if the immutable one no longer does, a
    # re-run moves them to the version the immutable tag holds.
    now = dest.registry.head_manifest(dest.repository, immutable)
    if now is None or now.digest != v.index_digest:
        raise RegistryError(f"tag {immutable} was overwritten by another publisher (now "
                            f"{now.digest if now else 'absent'}, we wrote {v.index_digest}) while our tags moved",
                            hint="run the publish again: it moves every floating tag to that version")


def versions_of(dest: Destination, prefix: str) -> list[versioning.Version]:
    """The versions the registry has of ``prefix`` (its tags are the source of truth)."""
    return versioning.versions_in(dest.registry.list_tags(dest.repository), prefix)
