import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from factory.build.imagetest import CheckResult
from factory.trust.attest import conformance_predicate, slsa_provenance


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


def test_slsa_provenance_shape():
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    p = slsa_provenance(builder_id="b", build_type="t", manifest={"name": "py"}, context_digest="sha256:c",
                        base_ref="reg/upstream/debian@sha256:" + "d" * 64, platforms=["linux/arm64", "linux/amd64"],
                        build_args={"B": "2", "A": "1"}, invocation={"run_id": "r1"}, started=t0, finished=t1,
                        subjects={"reg/myorg/base": "sha256:" + "e" * 64})
    bd, rd = p["buildDefinition"], p["runDetails"]
    assert bd["buildType"] == "t" and bd["externalParameters"]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert list(bd["internalParameters"]["buildArgs"]) == ["A", "B"]
    assert bd["resolvedDependencies"] == [{"uri": "oci://reg/upstream/debian", "digest": {"sha256": "d" * 64}}]
    assert rd["builder"]["id"] == "b" and rd["metadata"] == {"invocationId": "r1", "startedOn": "2026-01-01T00:00:00Z",
                                                            "finishedOn": "2026-01-01T00:05:00Z"}


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
                base_ref="reg/upstream/debian@sha256:" + "d" * 64, platforms=["linux/amd64"], build_args={},
                invocation={"run_id": "r1"}, started=datetime(2026, 1, 1, tzinfo=UTC),
                finished=datetime(2026, 1, 1, 0, 5, tzinfo=UTC), subjects={})
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
