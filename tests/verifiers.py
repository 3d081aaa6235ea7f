"""The third-party verifiers an auditor runs on what the factory publishes, shared by the unit tests (which
show each one failing on a broken document) and the integration tests (which run them on the statements
downloaded from the registry through `cosign verify-attestation`).

- in-toto-attestation's protobuf bindings: the statement and the SLSA v1 provenance predicate parsed with
  ``google.protobuf.json_format.Parse`` *without* ``ignore_unknown_fields``: a field the schema does not
  have (cosign's ``invocationID``) fails, and so does a wrong type (a timestamp that is not RFC 3339).
  cosign 2.x writes in-toto Statement v0.1 only (docs/verify.md); v0.1 has the same fields as v1, so the
  v1 Statement message parses it, and ``_type`` is checked to be exactly v0.1.
- cyclonedx-python-lib's strict JSON schema validation, for the document's own specVersion.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor

STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"  # what cosign 2.x's attest writes
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"


def check_statement(statement: Mapping[str, Any], predicate_type: str) -> statement_pb2.Statement:
    """The in-toto statement, strictly: known fields only, a v0.1 ``_type``, subjects with a sha256 digest."""
    pb = json_format.Parse(json.dumps(statement), statement_pb2.Statement())
    if pb.type != STATEMENT_V01:
        raise ValueError(f"_type is {pb.type!r}, expected {STATEMENT_V01}")
    if pb.predicate_type != predicate_type:
        raise ValueError(f"predicateType is {pb.predicate_type!r}, expected {predicate_type}")
    if not pb.subject:
        raise ValueError("the statement has no subject")
    for subject in pb.subject:
        ResourceDescriptor.copy_from_pb(subject).validate()
        if "sha256" not in subject.digest:
            raise ValueError(f"subject {subject.name!r} has no sha256 digest")
    return pb


def check_provenance(predicate: Mapping[str, Any]) -> provenance_pb2.Provenance:
    """A SLSA v1 provenance predicate, strictly, with the fields the SLSA v1 spec requires set."""
    pb = json_format.Parse(json.dumps(predicate), provenance_pb2.Provenance())
    definition = pb.build_definition
    if not definition.build_type or not definition.external_parameters:
        raise ValueError("buildDefinition needs buildType and externalParameters")
    if not pb.run_details.builder.id:
        raise ValueError("runDetails.builder.id is required")
    for rd in definition.resolved_dependencies:
        ResourceDescriptor.copy_from_pb(rd).validate()
    return pb


def check_provenance_statement(statement: Mapping[str, Any]) -> provenance_pb2.Provenance:
    check_statement(statement, SLSA_PROVENANCE_V1)
    return check_provenance(statement["predicate"])


def check_cyclonedx(bom: Mapping[str, Any]) -> None:
    """cyclonedx-python-lib's strict JSON validation for the BOM's specVersion; raises on any error."""
    version = SchemaVersion.from_version(str(bom.get("specVersion")))
    error = JsonStrictValidator(version).validate_str(json.dumps(bom))
    if error is not None:
        raise ValueError(f"CycloneDX {version.to_version()} strict validation: {error}")
