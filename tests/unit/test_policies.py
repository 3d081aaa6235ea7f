"""The enforcement policies `factory policies` writes: the Kyverno ClusterPolicy against Kyverno's
CRD schema (tests/data/kyverno), the sigstore ClusterImagePolicy by its CRD's required structure, and
the conftest Rego policy evaluated by a real Rego engine (regorus, PyPI opa-eval) on conftest's
input for allowed and refused Dockerfiles. hadolint runs on its config in the integration tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import opa_eval
import pytest
import yaml

from factory.consume import dockerfile, policies
from factory.core.labels import CONFORMANCE_PREDICATE_TYPE

DATA = Path(__file__).resolve().parents[1] / "data"
TARGET = "registry.example.com/myorg/base"
PEM = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
DIGEST = "sha256:" + "a" * 64
KEYED = policies.Policies(TARGET, policies.Trust(public_key_pem=PEM), ("docker.io/library/*",))
KEYLESS = policies.Policies(TARGET, policies.Trust(identity_regexp="^https://github.com/myorg/.*$",
                                                   issuer="https://token.actions.githubusercontent.com"))


def strict(schema: dict) -> dict:
    """The CRD schema as `kubectl apply --validate=strict` reads it: unknown fields are errors (the
    API server would silently prune them, and a misspelt key would then enforce nothing)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@pytest.fixture(scope="module")
def kyverno_schema() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(strict(json.loads((DATA / "kyverno" / "clusterpolicy-v1.schema.json")
                                                             .read_text())))


@pytest.mark.parametrize("p", [KEYED, KEYLESS], ids=["key", "keyless"])
def test_the_kyverno_policy_validates_against_kyvernos_schema(kyverno_schema, p):
    doc = yaml.safe_load(policies.render(p)["kyverno-clusterpolicy.yaml"])
    kyverno_schema.validate(doc)
    rule = doc["spec"]["rules"][0]["verifyImages"][0]
    assert rule["imageReferences"] == [f"{TARGET}:*", f"{TARGET}@*"]
    [attestation] = rule["attestations"]
    assert attestation["type"] == CONFORMANCE_PREDICATE_TYPE
    assert attestation["conditions"][0]["all"][0] == {"key": "{{ passed }}", "operator": "Equals", "value": True}


def test_the_kyverno_schema_check_fails_on_a_misspelt_key(kyverno_schema):
    doc = yaml.safe_load(policies.render(KEYED)["kyverno-clusterpolicy.yaml"])
    doc["spec"]["rules"][0]["verifyImages"][0]["imageReference"] = ["x"]  # imageReferences
    with pytest.raises(jsonschema.ValidationError, match="imageReference"):
        kyverno_schema.validate(doc)


def test_the_keyed_kyverno_policy_carries_the_public_key():
    doc = yaml.safe_load(policies.render(KEYED)["kyverno-clusterpolicy.yaml"])
    entry = doc["spec"]["rules"][0]["verifyImages"][0]["attestors"][0]["entries"][0]
    assert entry["keys"]["publicKeys"] == PEM and entry["keys"]["rekor"] == {"ignoreTlog": True}


# The sigstore policy-controller publishes its CRD only in its Helm chart and repository, neither
# reachable here; these are the CRD's required fields (policy.sigstore.dev/v1beta1 ClusterImagePolicy:
# spec.images[].glob, spec.authorities[] with exactly one of key / keyless, attestations[].policy).
SIGSTORE_SHAPE = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "policy.sigstore.dev/v1beta1"}, "kind": {"const": "ClusterImagePolicy"},
        "spec": {"type": "object", "required": ["images", "authorities"], "additionalProperties": False, "properties": {
            "images": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["glob"],
                                                                 "additionalProperties": False,
                                                                 "properties": {"glob": {"type": "string"}}}},
            "authorities": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name"], "additionalProperties": False,
                "oneOf": [{"required": ["key"]}, {"required": ["keyless"]}],
                "properties": {
                    "name": {"type": "string"},
                    "key": {"type": "object", "additionalProperties": False,
                            "properties": {"data": {"type": "string"}, "kms": {"type": "string"},
                                           "hashAlgorithm": {"type": "string"}}},
                    "keyless": {"type": "object", "required": ["identities"], "properties": {
                        "url": {"type": "string"},
                        "identities": {"type": "array", "items": {"type": "object", "required": ["issuer"]}}}},
                    "attestations": {"type": "array", "items": {
                        "type": "object", "required": ["name", "predicateType", "policy"],
                        "additionalProperties": False,
                        "properties": {"name": {"type": "string"}, "predicateType": {"type": "string"},
                                       "policy": {"type": "object", "required": ["type", "data"]}}}},
                }}},
        }},
    },
}


@pytest.mark.parametrize("p", [KEYED, KEYLESS], ids=["key", "keyless"])
def test_the_sigstore_policy_has_the_crds_structure(p):
    doc = yaml.safe_load(policies.render(p)["sigstore-clusterimagepolicy.yaml"])
    jsonschema.Draft202012Validator(SIGSTORE_SHAPE).validate(doc)
    attestation = doc["spec"]["authorities"][0]["attestations"][0]
    assert attestation["predicateType"] == CONFORMANCE_PREDICATE_TYPE
    assert "predicate: passed: true" in attestation["policy"]["data"]


def test_hadolint_trusts_the_org_registry_and_the_allowed_upstreams_registries():
    doc = yaml.safe_load(policies.render(KEYED)["hadolint.yaml"])
    assert doc == {"failure-threshold": "error", "trustedRegistries": ["registry.example.com", "docker.io"]}


# --- the Rego policy, on conftest's input, in a real Rego engine -------------------------------------


@pytest.fixture(scope="module")
def deny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rego")
    policies.write(KEYED, folder)
    engine = opa_eval.OpaEval(str(folder / "conftest" / "org_base.rego"), query="data.main.deny")

    def run(text: str) -> list[str]:
        return sorted(engine.evaluate_parsed(json.dumps(dockerfile.conftest_input(text))))

    return run


@pytest.mark.parametrize("text", [
    f"FROM {TARGET}:app-v1@{DIGEST}\n",
    f"ARG REG=registry.example.com\nFROM golang:1.22@{DIGEST} AS build\nFROM ${{REG}}/myorg/base:app-v1@{DIGEST}\n",
    f"FROM {TARGET}:app-debug-v1@{DIGEST} AS tools\nFROM scratch\nCOPY --from=tools /bin/sh /sh\n",
    f"FROM {TARGET}:app-v1@{DIGEST} AS base\nFROM base\n",
], ids=["pinned", "arg-and-upstream-build-stage", "debug-in-build-stage", "stage-reference"])
def test_the_rego_policy_allows_good_dockerfiles(deny, text):
    assert deny(text) == []


@pytest.mark.parametrize(("text", "message"), [
    (f"FROM quay.io/evil/base@{DIGEST}\n", "not an org base image"),
    (f"FROM {TARGET}:app-v1\n", "not pinned by digest"),
    (f"FROM {TARGET}:app-debug-v1@{DIGEST}\n", "a debug variant in the final stage"),
    (f"FROM golang:1.22@{DIGEST}\n", "the final stage must be built on an org base image"),
    ("FROM $NOPE\n", "a build argument without a default"),
], ids=["foreign", "unpinned", "debug-final", "upstream-final", "unresolved"])
def test_the_rego_policy_refuses_bad_dockerfiles(deny, text, message):
    assert any(message in m for m in deny(text)), deny(text)
