"""The waivers of ``vuln-ignore.yaml`` as an OpenVEX v0.2.0 document: pure builder, no I/O.

One statement per waiver in force for the image (expired ones are never stated), its product the image
as a ``pkg:oci`` purl — by the index digest and by each platform manifest digest, with the
``repository_url`` — so that a scanner reading VEX (``trivy image --vex``) matches it however it was
pointed at the image. ``not_affected`` carries the waiver's justification and its reason as the impact
statement; ``affected`` (a risk accepted for now) carries the action statement. OpenVEX has no expiry:
the waiver's ``expires`` is in the statement's text, and ``factory scan`` stops honouring it after that
day (docs/gates.md).

https://github.com/openvex/spec/blob/main/OPENVEX-SPEC.md
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from packageurl import PackageURL

from factory.build.scan import Ignore
from factory.core.reference import Ref

CONTEXT = "https://openvex.dev/ns/v0.2.0"
ID_BASE = "https://base-image-factory.dev/vex"


def image_purl(repository: str, digest: str) -> str:
    """``pkg:oci/<last path part>@<digest>?repository_url=<registry>/<repository>`` (purl-spec's oci type)."""
    ref = Ref.parse(f"{repository}@{digest}")
    name = ref.repository.rsplit("/", 1)[-1]
    return PackageURL(type="oci", name=name, version=digest,
                      qualifiers={"repository_url": f"{ref.registry}/{ref.repository}"}).to_string()


def document(*, repository: str, index_digest: str, platform_digests: Mapping[str, str], waivers: Iterable[Ignore],
             author: str, now: datetime) -> dict[str, Any]:
    """``waivers``: the ``factory.build.scan.Ignore`` entries that apply to this image (expired ones are
    skipped here too). Sorted throughout, so equal inputs give equal documents."""
    digests = sorted({index_digest, *platform_digests.values()} - {""})
    products = [{"@id": image_purl(repository, d)} for d in digests]
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    statements = [statement(w, products) for w in sorted(waivers, key=lambda w: w.id) if not w.expired]
    key = hashlib.sha256(f"{repository}@{index_digest}".encode()).hexdigest()[:16]
    return {"@context": CONTEXT, "@id": f"{ID_BASE}/{key}", "author": author, "timestamp": stamp,
            "version": 1, "tooling": "base-image factory (vuln-ignore.yaml)", "statements": statements}


def statement(waiver: Ignore, products: list[dict[str, str]]) -> dict[str, Any]:
    until = f" (waived in vuln-ignore.yaml until {waiver.expires.isoformat()})"
    out: dict[str, Any] = {"vulnerability": {"name": waiver.id}, "products": products, "status": waiver.status}
    if waiver.status == "not_affected":
        # Exactly one of the two (the OpenVEX schema's oneOf): the reason goes beside a justification.
        if waiver.justification:
            out["justification"] = waiver.justification
            out["status_notes"] = waiver.reason + until
        else:
            out["impact_statement"] = waiver.reason + until
    else:
        out["action_statement"] = (waiver.action or waiver.reason) + until
        out["status_notes"] = waiver.reason
    return out
