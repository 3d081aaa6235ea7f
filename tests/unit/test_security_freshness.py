"""Security fixes for app teams: the catalog's per-version, per-platform fields (pending now, applied at
build) and `factory verify`'s "security fixes" finding, from the verified conformance record."""

from __future__ import annotations

import jsonschema

from factory.consume import catalog, freshness, site
from factory.consume.catalog import Collector
from factory.core.errors import VerificationFailed
from factory.core.labels import CONFORMANCE_PREDICATE_TYPE
from factory.security.check import FixesChecker
from factory.spec import manifest
from factory.trust.verify import VerifyReport
from tests.unit.catalog_fakes import FakeSigner, bom
from tests.unit.test_catalog import AMD, ARM, NOW, TODAY, World
from tests.unit.test_security_check import FakeArchives

CHECKED = "2026-11-20T03:17:00Z"


def record(policy="require", pending_security=0, applied=1, status="fixable") -> dict:
    pending = [{"package": "libpam0g", "arch": "amd64", "installed": "1.5.2-6", "candidate": "1.5.2-6+deb12u1",
                "suite": "bookworm-security", "kind": "security"}] * pending_security
    return {"policy": policy, "checked": CHECKED, "platforms": {
        p: {"status": status, "suites": [{"name": "bookworm", "date": "2025-11-15T10:00:00Z"},
                                         {"name": "bookworm-security", "date": "2026-11-19T21:00:00Z"}],
            "applied": [{"package": "apt", "arch": p.split("/")[1], "from": "2.6.1", "to": "2.6.2",
                         "suite": "bookworm-security"}] * applied,
            "pending": pending, "pendingSecurity": pending_security} for p in (AMD, ARM)}}


def conformance(security: dict | None) -> dict:
    predicate = {"passed": True, "platforms": {}}
    return predicate | ({"securityFixes": security} if security is not None else {})


# --- verify ---------------------------------------------------------------------------------------


def test_verify_prints_policy_suites_and_counts():
    found = freshness.finding(VerifyReport("r", conformance=conformance(record())))
    assert found.ok and found.check == "security fixes"
    assert found.detail == ("policy require, checked 2026-11-20T03:17:00Z; suites bookworm (2025-11-15T10:00:00Z), "
                            "bookworm-security (2026-11-19T21:00:00Z); 2 applied, 0 security fix(es) pending")


def test_verify_fails_when_a_fix_was_left_pending_under_require():
    found = freshness.finding(VerifyReport("r", conformance=conformance(record(pending_security=1))))
    assert not found.ok
    assert "2 security fix(es) pending" in found.detail and "linux/amd64: 1, linux/arm64: 1" in found.detail


def test_pending_under_warn_or_for_a_no_shell_image_passes():
    assert freshness.finding(VerifyReport("r", conformance=conformance(record("warn", pending_security=1)))).ok
    upstream = freshness.finding(VerifyReport("r", conformance=conformance(
        record(pending_security=1, applied=0, status="upstream must rebuild"))))
    assert upstream.ok and "(2 only a new upstream image brings)" in upstream.detail


def test_an_older_version_without_a_record_is_not_recorded_and_a_malformed_one_fails():
    old = freshness.finding(VerifyReport("r", conformance=conformance(None)))
    assert old.ok and old.detail.startswith("not recorded")
    bad = record()
    del bad["platforms"][AMD]["pendingSecurity"]
    broken = freshness.finding(VerifyReport("r", conformance=conformance(bad)))
    assert not broken.ok and "securityFixes is not a security-fixes record" in broken.detail


# --- catalog --------------------------------------------------------------------------------------


class Signer(FakeSigner):
    """The catalog fakes' signer, with conformance statements on some indexes."""

    def __init__(self, settings, *, sboms, conformances):
        super().__init__(settings, sboms=sboms)
        self.conformances = conformances  # index digest -> predicate

    def verify_attestation(self, ref, predicate_type, *, public_key=None):
        if predicate_type == CONFORMANCE_PREDICATE_TYPE:
            found = self.conformances.get(ref.rsplit("@", 1)[-1])
            if found is None:
                raise VerificationFailed(f"no verified conformance attestation on {ref}")
            return [{"predicate": found}]
        return super().verify_attestation(ref, predicate_type, public_key=public_key)


