"""The waivers of vuln-ignore.yaml as an OpenVEX v0.2.0 document (factory.trust.vex).

Checked two ways: parsed by vexipy (a third-party OpenVEX model that enforces the spec's status rules), and
against the required keys and allowed keys of the OpenVEX v0.2.0 JSON schema (openvex/spec
openvex_json_schema.json; no package on PyPI or npm ships that file, so its rules are restated below)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
import vexipy
from packageurl import PackageURL

from factory.build.scan import Ignore
from factory.trust.vex import CONTEXT, document, image_purl

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
REPO = "127.0.0.1:5000/myorg/base/debian-12"
INDEX = "sha256:" + "1" * 64
AMD, ARM = "sha256:" + "a" * 64, "sha256:" + "b" * 64

NOT_AFFECTED = Ignore("CVE-2099-0001", "dpkg is never run in the image at runtime", date(2027, 1, 31),
                      justification="vulnerable_code_not_in_execute_path")
NO_JUSTIFICATION = Ignore("CVE-2099-0003", "not reachable from any entry point", date(2027, 1, 31))
AFFECTED = Ignore("CVE-2099-0002", "no fix in bookworm yet; low exposure", date(2027, 1, 31), status="affected",
                  action="rebuild when bookworm ships the fixed base-files")
EXPIRED = Ignore("CVE-2099-0004", "was not reachable from any entry point", date(2026, 11, 1), expired=True)

# OpenVEX v0.2.0 JSON schema: the document's and a statement's required and allowed keys, the statuses and
# justifications, and the status rules of its allOf (not_affected: a justification or an impact statement;
# affected: an action statement).
DOC_REQUIRED = {"@context", "@id", "author", "timestamp", "version", "statements"}
DOC_KEYS = DOC_REQUIRED | {"role", "last_updated", "tooling"}
STATEMENT_REQUIRED = {"vulnerability", "status"}
STATEMENT_KEYS = STATEMENT_REQUIRED | {"@id", "version", "timestamp", "last_updated", "products", "supplier",
                                       "status_notes", "justification", "impact_statement", "action_statement",
                                       "action_statement_timestamp"}
PRODUCT_KEYS = {"@id", "identifiers", "hashes", "subcomponents"}
STATUSES = {"not_affected", "affected", "fixed", "under_investigation"}
JUSTIFICATIONS = {"component_not_present", "vulnerable_code_not_present", "vulnerable_code_not_in_execute_path",
                  "vulnerable_code_cannot_be_controlled_by_adversary", "inline_mitigations_already_exist"}


def schema_problems(doc: dict) -> list[str]:
    problems = [f"missing {k}" for k in DOC_REQUIRED - set(doc)] + [f"unknown {k}" for k in set(doc) - DOC_KEYS]
    if not isinstance(doc.get("version"), int) or doc["version"] < 1:
        problems.append("version must be an integer >= 1")
    if not doc.get("statements"):
        problems.append("statements: at least one")
    for i, s in enumerate(doc.get("statements") or []):
        problems += [f"statements.{i}: missing {k}" for k in STATEMENT_REQUIRED - set(s)]
        problems += [f"statements.{i}: unknown {k}" for k in set(s) - STATEMENT_KEYS]
        if set(s.get("vulnerability", {})) - {"@id", "name", "description", "aliases"} or \
                not s.get("vulnerability", {}).get("name"):
            problems.append(f"statements.{i}.vulnerability")
        problems += [f"statements.{i}.products: unknown {k}"
                     for p in s.get("products", []) for k in set(p) - PRODUCT_KEYS]
        if s.get("status") not in STATUSES or s.get("justification", "component_not_present") not in JUSTIFICATIONS:
            problems.append(f"statements.{i}: status or justification")
        if s.get("status") == "not_affected" and not ({"justification", "impact_statement"} & set(s)):
            problems.append(f"statements.{i}: not_affected needs a justification or an impact_statement")
        if s.get("status") == "affected" and "action_statement" not in s:
            problems.append(f"statements.{i}: affected needs an action_statement")
    return problems


def vex(*waivers: Ignore, platforms: dict | None = None) -> dict:
    doc = document(repository=REPO, index_digest=INDEX, platform_digests={"linux/amd64": AMD, "linux/arm64": ARM}
                   if platforms is None else platforms, waivers=waivers, author="Example Org security", now=NOW)
    return json.loads(json.dumps(doc))


def test_the_document_is_openvex_v0_2_0():
    doc = vex(NOT_AFFECTED, AFFECTED)
    assert schema_problems(doc) == []
    parsed = vexipy.Document.model_validate(doc)  # raises on a statement the spec forbids
    assert parsed.context == CONTEXT == "https://openvex.dev/ns/v0.2.0"
    assert [s.status.value for s in parsed.statements] == ["not_affected", "affected"]
    assert doc["author"] == "Example Org security" and doc["timestamp"] == "2026-11-28T12:00:00Z"
    assert doc["version"] == 1 and doc["@id"].startswith("https://")


def test_the_schema_check_can_fail():
    doc = vex(NOT_AFFECTED, AFFECTED)
    del doc["statements"][1]["action_statement"]
    doc["statements"][0]["status"] = "waived"
    doc["expires"] = "2027-01-31"
    assert schema_problems(doc) == ["unknown expires", "statements.0: status or justification",
                                    "statements.1: affected needs an action_statement"]
    with pytest.raises(ValueError):
        vexipy.Document.model_validate(doc)


def test_not_affected_states_the_justification_or_else_the_reason_as_impact():
    (with_j,) = vex(NOT_AFFECTED)["statements"]
    assert with_j["status"] == "not_affected" and with_j["vulnerability"] == {"name": "CVE-2099-0001"}
    assert with_j["justification"] == "vulnerable_code_not_in_execute_path"
    # one of the two, as the OpenVEX schema's oneOf wants: the reason goes to the notes beside a justification
    assert "impact_statement" not in with_j
    assert with_j["status_notes"] == ("dpkg is never run in the image at runtime "
                                      "(waived in vuln-ignore.yaml until 2027-01-31)")
    assert "action_statement" not in with_j
    doc = vex(NO_JUSTIFICATION)
    (without,) = doc["statements"]
    assert "justification" not in without and without["impact_statement"].startswith("not reachable")
    assert schema_problems(doc) == []
    # valid, but the spec discourages it: a justification is what tools act on (docs/gates.md says so)
    with pytest.warns(UserWarning, match="without a justification"):
        vexipy.Document.model_validate(doc)


def test_affected_states_the_action():
    (s,) = vex(AFFECTED)["statements"]
    assert s["status"] == "affected" and "justification" not in s and "impact_statement" not in s
    assert s["action_statement"] == ("rebuild when bookworm ships the fixed base-files "
                                     "(waived in vuln-ignore.yaml until 2027-01-31)")
    assert s["status_notes"] == "no fix in bookworm yet; low exposure"


def test_an_expired_waiver_is_never_stated():
    doc = vex(EXPIRED, NOT_AFFECTED)
    assert [s["vulnerability"]["name"] for s in doc["statements"]] == ["CVE-2099-0001"]
    assert vex(EXPIRED)["statements"] == []


def test_the_products_are_the_index_and_every_platform_manifest_as_oci_purls():
    (s,) = vex(NOT_AFFECTED)["statements"]
    ids = [p["@id"] for p in s["products"]]
    assert len(ids) == 3 and set(s["products"][0]) == {"@id"}
    parsed = [PackageURL.from_string(i) for i in ids]
    assert {(p.type, p.name) for p in parsed} == {("oci", "debian-12")}
    assert {p.version for p in parsed} == {INDEX, AMD, ARM}
    assert {p.qualifiers["repository_url"] for p in parsed} == {REPO}
    # a single-platform image whose index is its manifest is named once
    (single,) = vex(NOT_AFFECTED, platforms={"linux/amd64": INDEX})["statements"]
    assert [p["@id"] for p in single["products"]] == [image_purl(REPO, INDEX)]


def test_image_purl_follows_purl_specs_oci_type():
    purl = PackageURL.from_string(image_purl("ghcr.io/org/team/app", AMD))
    assert (purl.type, purl.namespace, purl.name, purl.version) == ("oci", None, "app", AMD)
    assert purl.qualifiers == {"repository_url": "ghcr.io/org/team/app"}


def test_equal_inputs_give_equal_documents():
    assert vex(NOT_AFFECTED, AFFECTED) == vex(AFFECTED, NOT_AFFECTED)
    other = document(repository=REPO, index_digest="sha256:" + "2" * 64, platform_digests={}, waivers=[AFFECTED],
                     author="x", now=NOW)
    assert other["@id"] != vex(AFFECTED)["@id"]  # one document per image version
