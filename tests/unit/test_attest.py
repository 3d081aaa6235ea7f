import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from google.protobuf import json_format

from factory.build.imagetest import CheckResult
from factory.core.labels import SLSA_PROVENANCE_TYPE
from factory.trust.attest import (
    conformance_predicate,
    image_dependency,
    slsa_provenance,
    source_dependency,
    vuln_predicate,
)
from tests import verifiers


def results(passed=True):
    return {
        "linux/arm64": [CheckResult("no-setuid", "linux/arm64", "sha256:b", True, "none"),
                        CheckResult("config-user", "linux/arm64", "sha256:b", passed, "USER 1001:1001")],
        "linux/amd64": [CheckResult("config-user", "linux/amd64", "sha256:a", True, "USER 1001:1001")],
    }


def predicate(**over):
    args = dict(image="py", version="1.2.3", platform_results=results(), policy_rules=["POL-002", "POL-001"],
                waivers=[{"rule": "POL-006", "reason": "known, tracked", "expires": date(2027, 1, 1)}],
                factory_version="0.1.0")
    return conformance_predicate(**(args | over))


def test_conformance_records_checks_per_platform_digest():
    p = predicate()
    assert p["passed"] is True
    assert p["platforms"]["linux/arm64"]["digest"] == "sha256:b"
    assert [c["name"] for c in p["platforms"]["linux/arm64"]["checks"]] == ["config-user", "no-setuid"]
    assert p["policy"]["rules"] == ["POL-001", "POL-002"]
    assert p["policy"]["waivers"][0]["expires"] == "2027-01-01"


def test_one_failed_check_fails_the_predicate():
    p = predicate(platform_results=results(passed=False))
    assert p["passed"] is False and p["platforms"]["linux/arm64"]["passed"] is False
    assert p["platforms"]["linux/amd64"]["passed"] is True


def test_conformance_is_deterministic():
    assert predicate() == predicate(platform_results=dict(reversed(list(results().items()))))


BASE = "reg.example.com/upstream/debian:12@sha256:" + "d" * 64
HELPER = "reg.example.com/upstream/debian:12-minbase@sha256:" + "f" * 64
COMMIT = "a" * 40


def test_slsa_provenance_shape():
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    deps = [source_dependency("https://git.example.com/org/images", COMMIT), image_dependency(BASE, "base")]
    p = slsa_provenance(builder_id="b", build_type="t", manifest={"name": "py"}, context_digest="sha256:c",
                        platforms=["linux/arm64", "linux/amd64"], build_args={"B": "2", "A": "1"},
                        invocation_id="r1", started=t0, finished=t1, dependencies=deps,
                        byproducts={"reg/myorg/base": "sha256:" + "e" * 64})
    bd, rd = p["buildDefinition"], p["runDetails"]
    assert bd["buildType"] == "t" and bd["externalParameters"]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert list(bd["internalParameters"]["buildArgs"]) == ["A", "B"]
    assert bd["internalParameters"]["contextDigest"] == "sha256:c"
    assert bd["resolvedDependencies"] == [
        {"name": "source", "uri": "git+https://git.example.com/org/images", "digest": {"gitCommit": COMMIT}},
        {"name": "base", "uri": "oci://reg.example.com/upstream/debian", "digest": {"sha256": "d" * 64},
         "annotations": {"reference": BASE}}]
    assert rd["builder"]["id"] == "b" and rd["metadata"] == {"invocationId": "r1", "startedOn": "2026-01-01T00:00:00Z",
                                                            "finishedOn": "2026-01-01T00:05:00Z"}


def test_a_source_without_a_commit_and_an_image_without_a_digest_are_not_claimed():
    assert source_dependency("https://git.example.com/o/r", "unknown") is None
    assert source_dependency("", COMMIT) == {"name": "source", "digest": {"gitCommit": COMMIT}}
    with pytest.raises(ValueError, match="not pinned by digest"):
        image_dependency("reg.example.com/upstream/debian:12", "base")


def test_provenance_passes_in_toto_attestations_strict_parse_and_fails_on_cosigns_rewrite():
    """The predicate as the factory attests it (cosign publishes it as is under the URI type), in the
    v0.1 statement cosign wraps it in; then what `--type slsaprovenance1` made of it: invocationID."""
    deps = [source_dependency("https://git.example.com/o/r", COMMIT), image_dependency(BASE, "base"),
            image_dependency(HELPER, "helper"),
            {"uri": "pkg:deb/debian/tzdata@2026a-0%2Bdeb12u1?arch=all", "name": "tzdata",
             "annotations": {"platform": "linux/amd64", "from": "2025b-0+deb12u1"}}]
    statement = {"_type": verifiers.STATEMENT_V01, "predicateType": SLSA_PROVENANCE_TYPE,
                 "subject": [{"name": "reg/myorg/base", "digest": {"sha256": "e" * 64}}],
                 "predicate": provenance(dependencies=deps)}
    pb = verifiers.check_provenance_statement(statement)
    assert pb.run_details.metadata.invocation_id == "r1" and len(pb.build_definition.resolved_dependencies) == 4
    rewritten = json.loads(json.dumps(statement).replace('"invocationId"', '"invocationID"'))
    with pytest.raises(json_format.ParseError, match="invocationID"):
        verifiers.check_provenance_statement(rewritten)
    with pytest.raises(ValueError, match="_type"):
        verifiers.check_provenance_statement({**statement, "_type": "https://in-toto.io/Statement/v2"})
    bad_time = json.loads(json.dumps(statement).replace("2026-01-01T00:05:00Z", "yesterday"))
    with pytest.raises(json_format.ParseError):
        verifiers.check_provenance_statement(bad_time)