def collect(world: World, *, fixes: bool = True) -> catalog.SiteCatalog:
    pam = {"libpam0g": "1.5.2-6", "a": "1.1"}
    sboms = {**world.sboms, world.deb1_p[AMD]: bom(pam), world.deb1_p[ARM]: bom(pam)}
    signer = Signer(world.settings, sboms=sboms,
                    conformances={world.deb1: conformance(record()), world.deb0: conformance(None)})
    manifests = manifest.load_all(world.settings)
    checker = FixesChecker(world.settings, lambda host: world.registry, signer, manifests, FakeArchives())
    return Collector(world.settings, lambda host: world.registry, signer, manifests, today=TODAY, now=NOW,
                     fixes=checker if fixes else None).collect()


def test_each_version_and_platform_has_its_pending_and_applied_fixes(tmp_path):
    world = World(tmp_path)
    deb = collect(world).entry("deb")
    v101, v100 = deb.versions
    amd = v101.platforms[0]
    assert amd.security_pending == freshness.PendingNow(
        "fixable", 1, (freshness.PendingFix("libpam0g", "1.5.2-6", "1.5.2-6+deb12u1", "bookworm-security"),))
    assert amd.security_applied.recorded and amd.security_applied.policy == "require"
    assert amd.security_applied.applied == (freshness.AppliedFix("apt", "2.6.1", "2.6.2", "bookworm-security"),)
    assert [s.name for s in amd.security_applied.suites] == ["bookworm", "bookworm-security"]
    assert v100.platforms[0].security_pending.count == 0  # a and b: not in the archive, nothing to fix
    assert not v100.platforms[0].security_applied.recorded
    assert v100.platforms[0].security_applied.note.startswith("not recorded")


def test_not_checked_says_why_and_unverified_conformance_is_not_recorded(tmp_path):
    world = World(tmp_path)
    result = collect(world, fixes=False)
    amd = result.entry("deb").versions[0].platforms[0]
    assert amd.security_pending == freshness.PendingNow("not checked", None, note="policy.security_fixes is off")
    py = result.entry("py").versions[0]
    assert not py.platforms[0].security_applied.recorded
    assert "not read: no verified conformance attestation" in py.platforms[0].security_applied.note
    assert any(n.startswith("conformance: not read") for n in py.notes)  # one note: fixes and scan read it


def test_catalog_json_carries_the_fields_and_validates(tmp_path):
    world = World(tmp_path)
    doc = catalog.as_document(collect(world))
    jsonschema.Draft202012Validator(catalog.schema()).validate(doc)
    platform = doc["images"][0]["versions"][0]["platforms"][0]
    assert platform["security_pending"]["count"] == 1
    assert platform["security_pending"]["fixes"][0]["package"] == "libpam0g"
    assert platform["security_applied"]["applied"][0] == {"package": "apt", "from_version": "2.6.1",
                                                          "to_version": "2.6.2", "suite": "bookworm-security"}


def test_the_site_page_shows_pending_and_applied(tmp_path):
    world = World(tmp_path)
    pages = site.render_pages(collect(world))
    page = pages["images/deb.html"]
    v101 = page[page.index('id="v1.0.1"'):page.index('id="v1.0.0"')]
    assert "Security fixes pending" in v101 and "1 applied" in v101
    assert "pending <b>libpam0g</b> 1.5.2-6 &rarr; 1.5.2-6+deb12u1 (bookworm-security)" in v101
    assert "applied <b>apt</b> 2.6.1 &rarr; 2.6.2 (bookworm-security)" in v101
    assert "not recorded" in page[page.index('id="v1.0.0"'):]
