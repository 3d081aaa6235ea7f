"""The vulnerability database from the org's registry, honest scan status, waivers as signed OpenVEX, and
rescans without rebuilds: the real trivy, cosign and registry, on what is published.

The database is tests/data/trivy-db (invented advisories for the seeded Debian minbase: CRITICAL
CVE-2099-0001 in dpkg, HIGH CVE-2099-0002 in base-files; db-next adds CRITICAL CVE-2099-0004 in tar),
pushed to the local registry as trivy's own database is published, and checked with trivy's own
downloader before the factory uses it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from factory.build import vulndb
from factory.core.labels import CONFORMANCE_PREDICATE_TYPE
from factory.oci.registry import Registry
from tests.integration.conftest import REPO_ROOT
from tests.integration.workspace import Workspace, manifest_on

DB = REPO_ROOT / "tests" / "data" / "trivy-db"
WAIVER_REASON = "dpkg is never run in a deployed container: the image has no package installs at runtime"


def push_db(settings, repository: str, folder: str = "db", *, age: timedelta = timedelta(0)) -> str:
    """``folder`` of tests/data/trivy-db as trivy's database artifact at ``<registry>/<repository>:2``."""
    with Registry(settings.registry, insecure=True) as reg:
        vulndb.push(reg, repository, "2", DB / folder, updated_at=datetime.now(UTC) - age)
    return f"{settings.registry}/{repository}:2"


def cosign_attestations(runner, settings, kind: str, ref: str) -> list[dict]:
    """The statements ``cosign verify-attestation`` verified (plain cosign, the dev public key), decoded."""
    proc = subprocess.run([runner.require("cosign"), "verify-attestation", "--type", kind, "--key",
                           str(settings.dev_key.with_suffix(".pub")), "--insecure-ignore-tlog=true",
                           "--allow-http-registry", "--allow-insecure-registry", ref],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(base64.b64decode(json.loads(line)["payload"])) for line in proc.stdout.splitlines() if line]


def trivy(runner, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([runner.require("trivy"), *args], capture_output=True, text=True, timeout=300)


def test_the_pushed_database_is_what_trivy_itself_downloads(settings, runner, tmp_path):
    """trivy's own downloader (--db-repository) takes the artifact: media types and layout as trivy expects."""
    ref = push_db(settings, f"t{uuid.uuid4().hex[:8]}/trivy-db")
    proc = trivy(runner, "image", "--download-db-only", "--db-repository", ref, "--cache-dir", str(tmp_path / "t"),
                 "--quiet", "--skip-version-check", "--disable-telemetry")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "t" / "db" / "trivy.db").read_bytes() == (DB / "db" / "trivy.db").read_bytes()
    # ... and the factory's fetch gives the same files, records the digest, and reuses them.
    with Registry(settings.registry, insecure=True) as reg:
        digest = vulndb.fetch(lambda host: reg, ref, tmp_path / "f")
        assert vulndb.fetch(lambda host: reg, ref, tmp_path / "f") == digest
    assert (tmp_path / "f" / "db" / "trivy.db").read_bytes() == (DB / "db" / "trivy.db").read_bytes()
    status = vulndb.status(tmp_path / "f", max_age=timedelta(hours=48), now=datetime.now(UTC))
    assert status.available and status.info and status.info.digest == digest


def test_an_image_that_is_not_a_database_is_refused_by_both(settings, runner, seeded, tmp_path):
    ref = seeded["busybox"].ref.split("@")[0]
    proc = trivy(runner, "image", "--download-db-only", "--db-repository", ref, "--cache-dir", str(tmp_path / "t"),
                 "--quiet", "--skip-version-check", "--disable-telemetry")
    assert proc.returncode != 0
    with Registry(settings.registry, insecure=True) as reg, pytest.raises(Exception, match="not a trivy database"):
        vulndb.fetch(lambda host: reg, ref, tmp_path / "f")


# --- a Debian image with a CRITICAL finding: blocked, then waived as signed OpenVEX --------------------


@dataclass
class Published:
    ws: Workspace
    db: str  # the database repository:tag the workspace scans with
    blocked: subprocess.CompletedProcess
    index: str
    platform: str  # the linux/amd64 manifest digest


