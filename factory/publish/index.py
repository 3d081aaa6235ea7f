"""Fan-out's index: the per-platform manifests, pushed by separate jobs, made into one OCI index."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from factory.core.errors import RegistryError
from factory.oci.layout import OCI_INDEX, sha256_digest
from factory.publish.destination import Destination


def put_index(dest: Destination, platforms: Mapping[str, str], annotations: Mapping[str, str] | None = None) -> str:
    """Push the OCI index over ``platforms`` (platform -> manifest digest) with ``annotations``; returns
    its digest.

    Byte for byte as buildx writes it (entry order, indent, annotations last with their keys sorted, as
    Go writes a map), so that a fanned-out publish gives the same index digest as a single-machine one."""
    entries = [_entry(dest, platform, digest) for platform, digest in platforms.items()]
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    if annotations:
        doc["annotations"] = dict(sorted(annotations.items()))
    raw = json.dumps(doc, indent=2).encode()
    return dest.registry.put_manifest(dest.repository, sha256_digest(raw), raw, OCI_INDEX)


def _entry(dest: Destination, platform: str, digest: str) -> dict[str, Any]:
    found = dest.registry.head_manifest(dest.repository, digest)
    if found is None:  # fanout.verified_checks looked a moment ago: someone deleted it since
        raise RegistryError(f"{digest} ({platform}) is no longer in {dest.name}")
    os_, arch, *variant = platform.split("/")
    return {"mediaType": found.media_type, "digest": digest, "size": found.size,
            "platform": {"architecture": arch, "os": os_, **({"variant": variant[0]} if variant else {})}}
