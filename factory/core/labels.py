"""The contract the stages share: label keys, attestation types and variant names.

The renderer writes these labels, the planner and publisher read them back from the registry, the
verifier and the catalog read them from published images; attestations are written and verified
under these predicate types. Everything here is part of the published artifacts: changing a value
changes what consumers see (and the fingerprint labels already in registries).
"""

from __future__ import annotations

from datetime import UTC, datetime

# --- labels ------------------------------------------------------------------------------------

OCI = "org.opencontainers.image."  # the OCI image spec's annotation keys, used as labels
FACTORY = "io.github.base-image-factory."  # the factory's own

TITLE_LABEL = OCI + "title"
DESCRIPTION_LABEL = OCI + "description"
VERSION_LABEL = OCI + "version"
REVISION_LABEL = OCI + "revision"
CREATED_LABEL = OCI + "created"
SOURCE_LABEL = OCI + "source"
VENDOR_LABEL = OCI + "vendor"
LICENSES_LABEL = OCI + "licenses"
BASE_NAME_LABEL = OCI + "base.name"
BASE_DIGEST_LABEL = OCI + "base.digest"
# The input fingerprint: a hash of everything that determines the build (factory.render.plan).
FINGERPRINT_LABEL = FACTORY + "fingerprint"
VARIANT_LABEL = FACTORY + "variant"  # PROD or DEBUG
# Labels the factory sets; a manifest's labels may not use these prefixes.
RESERVED_LABEL_PREFIXES = (OCI, FACTORY)
# Values of `licenses` that say "not known" in SPDX documents but are no SPDX license expression: the
# licenses label and annotation are left out for them (the SBOM lists each package's licence).
NOT_LICENSE_EXPRESSIONS = frozenset({"NOASSERTION", "NONE"})

# --- annotations -------------------------------------------------------------------------------

# The labels also written as OCI annotations, on the index and on each platform manifest: what registries'
# UIs, `docker buildx imagetools inspect` and base-image policies read without fetching any image config.
# The fingerprint among them lets `factory plan` decide from the index alone (one request per image).
ANNOTATED_LABELS = (CREATED_LABEL, REVISION_LABEL, SOURCE_LABEL, VERSION_LABEL, LICENSES_LABEL, BASE_NAME_LABEL,
                    BASE_DIGEST_LABEL, FINGERPRINT_LABEL)
# Where buildx's OCI exporter writes an annotation (its `annotation-<level>.<key>=<value>` attributes).
INDEX_LEVEL = "index"
MANIFEST_LEVEL = "manifest"

# --- variants ----------------------------------------------------------------------------------

PROD = "prod"
DEBUG = "debug"

# --- attestations ------------------------------------------------------------------------------

CONFORMANCE_PREDICATE_TYPE = "https://base-image-factory.dev/attestations/hardening-conformance/v1"
SLSA_PROVENANCE_TYPE = "https://slsa.dev/provenance/v1"
# The lifecycle state of a published version (current, superseded, deprecated, retired): docs/app-teams.md.
LIFECYCLE_PREDICATE_TYPE = "https://base-image-factory.dev/attestations/lifecycle/v1"
# What cosign writes as predicateType for `--type cyclonedx` (the SBOM attestation of each platform).
CYCLONEDX_PREDICATE_TYPE = "https://cyclonedx.org/bom"
# The SBOM format's name: cosign's --type for the SBOM attestations, trivy's --format.
CYCLONEDX = "cyclonedx"
# The waivers of vuln-ignore.yaml as an OpenVEX v0.2.0 document, on each platform manifest: cosign's
# --type and the predicateType it writes for it.
OPENVEX = "openvex"
OPENVEX_PREDICATE_TYPE = "https://openvex.dev/ns"
# Each scan's result (at publish and by `factory scan`), on each platform manifest: cosign's vuln predicate.
VULN = "vuln"
VULN_PREDICATE_TYPE = "https://cosign.sigstore.dev/attestation/vuln/v1"


def created_timestamp(epoch: int) -> str:
    """The ``created`` label's value for a commit time: RFC 3339 in UTC, to the second."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
