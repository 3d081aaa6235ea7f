"""SBOM, license policy and vulnerability gate on real 2-platform OCI layouts, with the real trivy.

Nothing is mocked: buildx builds the layout from the seeded upstreams in the local registry, trivy
reads it. No vulnerability database can be downloaded here, so the scanner must report that (and
the gate must follow its configured mode) rather than pretend to have scanned. The DB-present path
runs the same real trivy against a tiny database of invented advisories (tests/data/trivy-db), published
to the local registry as trivy's database is published and fetched from there.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from factory.build import vulndb
from factory.build.sbom import (
    TrivySbom,
    license_findings,
    operating_system,
    packages,
    platform_view,
)
from factory.build.scan import (
    DB_UNAVAILABLE,
    NOT_SCANNED,
    SCANNED,
    TrivyScanner,
    Vulnerability,
    gate,
    load_ignores,
)
from factory.core.errors import CommandError
from factory.oci.layout import OciLayout
from factory.oci.registry import Registry

FIXTURE_DB = Path(__file__).resolve().parents[1] / "data" / "trivy-db" / "db"
PLATFORMS = ("linux/amd64", "linux/arm64")
ARCH = {"linux/amd64": "amd64", "linux/arm64": "arm64"}


def build_layout(docker, upstream_ref: str, workdir: Path) -> OciLayout:
    """FROM the upstream plus one COPY (no RUN: nothing runs under QEMU), as an extracted OCI layout."""
    ctx = workdir / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello\n")
    (ctx / "Dockerfile").write_text(f"FROM {upstream_ref}\nCOPY hello.txt /hello.txt\n")
    archive = workdir / "image.tar"
    docker.build(ctx, platforms=list(PLATFORMS),
                 output={"type": "oci", "dest": str(archive), "rewrite-timestamp": "true"},
                 build_args={"SOURCE_DATE_EPOCH": "1704067200"})
    return OciLayout.from_archive(archive, workdir / "layout")


@pytest.fixture(scope="module")
def debian_layout(seeded_debian, docker, tmp_path_factory) -> OciLayout:
    return build_layout(docker, f"{seeded_debian.image}@{seeded_debian.digest}", tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="module")
def busybox_layout(seeded, docker, tmp_path_factory) -> OciLayout:
    bb = seeded["busybox"]
    return build_layout(docker, f"{bb.image}@{bb.digest}", tmp_path_factory.mktemp("bb"))


@pytest.fixture(scope="module")
def trivy_cache(settings) -> Path:
    """The configured cache (trivy keeps its layer analysis there between runs)."""
    return settings.state_dir / "cache" / "trivy"


def test_debian_sbom_per_platform(debian_layout, runner, trivy_cache, record_property):
    assert debian_layout.platforms == PLATFORMS
    generator = TrivySbom(runner, trivy_cache)
    by_platform = {}
    for platform in PLATFORMS:
        start = time.monotonic()
        sbom = generator.generate(debian_layout.root, platform)
        seconds = round(time.monotonic() - start, 2)
        record_property(f"sbom_seconds_{platform}", seconds)
        print(f"\nSBOM {platform}: {seconds}s, {len(sbom['components'])} components")
        by_platform[platform] = sbom

        assert sbom["bomFormat"] == "CycloneDX"
        assert operating_system(sbom).startswith("debian 12")
        pkgs = packages(sbom)
        assert len(pkgs) > 50  # minbase: ~90 dpkg packages
        assert pkgs["dpkg"].version and pkgs["base-files"].version.startswith("12.")
        assert pkgs["dpkg"].type == "deb" and pkgs["dpkg"].purl.startswith("pkg:deb/debian/dpkg@")
        assert "GPL-2.0-or-later" in pkgs["base-files"].licenses
        # the SBOM describes *this* platform's image: trivy alone would read amd64 both times
        arch_specific = [p for p in pkgs.values() if "arch=all" not in p.purl]
        assert arch_specific and all(f"arch={ARCH[platform]}" in p.purl for p in arch_specific)
        # and the image that this platform's manifest points at (trivy's ImageID is the config digest)
        image_id = next(prop["value"] for prop in sbom["metadata"]["component"]["properties"]
                        if prop["name"] == "aquasecurity:trivy:ImageID")
        assert image_id == debian_layout.image(platform).config.digest

    amd, arm = (packages(by_platform[p]) for p in PLATFORMS)
    assert set(amd) == set(arm)  # same package set, different architectures
    assert amd["libc6"].purl != arm["libc6"].purl


def test_debian_license_policy(debian_layout, runner, trivy_cache, settings):
    sbom = TrivySbom(runner, trivy_cache).generate(debian_layout.root, "linux/arm64")
    policy = settings.policy
    findings = license_findings(sbom, policy.license_deny, policy.license_warn)
    assert not [f for f in findings if f.severity == "error"]  # nothing AGPL/SSPL in Debian minbase
    warned = {f.package: f for f in findings}
    assert {"dpkg", "base-files", "bash"} <= set(warned)  # GPL: warnings in a non-copyleft image
    assert "GPL-2.0-or-later" in warned["base-files"].licenses
    assert license_findings(sbom, policy.license_deny, policy.license_warn, copyleft_approved=True) == []


def test_the_view_is_what_trivy_needs(debian_layout, runner, trivy_cache):
    """The reason for platform_view: given the whole layout, trivy ignores --platform."""
    arm_config = debian_layout.image("linux/arm64").config.digest
    proc = runner.run(["trivy", "image", "--input", str(debian_layout.root), "--platform", "linux/arm64",
                       "--format", "cyclonedx", "--cache-dir", str(trivy_cache), "--offline-scan", "--quiet"])
    assert arm_config not in proc.stdout  # it read another platform (the first manifest)
    with platform_view(debian_layout.root, "linux/arm64") as view:
        proc = runner.run(TrivySbom(runner, trivy_cache).argv(view))
    assert arm_config in proc.stdout


def test_busybox_sbom_has_no_package_database(busybox_layout, runner, trivy_cache):
    """busybox-static has no dpkg/apk database: an honest, empty package list, not an error."""
    for platform in PLATFORMS:
        sbom = TrivySbom(runner, trivy_cache).generate(busybox_layout.root, platform)
        assert sbom["bomFormat"] == "CycloneDX" and packages(sbom) == {}


def test_scanner_reports_missing_database_and_the_gate_follows_config(busybox_layout, runner, trivy_cache):
    now = datetime.now(UTC)
    assert not vulndb.status(trivy_cache, max_age=timedelta(hours=48), now=now).available, \
        "a trivy DB appeared: this test assumes none"
    report = TrivyScanner(runner, trivy_cache).scan(busybox_layout.root, "linux/arm64")
    assert report.db_available is False and report.vulnerabilities == ()
    assert str(trivy_cache / "db" / "trivy.db") in report.note

    failed = gate(report, image="busybox", fail_on=["CRITICAL"], ignores=[], db_unavailable="fail")
    assert failed.passed is False and DB_UNAVAILABLE in failed.messages[0]
    assert failed.as_dict()["status"] == NOT_SCANNED and failed.as_dict()["reason"] == report.note
    warned = gate(report, image="busybox", fail_on=["CRITICAL"], ignores=[], db_unavailable="warn")
    assert warned.passed is True and warned.messages[0].startswith("WARNING: " + DB_UNAVAILABLE)


def test_trivy_itself_cannot_scan_without_the_database(busybox_layout, runner, tmp_path):
    """Why the scanner checks first: asked to scan offline without a DB, trivy fails."""
    with platform_view(busybox_layout.root, "linux/amd64") as view, pytest.raises(CommandError) as e:
        runner.run(TrivyScanner(runner, tmp_path).argv(view))
    assert e.value.returncode != 0


def test_scanner_with_a_database_finds_and_gates(debian_layout, runner, settings, unique_repo, tmp_path):
    """The DB-present path, with real trivy and a tiny DB of two invented advisories (see
    tests/data/trivy-db/make_db.go): CRITICAL CVE-2099-0001 in dpkg, HIGH CVE-2099-0002 in base-files.
    The database is published to the local registry dated now (the fixture's own date is older than
    the age limit), and the scanner fetches it from there."""
    built = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    with Registry(settings.registry, insecure=True) as registry:
        digest = vulndb.push(registry, unique_repo, "2", FIXTURE_DB, updated_at=built)
    source = f"{settings.registry}/{unique_repo}:2"
    scanner = TrivyScanner(runner, tmp_path / "trivy-cache", source=source,
                           registry_for=lambda host: Registry(host, insecure=True))
    for platform in PLATFORMS:
        report = scanner.scan(debian_layout.root, platform)
        assert report.db_available and report.scanner_version not in ("", "unknown")
        assert report.db == {"source": source, "digest": digest, "updated_at": built.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "age_hours": report.db["age_hours"]} and 0.9 < report.db["age_hours"] < 1.5
        found = {v.id: v for v in report.vulnerabilities}
        assert set(found) == {"CVE-2099-0001", "CVE-2099-0002"}
        assert found["CVE-2099-0001"] == Vulnerability(
            "CVE-2099-0001", "dpkg", "1.21.23", "9.9.9", "CRITICAL",
            "factory test fixture: invented critical flaw in dpkg")
        assert found["CVE-2099-0002"].package == "base-files" and found["CVE-2099-0002"].fixed_version == ""

        blocked = gate(report, image="debian-test", fail_on=["CRITICAL"], ignores=[], db_unavailable="fail")
        assert not blocked.passed and [v.id for v in blocked.blocking] == ["CVE-2099-0001"]
        assert blocked.counts == {"CRITICAL": 1, "HIGH": 1} and blocked.status == SCANNED

    ignore_file = tmp_path / "vuln-ignore.yaml"
    ignore_file.write_text("ignores:\n  - id: CVE-2099-0001\n    reason: invented advisory of the test database\n"
                           "    expires: 2099-12-31\n    images: [debian-test]\n")
    ignores = load_ignores(ignore_file, date.today())
    accepted = gate(report, image="debian-test", fail_on=["CRITICAL"], ignores=ignores, db_unavailable="fail")
    assert accepted.passed and accepted.ignored[0][0].id == "CVE-2099-0001"
    assert any(m.startswith("ignored CRITICAL CVE-2099-0001 in dpkg") for m in accepted.messages)
    # the ignore names one image; another image with the same finding still fails
    assert not gate(report, image="other", fail_on=["CRITICAL"], ignores=ignores, db_unavailable="fail").passed
    # HIGH blocks only when configured to
    assert not gate(report, image="debian-test", fail_on=["CRITICAL", "HIGH"], ignores=ignores,
                    db_unavailable="fail").passed
