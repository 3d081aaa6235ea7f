"""`factory scan` (factory.security.rescan) over in-memory stand-ins for the registry, cosign and trivy; the
plan's `vulnerable` reason; `factory verify`'s newest-scan record. tests/integration/test_scan_db.py runs
the same against the real registry, cosign and trivy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.build import scan
from factory.core.errors import UsageError, VerificationFailed, VulnerableImages
from factory.core.labels import CONFORMANCE_PREDICATE_TYPE, VULN
from factory.core.model import Vulnerability
from factory.publish.pipeline import vulnerable_from
from factory.security.rescan import Rescanner
from factory.spec import manifest
from factory.trust.verify import latest_scan
from tests.unit.catalog_fakes import FakeRegistry, FakeSigner, settings
from tests.unit.test_security_check import DEB, DIGEST

AMD = "linux/amd64"
OLD = Vulnerability("CVE-2099-0002", "base-files", "12.4", "", "HIGH", "")
NEW = Vulnerability("CVE-2099-0004", "tar", "1.34", "9.9.9", "CRITICAL", "")


class Signer(FakeSigner):
    """Verifies the SBOMs and the conformance it was given; records what it attests."""

    def __init__(self, settings, sboms, conformance=None) -> None:
        super().__init__(settings, sboms=sboms)
        self.conformance = conformance
        self.attested: list[tuple[str, dict, str, bool]] = []

    def verify_attestation(self, ref, predicate_type, *, public_key=None):
        if predicate_type == CONFORMANCE_PREDICATE_TYPE:
            if self.conformance is None:
                raise VerificationFailed("no conformance")
            return [{"predicate": self.conformance}]
        return super().verify_attestation(ref, predicate_type, public_key=public_key)

    def attest(self, ref, predicate, predicate_type, *, replace=False) -> None:
        self.attested.append((ref, predicate, predicate_type, replace))


class Scanner:
    def __init__(self, found, available=True) -> None:
        self.found, self.available, self.files = tuple(found), available, []

    def scan_sbom(self, sbom_file: Path, what: str) -> scan.ScanReport:
        self.files.append(json.loads(sbom_file.read_text()))
        if not self.available:
            return scan.ScanReport("trivy", False, note="no database")
        db = {"source": "r/db:2", "digest": DIGEST, "updated_at": "2026-12-01T00:00:00Z", "age_hours": 1}
        return scan.ScanReport("trivy", True, self.found, db=db,
                               scanner_version="0.76.0", scanned_at="2026-12-01T10:00:00Z")


def world(tmp_path, found, *, at_publish=("CVE-2099-0002",), available=True, ignores=(), mode="fail"):
    registry = FakeRegistry()
    index, platforms = registry.image({AMD: ({"t": "deb"}, [10])})
    registry.tag("myorg/base", "deb-v1.0.3", index)
    s = settings(tmp_path, {"deb": DEB, "other": DEB.replace("name: deb", "name: other")})
    conformance = {"vulnerabilityScan": {"status": "scanned", "platforms": {
        AMD: {"status": "scanned", "found": list(at_publish)}}}}
    signer = Signer(s, {platforms[AMD]: {"bomFormat": "CycloneDX", "components": []}}, conformance)
    scanner = Scanner(found, available)
    rescanner = Rescanner(registry=registry, repository="myorg/base", target=s.target, signer=signer,
                          scanner=scanner, manifests=manifest.load_all(s), ignores=list(ignores),
                          fail_on=("CRITICAL",), db_unavailable=mode, run_id="r1")
    return rescanner, signer, scanner, platforms[AMD]


def test_a_cve_disclosed_after_publish_is_new_blocking_and_attested(tmp_path):
    rescanner, signer, scanner, platform = world(tmp_path, [OLD, NEW])
    run = rescanner.run(["deb"])
    (image,) = run.images
    assert (image.image, image.version, image.blocking) == ("deb", "1.0.3", ["CVE-2099-0004"])
    assert image.platforms[0].new == ("CVE-2099-0004",)
    assert run.unpublished == [] and run.vulnerable() == {"deb": "1.0.3"}
    assert scanner.files == [{"bomFormat": "CycloneDX", "components": []}]  # the verified SBOM, as published
    ((ref, predicate, kind, replace),) = signer.attested
    assert ref.endswith(platform) and kind == VULN and replace  # one newest record, never a pile of them
    assert predicate["scanner"]["result"]["found"] == ["CVE-2099-0002", "CVE-2099-0004"]
    with pytest.raises(VulnerableImages, match=r"deb 1\.0\.3: CVE-2099-0004"):
        run.raise_for_outcome("fail")
    assert any("NEW since publish: CVE-2099-0004" in line and "BLOCKING" in line for line in run.lines())


def test_nothing_new_passes_and_other_images_are_unpublished(tmp_path):
    rescanner, _, _, _ = world(tmp_path, [OLD])
    run = rescanner.run()
    assert [i.image for i in run.images] == ["deb"] and run.unpublished == ["other"]
    assert run.images[0].platforms[0].new == () and run.vulnerable() == {}
    run.raise_for_outcome("fail")  # no exception


def test_a_waiver_in_force_keeps_it_quiet_and_an_expired_one_does_not(tmp_path):
    from datetime import date

    waiver = scan.Ignore("CVE-2099-0004", "tar is never run by the app", date(2099, 1, 1))
    run = world(tmp_path / "a", [NEW], ignores=[waiver])[0].run(["deb"])
    assert run.images[0].blocking == []
    expired = scan.Ignore("CVE-2099-0004", "tar is never run by the app", date(2026, 1, 1), where="v:3", expired=True)
    run = world(tmp_path / "b", [NEW], ignores=[expired])[0].run(["deb"])
    assert run.images[0].blocking == ["CVE-2099-0004"]
    assert "expired on 2026-01-01" in " ".join(run.images[0].platforms[0].record["messages"])


@pytest.mark.parametrize(("mode", "fails"), [("fail", True), ("warn", False)])
def test_no_database_is_not_scanned_and_fails_only_under_fail(tmp_path, mode, fails):
    run = world(tmp_path, [NEW], available=False, mode=mode)[0].run(["deb"])
    (image,) = run.images
    assert not image.scanned and image.blocking == []
    assert "NOT scanned: no database" in run.lines()[0]
    if fails:
        with pytest.raises(VulnerableImages, match="not scanned"):
            run.raise_for_outcome(mode)
    else:
        run.raise_for_outcome(mode)


def test_an_sbom_that_does_not_verify_is_an_error_never_clean(tmp_path):
    rescanner, signer, _, _ = world(tmp_path, [])
    signer.sboms.clear()
    run = rescanner.run(["deb"])
    assert "no verified cyclonedx attestation" in run.images[0].platforms[0].error
    with pytest.raises(VulnerableImages):
        run.raise_for_outcome("warn")


def test_an_unknown_name_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="did you mean deb"):
        world(tmp_path, [])[0].run(["dbe"])


def test_vulnerable_from_a_scan_report(tmp_path):
    path = tmp_path / "scan.json"
    path.write_text(json.dumps({"images": [{"image": "deb", "version": "1.0.3", "blocking": ["CVE-1"]},
                                           {"image": "ok", "version": "2.0.0", "blocking": []}]}))
    assert vulnerable_from(path) == {"deb": "1.0.3"}
    path.write_text("[]")
    with pytest.raises(UsageError, match="not a `factory scan --report` file"):
        vulnerable_from(path)


def test_verify_reads_the_newest_vuln_attestation_before_the_conformance(tmp_path):
    s = settings(tmp_path)

    class Attested(FakeSigner):
        def verify_attestation(self, ref, predicate_type, *, public_key=None):
            assert predicate_type == VULN
            old = {"metadata": {"scanFinishedOn": "2026-11-01T00:00:00Z"},
                   "scanner": {"result": {"status": "scanned", "counts": {}, "blocking": []}}}
            new = {"metadata": {"scanFinishedOn": "2026-12-01T00:00:00Z"},
                   "scanner": {"result": {"status": "scanned", "counts": {"CRITICAL": 1},
                                          "blocking": [{"id": "CVE-2099-0004"}]}}}
            return [{"predicate": new}, {"predicate": old}]

    record = latest_scan(Attested(s), "r/x", {AMD: DIGEST}, {"vulnerabilityScan": {"platforms": {}}}, {})
    assert record["status"] == "scanned" and record["platforms"][AMD]["blocking"] == ["CVE-2099-0004"]
    none = latest_scan(FakeSigner(s), "r/x", {AMD: DIGEST}, None, {})
    assert none["status"] == "not scanned" and scan.describe(none) == "NOT scanned: no verified scan record"