@pytest.fixture(scope="module")
def published(tmp_path_factory, settings, seeded_debian) -> Published:
    tmp = tmp_path_factory.mktemp("scan")
    db = push_db(settings, f"t{uuid.uuid4().hex[:8]}/trivy-db")
    policy = {"scanner_db_unavailable": "fail", "security_fixes": "off", "fail_on_severities": ["CRITICAL"]}
    ws = Workspace.create(tmp / "repo", registry=settings.registry, state_dir=settings.state_dir,
                          extra_config={"helper_image": seeded_debian.ref, "scanner": {"db_repository": db},
                                        "policy": policy})
    ws.add_manifest(manifest_on(seeded_debian, "vex", platforms=["linux/amd64"], description="scan test image"))
    assert ws.factory("render").returncode == 0
    ws.commit("render")
    blocked = ws.factory("publish", "vex")
    (ws.root / "vuln-ignore.yaml").write_text(json.dumps({"ignores": [
        {"id": "CVE-2099-0001", "reason": WAIVER_REASON, "expires": (date.today() + timedelta(days=30)).isoformat(),
         "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"},
        {"id": "CVE-2099-0003", "reason": "an expired waiver of a finding the image does not have",
         "expires": "2026-01-31"}]}))
    ws.commit("waive CVE-2099-0001")
    proc = ws.factory("publish", "vex")
    assert proc.returncode == 0, proc.stderr[-4000:]
    index = ws.digest("vex-v1.0.0")
    single = "manifests" not in ws.manifest(index)  # one platform: the manifest is its own index
    return Published(ws, db, blocked, index, index if single else ws.platforms(index)["linux/amd64"])


def test_a_critical_finding_gets_no_tag_and_a_waiver_publishes(published):
    assert published.blocked.returncode == 1
    assert "CVE-2099-0001" in published.blocked.stderr and "blocking" in published.blocked.stderr
    assert set(published.ws.tags()) == {"vex-v1.0.0", "vex-v1.0", "vex-v1", "vex"}  # the second publish only


def test_the_vex_attestation_verifies_and_states_only_the_waiver_in_force(published, runner, settings):
    ws = published.ws
    (statement,) = cosign_attestations(runner, settings, "openvex", ws.ref(published.platform))
    vex = statement["predicate"]
    assert vex["@context"] == "https://openvex.dev/ns/v0.2.0"
    (only,) = vex["statements"]  # the expired waiver is not stated
    assert only["vulnerability"]["name"] == "CVE-2099-0001" and only["status"] == "not_affected"
    assert only["justification"] == "vulnerable_code_not_in_execute_path"
    purls = {p["@id"] for p in only["products"]}
    assert f"pkg:oci/base@{published.platform}?repository_url={ws.registry}/{ws.repository}" in purls
    assert any(published.index in p for p in purls)


def test_trivy_with_the_published_vex_suppresses_the_waived_finding_only(published, runner, settings, tmp_path):
    ws = published.ws
    (statement,) = cosign_attestations(runner, settings, "openvex", ws.ref(published.platform))
    vex_file = tmp_path / "vex.json"
    vex_file.write_text(json.dumps(statement["predicate"]))
    cache = tmp_path / "cache"
    assert trivy(runner, "image", "--download-db-only", "--db-repository", published.db, "--cache-dir", str(cache),
                 "--quiet").returncode == 0
    base = ["image", "--image-src", "remote", "--scanners", "vuln", "--format", "json", "--cache-dir", str(cache),
            "--skip-db-update", "--quiet", "--skip-version-check", "--disable-telemetry", "--show-suppressed"]
    for vex in (str(vex_file), "oci"):  # the downloaded statement, and trivy's own discovery of the attestation
        proc = trivy(runner, *base, "--vex", vex, ws.ref(published.platform))
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = json.loads(proc.stdout)["Results"]
        reported = {v["VulnerabilityID"] for r in results for v in r.get("Vulnerabilities") or []}
        suppressed = {f["Finding"]["VulnerabilityID"] for r in results
                      for f in r.get("ExperimentalModifiedFindings") or []}
        assert (reported, suppressed) == ({"CVE-2099-0002"}, {"CVE-2099-0001"}), vex


def test_conformance_verify_and_catalog_say_scanned(published, runner, settings, tmp_path):
    ws = published.ws
    (statement,) = cosign_attestations(runner, settings, CONFORMANCE_PREDICATE_TYPE, ws.ref(published.index))
    pred = statement["predicate"]
    scan = pred["vulnerabilityScan"]
    assert scan["status"] == "scanned", scan
    amd64 = scan["platforms"]["linux/amd64"]
    assert amd64["counts"] == {"CRITICAL": 1, "HIGH": 1} and amd64["db"]["digest"].startswith("sha256:")
    assert amd64["waived"] == [{"id": "CVE-2099-0001", "expires": (date.today() + timedelta(days=30)).isoformat()}]
    assert "POL-024" in pred["policy"]["rules"] and pred["policy"]["notEvaluated"] == []
    check = next(c for c in pred["platforms"]["linux/amd64"]["checks"] if c["name"] == "vulnerability-scan")
    assert check["passed"] is True
    verify = ws.factory("verify", ws.ref("vex-v1.0.0"))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "scanned" in verify.stdout and "1 critical" in verify.stdout and "CVE-2099-0001" in verify.stdout


