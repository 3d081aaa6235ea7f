"""The verdicts of `factory verify` that are pure logic: which conformance statement counts."""

import pytest

from factory.core.errors import VerificationFailed
from factory.core.labels import CONFORMANCE_PREDICATE_TYPE
from factory.trust.verify import (
    Finding,
    VerifyReport,
    _base_label_finding,
    _conformance,
)

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
INDEX = {"linux/amd64": A, "linux/arm64": B}


class Statements:
    """Stands in for Signer.verify_attestation: what cosign would have verified."""

    def __init__(self, *predicates):
        self.predicates = predicates

    def verify_attestation(self, ref, predicate_type, **keys):
        assert predicate_type == CONFORMANCE_PREDICATE_TYPE
        return [{"predicate": p} for p in self.predicates]


def conformance(platforms, passed=True):
    return {"passed": passed, "platforms": {
        p: {"digest": d, "passed": passed, "checks": [{"name": "config-user", "passed": passed, "detail": ""}]}
        for p, d in platforms.items()}}


def test_a_passed_statement_for_these_platform_digests_verifies():
    assert _conformance(Statements(conformance(INDEX)), "r@" + A, INDEX, {}) == \
        "passed: 2 checks on linux/amd64, linux/arm64"


def test_checks_that_ran_on_other_images_do_not_count():
    other = {"linux/amd64": A, "linux/arm64": "sha256:" + "c" * 64}
    with pytest.raises(VerificationFailed, match="covers"):
        _conformance(Statements(conformance(other)), "r@" + A, INDEX, {})
    with pytest.raises(VerificationFailed, match="covers"):
        _conformance(Statements(conformance({"linux/amd64": A})), "r@" + A, INDEX, {})


def test_a_failed_statement_names_its_failed_checks():
    with pytest.raises(VerificationFailed, match=r"does not say passed \(failed: config-user, config-user"):
        _conformance(Statements(conformance(INDEX, passed=False)), "r@" + A, INDEX, {})


def test_any_one_good_statement_among_several_is_enough():
    # Re-attesting adds a statement; cosign does not promise an order.
    statements = Statements(conformance(INDEX, passed=False), conformance(INDEX))
    assert _conformance(statements, "r@" + A, INDEX, {}).startswith("passed")


def test_base_label_missing_or_different_from_the_pinned_upstream():
    assert _base_label_finding({}, {}) == Finding("base.digest label", False, "missing")

    class Upstream:
        digest = A

    class Manifest:
        upstream = Upstream()

    labels = {"org.opencontainers.image.base.digest": B, "org.opencontainers.image.title": "deb"}
    finding = _base_label_finding(labels, {"deb": Manifest()})
    assert not finding.ok and "manifest pins" in finding.detail
    assert _base_label_finding({**labels, "org.opencontainers.image.base.digest": A}, {"deb": Manifest()}).ok


def test_report_is_ok_only_with_findings_all_ok():
    assert not VerifyReport("r").ok
    assert VerifyReport("r", findings=[Finding("x", True, "")]).ok
    assert not VerifyReport("r", findings=[Finding("x", True, ""), Finding("y", False, "")]).ok