def test_nothing_tested_is_not_passed():
    assert predicate(platform_results={})["passed"] is False
    p = predicate(platform_results={**results(), "linux/s390x": []})
    assert p["platforms"]["linux/s390x"]["passed"] is False and p["passed"] is False


def test_checks_of_one_platform_must_name_one_image():
    mixed = {"linux/amd64": [CheckResult("a", "linux/amd64", "sha256:a", True, ""),
                             CheckResult("b", "linux/amd64", "sha256:z", True, "")]}
    with pytest.raises(ValueError, match="several digests"):
        predicate(platform_results=mixed)


def test_conformance_serialises_to_the_same_bytes():
    a, b = predicate(), predicate(platform_results=dict(reversed(list(results().items()))),
                                  policy_rules=["POL-001", "POL-002"])
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def provenance(**over):
    args = dict(builder_id="b", build_type="t", manifest={"name": "py"}, context_digest="sha256:c",
                platforms=["linux/amd64"], build_args={}, invocation_id="r1", started=datetime(2026, 1, 1, tzinfo=UTC),
                finished=datetime(2026, 1, 1, 0, 5, tzinfo=UTC), dependencies=[image_dependency(BASE, "base")])
    return slsa_provenance(**(args | over))


def test_provenance_times_are_utc():
    cet = timezone(timedelta(hours=1))
    p = provenance(started=datetime(2026, 1, 1, 1, 0, tzinfo=cet))
    assert p["runDetails"]["metadata"]["startedOn"] == "2026-01-01T00:00:00Z"
    with pytest.raises(ValueError, match="no time zone"):
        provenance(finished=datetime(2026, 1, 1))


def test_provenance_has_the_slsa_v1_required_fields():
    p = provenance()
    assert set(p) == {"buildDefinition", "runDetails"}
    assert {"buildType", "externalParameters", "resolvedDependencies"} <= set(p["buildDefinition"])
    assert p["runDetails"]["builder"]["id"] == "b"


# --- the scan status in the conformance predicate, and the vuln predicate ------------------------

SCAN_RECORD = {"status": "scanned", "reason": "", "scanner": {"name": "trivy", "version": "0.76.0"},
               "db": {"source": "mirror.example.com/security/trivy-db:2", "digest": "sha256:" + "d" * 64,
                      "updated_at": "2026-11-28T00:00:00Z", "age_hours": 12.0},
               "scanned_at": "2026-11-28T12:00:00Z", "passed": True, "counts": {"HIGH": 2}, "waived": [], "found": []}


def test_a_scanned_image_keeps_the_vulnerability_rule_in_force():
    scan = {"status": "scanned", "reason": "", "platforms": {"linux/amd64": SCAN_RECORD}}
    p = predicate(policy_rules=["POL-001", "POL-024"], vulnerability_scan=scan, scan_rule="POL-024")
    assert p["policy"]["rules"] == ["POL-001", "POL-024"] and p["policy"]["notEvaluated"] == []
    assert p["vulnerabilityScan"] == scan


def test_a_not_scanned_image_never_claims_the_vulnerability_rule():
    scan = {"status": "not scanned", "reason": "the vulnerability database was built 2026-11-20", "platforms": {}}
    p = predicate(policy_rules=["POL-001", "POL-024"], vulnerability_scan=scan, scan_rule="POL-024")
    assert p["policy"]["rules"] == ["POL-001"]
    assert p["policy"]["notEvaluated"] == [{"rule": "POL-024", "reason": "image NOT scanned for CVEs: the "
                                                                       "vulnerability database was built 2026-11-20"}]
    assert p["vulnerabilityScan"]["status"] == "not scanned"
    # without a scan record (a caller from before scans were recorded) nothing is moved, nothing claimed
    plain = predicate(policy_rules=["POL-001", "POL-024"])
    assert "vulnerabilityScan" not in plain and plain["policy"]["notEvaluated"] == []


def test_the_vuln_predicate_has_cosigns_shape():
    p = json.loads(json.dumps(vuln_predicate(SCAN_RECORD, builder_id="https://b/f@v1", run_id="run-7")))
    assert set(p) == {"invocation", "scanner", "metadata"}
    assert p["invocation"] == {"parameters": None, "uri": "", "event_id": "run-7", "builder.id": "https://b/f@v1"}
    assert set(p["scanner"]) == {"uri", "version", "db", "result"}
    assert (p["scanner"]["uri"], p["scanner"]["version"]) == ("pkg:github/aquasecurity/trivy@0.76.0", "0.76.0")
    assert p["scanner"]["db"] == {"uri": f"oci://mirror.example.com/security/trivy-db:2@sha256:{'d' * 64}",
                                  "version": "2026-11-28T00:00:00Z"}
    assert p["scanner"]["result"] == SCAN_RECORD
    # cosign reads both times as RFC 3339 (Go's time.Time)
    for key in ("scanStartedOn", "scanFinishedOn"):
        assert datetime.fromisoformat(p["metadata"][key].replace("Z", "+00:00")).tzinfo is not None


def test_the_vuln_predicate_of_a_scan_that_did_not_run():
    record = {"status": "not scanned", "reason": "no database", "scanner": {"name": "trivy", "version": ""},
              "db": None, "scanned_at": ""}
    p = vuln_predicate(record, builder_id="b", run_id="r")
    assert p["scanner"]["db"] == {"uri": "", "version": ""} and p["scanner"]["result"]["status"] == "not scanned"
    assert p["metadata"]["scanStartedOn"].endswith("Z") or "+00:00" in p["metadata"]["scanStartedOn"]