def test_factory_scan_finds_a_cve_disclosed_after_publish(published, settings, runner, tmp_path):
    ws = published.ws
    quiet = ws.factory("scan", "vex")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    repository = published.db.split("/", 1)[1].rsplit(":", 1)[0]
    push_db(settings, repository, "db-next")  # the same tag, a day's new advisories
    proc = ws.factory("scan", "vex", "--format", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    (image,) = doc["images"]
    assert image["blocking"] == ["CVE-2099-0004"]
    assert image["platforms"][0]["new"] == ["CVE-2099-0004"]
    assert "CVE-2099-0004" in proc.stderr  # the error names it too
    assert ws.tags()["vex"] == published.index  # nothing retagged
    catalog = ws.factory("catalog", "--out", str(tmp_path / "site"))
    assert catalog.returncode == 0, catalog.stderr[-3000:]
    entry = json.loads((tmp_path / "site" / "catalog.json").read_text())
    text = json.dumps(entry)
    assert "CVE-2099-0004" in text and "2 critical" in text
    plan = ws.factory("plan", "--vulnerable-from", str(_scan_report(ws, tmp_path)), "--format", "json")
    assert plan.returncode == 0, plan.stderr[-2000:]
    (planned,) = json.loads(plan.stdout)
    assert planned["build"] and "vulnerable" in planned["reasons"]
    # Each scan replaced the one before (cosign --replace): the publish's and three rescans leave one.
    (newest,) = cosign_attestations(runner, settings, "vuln", ws.ref(published.platform))
    assert newest["predicate"]["scanner"]["result"]["blocking"][0]["id"] == "CVE-2099-0004"


def _scan_report(ws: Workspace, tmp_path: Path) -> Path:
    report = tmp_path / "scan.json"
    ws.factory("scan", "vex", "--report", str(report))
    return report


# --- no database: too old, or out of reach ---------------------------------------------------------


def test_an_old_database_is_unavailable_and_fails_per_policy(published, settings):
    ws = published.ws
    old = push_db(settings, f"t{uuid.uuid4().hex[:8]}/trivy-db", age=timedelta(hours=72))
    proc = ws.factory("scan", "vex", env={"FACTORY_SCANNER_DB_REPOSITORY": old})
    assert proc.returncode == 1
    assert "older than scanner.db_max_age_hours (48 h)" in proc.stdout + proc.stderr
    assert "NOT scanned" in proc.stdout


def test_an_unreachable_database_publishes_only_with_warn_and_says_not_scanned(settings, seeded, seeded_debian, runner,
                                                                                tmp_path):
    ws = Workspace.create(tmp_path / "repo", registry=settings.registry, state_dir=settings.state_dir,
                          extra_config={"helper_image": seeded_debian.ref,
                                        "scanner": {"db_repository": "127.0.0.1:1/security/trivy-db:2"},
                                        "registry_client": {"retries": 0, "timeout_seconds": 5}})
    ws.add_manifest(manifest_on(seeded["busybox"], "unscanned", platforms=["linux/amd64"]))
    assert ws.factory("render").returncode == 0
    ws.commit("render")
    failed = ws.factory("publish", "unscanned", env={"FACTORY_SCANNER_DB_UNAVAILABLE": "fail"})
    assert failed.returncode == 1 and "NOT scanned" in failed.stderr and "127.0.0.1:1" in failed.stderr
    assert ws.tags() == {}
    warned = ws.factory("publish", "unscanned")  # the workspace's policy: warn
    assert warned.returncode == 0, warned.stderr[-3000:]
    assert "NOT scanned" in warned.stderr
    index = ws.digest("unscanned-v1.0.0")
    (statement,) = cosign_attestations(runner, settings, CONFORMANCE_PREDICATE_TYPE, ws.ref(index))
    pred = statement["predicate"]
    assert pred["vulnerabilityScan"]["status"] == "not scanned"
    assert "127.0.0.1:1" in pred["vulnerabilityScan"]["reason"]
    assert "POL-024" not in pred["policy"]["rules"]
    assert pred["policy"]["notEvaluated"][0]["rule"] == "POL-024"
    assert not any(c["name"] == "vulnerability-scan" for c in pred["platforms"]["linux/amd64"]["checks"])
    verify = ws.factory("verify", ws.ref("unscanned-v1.0.0"))
    assert "NOT scanned" in verify.stdout
