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

# --- variants ----------------------------------------------------------------------------------

PROD = "prod"
DEBUG = "debug"

# --- attestations ------------------------------------------------------------------------------

CONFORMANCE_PREDICATE_TYPE = "https://base-image-factory.dev/attestations/hardening-conformance/v1"
SLSA_PROVENANCE_TYPE = "https://slsa.dev/provenance/v1"
# What cosign writes as predicateType for `--type cyclonedx` (the SBOM attestation of each platform).
CYCLONEDX_PREDICATE_TYPE = "https://cyclonedx.org/bom"
# The SBOM format's name: cosign's --type for the SBOM attestations, trivy's --format.
CYCLONEDX = "cyclonedx"


def created_timestamp(epoch: int) -> str:
    """The ``created`` label's value for a commit time: RFC 3339 in UTC, to the second."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
