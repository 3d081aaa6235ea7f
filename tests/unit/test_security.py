"""factory.security: installed packages from SBOMs, matching against small hand-made archive indexes,
and the report's JSON and table output. Pure: no network, no processes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from factory.archive.types import ArchiveIndex, Package, Suite
from factory.core.errors import EXIT_ENVIRONMENT, EXIT_FIXES_PENDING, SbomError
from factory.security.fixes import Fix, pending_fixes
from factory.security.installed import InstalledPackage, full_version, installed_packages
from factory.security.report import ERROR, FIXABLE, UPSTREAM_MUST_REBUILD, FixesReport, FixesRun, SuiteRead

DATA = Path(__file__).resolve().parents[1] / "data" / "sbom"
DATE = datetime(2026, 11, 30, tzinfo=UTC)
MIRROR = "http://deb.debian.org/debian"
RELEASE = Suite("debian", "bookworm", "bookworm", "release", DATE, MIRROR)
UPDATES = Suite("debian", "bookworm", "bookworm-updates", "updates", DATE, MIRROR)
SECURITY = Suite("debian", "bookworm", "bookworm-security", "security", DATE,
                 "http://security.debian.org/debian-security")


def index(*entries: tuple[str, str, str, Suite], arch: str = "amd64") -> ArchiveIndex:
    """An amd64 bookworm index of (name, version, arch, suite) entries."""
    packages = [Package(name, version, a, name, suite) for name, version, a, suite in entries]
    return ArchiveIndex.of("debian", "bookworm", arch, (RELEASE, UPDATES, SECURITY), packages)


def deb(name: str, version: str, arch: str = "amd64", *, epoch: str | None = None, source: str = "") -> dict:
    """A trivy-shaped CycloneDX component."""
    qualifiers = f"arch={arch}&distro=debian-12.12" + (f"&epoch={epoch}" if epoch else "")
    component = {"type": "library", "name": name, "version": f"{epoch}:{version}" if epoch else version,
                 "purl": f"pkg:deb/debian/{name}@{version.replace('+', '%2B')}?{qualifiers}"}
    if source:
        component["properties"] = [{"name": "aquasecurity:trivy:SrcName", "value": source}]
    return component


def bom(*components: dict) -> dict:
    return {"bomFormat": "CycloneDX", "specVersion": "1.6",
            "components": [{"type": "operating-system", "name": "debian", "version": "12.12"}, *components]}


# --- installed packages ----------------------------------------------------------------------------


def test_trivy_sbom_packages_carry_epoch_arch_and_source():
    document = json.loads((DATA / "trivy-debian-bookworm-arm64.cdx.json").read_text())
    installed = {p.name: p for p in installed_packages(document)}
    assert installed["bsdutils"] == InstalledPackage(
        "bsdutils", "1:2.38.1-5+deb12u3", "arm64", "util-linux", "deb",
        "pkg:deb/debian/bsdutils@2.38.1-5%2Bdeb12u3?arch=arm64&distro=debian-12.15&epoch=1")
    assert installed["adduser"].arch == "all"
    # trivy's own component version (epoch included) is what the purl gives back, for every package
    versions = {c["name"]: c["version"] for c in document["components"] if c.get("purl", "").startswith("pkg:deb/")}
    assert {n: p.version for n, p in installed.items()} == versions


def test_only_the_package_managers_packages_count():
    document = json.loads((DATA / "mixed-shapes.cdx.json").read_text())
    assert [(p.name, p.ecosystem) for p in installed_packages(document)] == [
        ("libgcc-s1", "deb"), ("python3-six", "deb")]


def test_syft_purls_carry_the_epoch_in_the_version_and_the_source_as_upstream():
    document = bom({"type": "library", "name": "bsdutils", "version": "1:2.38.1-5",
                    "purl": "pkg:deb/debian/bsdutils@1%3A2.38.1-5?arch=amd64&upstream=util-linux%402.38.1-5"},
                   {"type": "library", "name": "musl", "version": "1.2.5-r0",
                    "purl": "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64&upstream=musl"})
    found = {p.name: p for p in installed_packages(document)}
    assert (found["bsdutils"].version, found["bsdutils"].source) == ("1:2.38.1-5", "util-linux")
    assert (found["musl"].ecosystem, found["musl"].arch, found["musl"].source) == ("apk", "x86_64", "musl")


def test_a_package_without_source_is_its_own_source():
    assert installed_packages(bom(deb("tzdata", "2026b-0+deb12u1", "all")))[0].source == "tzdata"


@pytest.mark.parametrize("purl", ["pkg:deb/debian/broken", "pkg:deb/debian/noversion?arch=amd64"])
def test_a_deb_purl_that_cannot_be_read_is_an_error_not_a_dropped_package(purl):
    with pytest.raises(SbomError, match="purl"):
        installed_packages(bom({"type": "library", "name": "x", "purl": purl}))


@pytest.mark.parametrize(("version", "epoch", "full"), [
    ("2.38.1-5", "1", "1:2.38.1-5"), ("2.38.1-5", None, "2.38.1-5"), ("2.38.1-5", "0", "2.38.1-5"),
    ("1:2.38.1-5", "1", "1:2.38.1-5")])
def test_full_version(version, epoch, full):
    assert full_version(version, epoch) == full


# --- matching ------------------------------------------------------------------------------------


def installed(*components: dict) -> tuple[InstalledPackage, ...]:
    return installed_packages(bom(*components))


def test_security_suite_wins_the_attribution_update_suite_otherwise():
    idx = index(("libpam0g", "1.5.2-6+deb12u1", "amd64", RELEASE), ("libpam0g", "1.5.2-6+deb12u2", "amd64", SECURITY),
                ("tzdata", "2026b-0+deb12u1", "all", RELEASE), ("tzdata", "2026f-0+deb12u1", "all", UPDATES),
                # the same new version in -updates and -security (a point release took the fix in): security
                ("libzstd1", "1.5.4+dfsg2-5", "amd64", RELEASE),
                ("libzstd1", "1.5.4+dfsg2-5+deb12u1", "amd64", UPDATES),
                ("libzstd1", "1.5.4+dfsg2-5+deb12u1", "amd64", SECURITY),
                # a newer point release of the release suite itself
                ("base-files", "12.4+deb12u12", "amd64", RELEASE))
    matched = pending_fixes(installed(deb("libpam0g", "1.5.2-6+deb12u1", source="pam"),
                                      deb("tzdata", "2026b-0+deb12u1", "all"),
                                      deb("libzstd1", "1.5.4+dfsg2-5"), deb("base-files", "12.4+deb12u11")), idx)
    assert matched.fixes == (
        Fix("base-files", "amd64", "12.4+deb12u11", "12.4+deb12u12", "bookworm", "update", "base-files"),
        Fix("libpam0g", "amd64", "1.5.2-6+deb12u1", "1.5.2-6+deb12u2", "bookworm-security", "security", "pam"),
        Fix("libzstd1", "amd64", "1.5.4+dfsg2-5", "1.5.4+dfsg2-5+deb12u1", "bookworm-security", "security",
            "libzstd1"),
        Fix("tzdata", "all", "2026b-0+deb12u1", "2026f-0+deb12u1", "bookworm-updates", "update", "tzdata"),
    )
    assert [f.package for f in matched.security] == ["libpam0g", "libzstd1"]
    assert [f.package for f in matched.updates] == ["base-files", "tzdata"]
    assert matched.checked == 4 and matched.not_in_archive == ()


def test_the_candidate_is_the_highest_version_not_the_security_one():
    """A security fix superseded by a newer -updates version: apt installs the newer one, from -updates."""
    idx = index(("apt", "2.6.1", "amd64", RELEASE), ("apt", "2.6.2", "amd64", SECURITY),
                ("apt", "2.6.3", "amd64", UPDATES))
    (fix,) = pending_fixes(installed(deb("apt", "2.6.1")), idx).fixes
    assert (fix.candidate, fix.suite, fix.kind) == ("2.6.3", "bookworm-updates", "update")


def test_epochs_order_versions():
    idx = index(("bsdutils", "1:2.38.1-5+deb12u4", "amd64", SECURITY), ("mawk", "1.3.4.20250131-1", "amd64", UPDATES))
    matched = pending_fixes(installed(deb("bsdutils", "2.38.1-5+deb12u3", epoch="1"),
                                      deb("mawk", "1.3.4.20200120-3.1", epoch="1")), idx)
    # 1:2.38.1-5+deb12u4 > 1:2.38.1-5+deb12u3; 1.3.4.20250131-1 (epoch 0) < 1:1.3.4.20200120-3.1
    assert [(f.package, f.installed, f.candidate) for f in matched.fixes] == [
        ("bsdutils", "1:2.38.1-5+deb12u3", "1:2.38.1-5+deb12u4")]


def test_arch_all_packages_are_matched_on_every_architecture():
    idx = index(("adduser", "3.134", "all", RELEASE), ("adduser", "3.134+deb12u1", "all", SECURITY), arch="arm64")
    (fix,) = pending_fixes(installed(deb("adduser", "3.134", "all")), idx).fixes
    assert (fix.arch, fix.kind) == ("all", "security")


def test_absent_newer_and_foreign_packages_are_no_fixes():
    idx = index(("libc6", "2.36-9+deb12u10", "amd64", SECURITY))
    matched = pending_fixes(installed(deb("libc6", "2.36-9+deb12u11"),  # newer than the archive: apt never downgrades
                                      deb("org-tool", "1.0"),  # built locally
                                      deb("libc6", "2.36-9+deb12u1", "i386")), idx)  # multiarch, another index
    assert matched.fixes == ()
    assert matched.not_in_archive == ("org-tool",)
    assert matched.foreign == ("libc6:i386",)
    assert matched.checked == 2


# --- reports and the run's outcome ----------------------------------------------------------------


SEC = Fix("libpam0g", "amd64", "1.5.2-6+deb12u1", "1.5.2-6+deb12u2", "bookworm-security", "security", "pam")
UPD = Fix("tzdata", "all", "2026b-0+deb12u1", "2026f-0+deb12u1", "bookworm-updates", "update", "tzdata")


def report(status=FIXABLE, fixes=(SEC, UPD), platform="linux/amd64", **kw) -> FixesReport:
    return FixesReport("deb", "1.0.3", "deb-v1.0.3", "sha256:" + "a" * 64, platform, "sha256:" + "b" * 64, status,
                       distro="debian", codename="bookworm", packages=96, fixes=fixes,
                       suites=(SuiteRead.of("bookworm-security", DATE, SECURITY.mirror),), **kw)


def test_security_fixes_pending_exit_4_and_name_the_image():
    run = FixesRun((report(), report(platform="linux/arm64", fixes=(UPD,))), unpublished=("new",))
    error = run.outcome()
    assert error is not None and error.exit_code == EXIT_FIXES_PENDING == 4
    assert "1 security fix(es) pending in deb" in str(error)


def test_updates_only_exit_0_with_a_note():
    run = FixesRun((report(fixes=(UPD,)),))
    assert run.outcome() is None
    assert run.note() == "no security fix pending; 1 other update(s) pending (not security fixes: exit 0)"


def test_no_shell_fixes_are_for_the_upstream_and_exit_0():
    run = FixesRun((report(UPSTREAM_MUST_REBUILD, fixes=(SEC,)),))
    assert run.outcome() is None
    assert "1 fix(es) only a new upstream image can bring" in run.note()
    assert "upstream must rebuild" in run.render("table").splitlines()[0]


def test_a_failed_check_is_exit_2_and_never_no_fixes():
    failed = report(ERROR, fixes=(), error="no verified cyclonedx attestation on ...@sha256:bbb: no signatures")
    run = FixesRun((report(), failed))
    error = run.outcome()
    assert error is not None and error.exit_code == EXIT_ENVIRONMENT
    assert "deb 1.0.3 linux/amd64: no verified cyclonedx attestation" in str(error)
    assert "no security fix pending" not in run.note() and "1 check(s) failed" in run.note()
    assert "no security fix pending" not in FixesRun((failed,)).note()


def test_json_output():
    doc = json.loads(FixesRun((report(),), unpublished=("new",)).render("json"))
    (r,) = doc["reports"]
    assert r["image"] == "deb" and r["platform"] == "linux/amd64" and r["status"] == "fixable"
    assert r["fixes"][0] == {"package": "libpam0g", "arch": "amd64", "installed": "1.5.2-6+deb12u1",
                             "candidate": "1.5.2-6+deb12u2", "suite": "bookworm-security", "kind": "security",
                             "source": "pam"}
    assert r["suites"] == [{"name": "bookworm-security", "date": "2026-11-30T00:00:00+00:00",
                            "mirror": "http://security.debian.org/debian-security"}]
    assert doc["unpublished"] == ["new"]
    assert doc["summary"] == {"security": 1, "updates": 1, "upstream_must_rebuild": 0, "errors": 0,
                              "note": "1 security fix(es) pending; 1 other update(s) pending"}


def test_table_output():
    text = FixesRun((report(), report(ERROR, fixes=(), platform="linux/arm64", error="archive unreachable")),
                    unpublished=("new",)).render("table")
    assert text.splitlines() == [
        "deb 1.0.3 linux/amd64: 1 security, 1 other of 96 packages (debian bookworm)",
        "  security  libpam0g  1.5.2-6+deb12u1 -> 1.5.2-6+deb12u2  bookworm-security",
        "  update    tzdata    2026b-0+deb12u1 -> 2026f-0+deb12u1  bookworm-updates",
        "deb 1.0.3 linux/arm64: ERROR archive unreachable",
        "new: not published yet",
        "1 check(s) failed: their fixes are unknown; 1 security fix(es) pending; 1 other update(s) pending",
    ]
