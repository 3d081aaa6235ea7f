"""Security fixes in publish: the base image's package database, the build arguments that apply its fixes, the
gate after the build under each policy, and the record in the conformance and provenance predicates."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import re
import tarfile
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from factory.archive.types import ArchiveIndex, Package, Suite
from factory.build.gates import GateReport
from factory.core.errors import LayoutError
from factory.publish import inputs
from factory.security import gate
from factory.security.fixes import Fix
from factory.security.installed import from_apk_installed, from_dpkg_status, installed_packages
from factory.security.record import SecurityFixes, applied, resolved_dependencies
from factory.spec import config
from factory.trust import attest
from tests.unit.test_policy import make_manifest

DATE = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RELEASE = Suite("debian", "bookworm", "bookworm", "release", DATE, "http://deb.debian.org/debian")
UPDATES = Suite("debian", "bookworm", "bookworm-updates", "updates", DATE, "http://deb.debian.org/debian")
SECURITY = Suite("debian", "bookworm", "bookworm-security", "security", None, "http://security.debian.org")
PLATFORMS = ("linux/amd64", "linux/arm64")

STATUS = b"""\
Package: libpam0g
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: pam (1.5.2-6)
Version: 1.5.2-6
Description: Pluggable Authentication Modules library
 A long description,
 on continuation lines.

Package: bsdutils
Essential: yes
Status: install ok installed
Architecture: amd64
Source: util-linux (2.38.1-5)
Version: 1:2.38.1-5+b1

Package: tzdata
Status: hold ok installed
Architecture: all
Version: 2026b-0+deb12u1

Package: libold1
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: halfway
Status: install reinstreq half-installed
Architecture: amd64
Version: 2.0-1

Package: gone
Status: purge ok not-installed
Architecture: amd64
"""

APK_INSTALLED = b"""\
C:Q1abc=
P:musl
V:1.2.5-r0
A:x86_64
S:407645
o:musl
F:lib
R:ld-musl-x86_64.so.1

C:Q1def=
P:ca-certificates-bundle
V:20240705-r0
A:x86_64
o:ca-certificates
"""


# --- the package databases -------------------------------------------------------------------------


def test_dpkg_status_installed_packages_with_epochs_arch_all_and_sources():
    found = {p.name: p for p in from_dpkg_status(STATUS)}
    assert sorted(found) == ["bsdutils", "libpam0g", "tzdata"]  # config-files, half-installed, purged: not installed
    assert found["bsdutils"].version == "1:2.38.1-5+b1"  # the epoch is part of the version dpkg compares
    assert found["bsdutils"].source == "util-linux"  # "Source: util-linux (2.38.1-5)"
    assert (found["tzdata"].arch, found["tzdata"].source) == ("all", "tzdata")  # held: still installed
    assert found["libpam0g"].purl == "pkg:deb/debian/libpam0g@1.5.2-6?arch=amd64"
    assert {p.ecosystem for p in found.values()} == {"deb"}


def test_dpkg_status_purls_name_the_distro():
    [pkg] = [p for p in from_dpkg_status(STATUS, "ubuntu") if p.name == "libpam0g"]
    assert pkg.purl.startswith("pkg:ubuntu/") is False and pkg.purl.startswith("pkg:deb/ubuntu/libpam0g@")


def test_an_installed_dpkg_package_without_a_version_is_an_error_not_a_dropped_package():
    with pytest.raises(LayoutError, match="'broken' has no Version"):
        from_dpkg_status(b"Package: broken\nStatus: install ok installed\nArchitecture: amd64\n")


def test_apk_installed_database():
    found = {p.name: p for p in from_apk_installed(APK_INSTALLED)}
    assert sorted(found) == ["ca-certificates-bundle", "musl"]
    bundle = found["ca-certificates-bundle"]
    assert (bundle.version, bundle.arch, bundle.source, bundle.ecosystem) == (
        "20240705-r0", "x86_64", "ca-certificates", "apk")
    assert found["musl"].purl == "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64"
    with pytest.raises(LayoutError, match="no V: version"):
        from_apk_installed(b"P:musl\nA:x86_64\n")


# --- SECURITY_FIXES and ORG_LAYER ---------------------------------------------------------------------


def fix(package: str, installed: str = "1", candidate: str = "2", *, kind: str = "security", arch: str = "amd64",
        suite: str = "bookworm-security") -> Fix:
    return Fix(package, arch, installed, candidate, suite, kind, package)  # type: ignore[arg-type]


def test_the_union_of_the_platforms_sorted_and_org_layer_run_for_a_hardening_only_image():
    m = make_manifest(packages=())
    args = inputs.fix_args(m, {"linux/amd64": (fix("tzdata"), fix("libpam0g")),
                               "linux/arm64": (fix("tzdata"), fix("libzstd1"), fix("apt", kind="update"))}, "s1")
    assert args == {"ARCHIVE_SUITES": "configured", "ARCHIVE_STATE": "s1", "SECURITY_FIXES": "libpam0g libzstd1 tzdata",
                    "ORG_LAYER": "run"}


def test_no_fixes_leave_org_layer_unset_and_an_image_with_packages_never_sets_it():
    assert inputs.fix_args(make_manifest(packages=()), {"linux/amd64": ()}, "s1") == {
        "ARCHIVE_SUITES": "configured", "ARCHIVE_STATE": "s1", "SECURITY_FIXES": ""}
    assert inputs.fix_args(make_manifest(packages=()), {"linux/amd64": (fix("apt", kind="update"),)}, "s1") == {
        "ARCHIVE_SUITES": "configured", "ARCHIVE_STATE": "s1", "SECURITY_FIXES": ""}
    assert inputs.fix_args(make_manifest(packages=("curl",)), {"linux/amd64": (fix("tzdata"),)}, "s1") == {
        "ARCHIVE_SUITES": "configured", "ARCHIVE_STATE": "s1", "SECURITY_FIXES": "tzdata"}


def test_the_archive_state_changes_when_a_suite_is_republished_and_only_then():
    read = {("http://deb.debian.org/debian", "bookworm", "2026-11-08T10:00:00+00:00"),
            ("http://security.debian.org/debian-security", "bookworm-security", "2026-11-30T20:00:00+00:00")}
    again = set(read)
    republished = (read - {max(read)}) | {("http://security.debian.org/debian-security", "bookworm-security",
                                           "2026-12-01T08:00:00+00:00")}
    assert inputs.archive_state(read) == inputs.archive_state(sorted(again, reverse=True))
    assert inputs.archive_state(read) != inputs.archive_state(republished)


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(buf.getvalue(), mtime=0)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """A base image index with one manifest per platform, each one gzip layer holding ``files``."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.opened: list[str] = []
        children = []
        for platform in PLATFORMS:
            layer = _tar_gz({**files, "etc/hostname": platform.encode()})
            self.blobs[_digest(layer)] = layer
            raw = json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:" + "0" * 64, "size": 2},
                              "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                          "digest": _digest(layer), "size": len(layer)}]}).encode()
            self.manifests[_digest(raw)] = raw
            os_, arch = platform.split("/")
            children.append({"digest": _digest(raw), "platform": {"os": os_, "architecture": arch}})
        self.index = json.dumps({"schemaVersion": 2, "manifests": children}).encode()
        self.manifests[_digest(self.index)] = self.index

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        raw = self.manifests[reference]
        kind = "index" if b'"manifests"' in raw else "manifest"
        return raw, f"application/vnd.oci.image.{kind}.v1+json", reference

    def layer_opener(self, repo: str):
        @contextmanager
        def opener(layer):
            self.opened.append(layer.digest)
            yield io.BytesIO(self.blobs[layer.digest])
        return opener


class FakeArchives:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str]] = []

    def index_for(self, distro: str, codename: str, platform: str) -> ArchiveIndex:
        self.asked.append((distro, codename, platform))
        arch = platform.split("/")[1]
        packages = [Package("libpam0g", "1.5.2-6", arch, "pam", RELEASE),
                    Package("libpam0g", "1.5.2-6+deb12u1", arch, "pam", SECURITY),
                    Package("bsdutils", "1:2.38.1-5+b1", arch, "util-linux", RELEASE),
                    Package("tzdata", "2026f-0+deb12u1", "all", "tzdata", SECURITY),
                    Package("apt", "2.6.2", arch, "apt", UPDATES)]
        return ArchiveIndex.of("debian", codename, arch, (RELEASE, UPDATES, SECURITY), packages)


@pytest.fixture
def settings(tmp_path: Path) -> config.Settings:
    path = tmp_path / "factory.yaml"
    path.write_text("policy: {security_fixes: require}\n")
    return config.load(path, environ={})


def base_ref(registry: FakeRegistry) -> tuple[str, str]:
    digest = _digest(registry.index)
    return f"127.0.0.1:5000/upstream/debian:12@{digest}", digest


def test_the_base_package_database_read_from_its_layers_gives_the_fixes_of_each_platform(settings):
    registry, archives = FakeRegistry({"var/lib/dpkg/status": STATUS}), FakeArchives()
    ref, digest = base_ref(registry)
    found = inputs.base_fixes(make_manifest(packages=()), settings, lambda host: registry, ref, digest,  # type: ignore
                              archives)
    assert found.args == {"ARCHIVE_SUITES": "configured", "ARCHIVE_STATE": found.args["ARCHIVE_STATE"],
                          "SECURITY_FIXES": "libpam0g tzdata", "ORG_LAYER": "run"}
    assert re.fullmatch(r"[0-9a-f]{16}", found.args["ARCHIVE_STATE"])
    # The same status file on both: its amd64 libpam0g is a foreign package on arm64, not matched there.
    assert {p: [f.package for f in fixes] for p, fixes in found.fixes.items()} == {
        "linux/amd64": ["libpam0g", "tzdata"], "linux/arm64": ["tzdata"]}
    assert archives.asked == [("debian", "bookworm", "linux/amd64"), ("debian", "bookworm", "linux/arm64")]
    assert len(registry.opened) == 2  # one layer per platform, each read once


def test_a_base_without_a_package_database_costs_no_archive_request(settings):
    registry, archives = FakeRegistry({"bin/busybox": b"\x7fELF"}), FakeArchives()
    ref, digest = base_ref(registry)
    found = inputs.base_fixes(make_manifest(packages=()), settings, lambda host: registry, ref, digest,  # type: ignore
                              archives)
    assert (found.fixes, found.args) == ({}, {"ARCHIVE_SUITES": "configured", "ARCHIVE_STATE": inputs.archive_state(()),
                                             "SECURITY_FIXES": ""})
    assert archives.asked == []


def test_policy_off_and_no_shell_images_read_nothing(settings):
    registry, archives = FakeRegistry({"var/lib/dpkg/status": STATUS}), FakeArchives()
    ref, digest = base_ref(registry)
    off = dataclasses.replace(settings, policy=dataclasses.replace(settings.policy, security_fixes="off"))
    for m, s in ((make_manifest(packages=()), off), (make_manifest(distro="distroless", packages=()), settings)):
        assert inputs.base_fixes(m, s, lambda host: registry, ref, digest, archives) == inputs.BaseFixes()  # type: ignore
    assert (archives.asked, registry.opened) == ([], [])


# --- the gate -----------------------------------------------------------------------------------------


def component(name: str, version: str, arch: str = "amd64") -> dict:
    return {"type": "library", "name": name, "version": version,
            "purl": f"pkg:deb/debian/{name}@{version.replace('+', '%2B')}?arch={arch}"}


def write_sboms(tmp_path: Path, *components: dict) -> GateReport:
    report = GateReport()
    for platform in PLATFORMS:
        arch = platform.split("/")[1]
        doc = {"bomFormat": "CycloneDX", "components": [
            {"type": "operating-system", "name": "debian", "version": "12.12"},
            *({**c, "purl": c["purl"].replace("arch=amd64", f"arch={arch}")} for c in components)]}
        path = tmp_path / f"sbom-{arch}.json"
        path.write_text(json.dumps(doc))
        report.sboms[platform] = path
    return report


AFTER_FIXES = (component("libpam0g", "1.5.2-6+deb12u1"), component("tzdata", "2026f-0+deb12u1", "all"),
               component("apt", "2.6.1"))
TZDATA_HELD = (component("libpam0g", "1.5.2-6+deb12u1"), component("tzdata", "2026b-0+deb12u1", "all"))
BASE_FIXES = {p: (fix("libpam0g", "1.5.2-6", "1.5.2-6+deb12u1", arch=p.split("/")[1]),
                  fix("tzdata", "2026b-0+deb12u1", "2026f-0+deb12u1", arch="all")) for p in PLATFORMS}
DIGESTS = {p: f"sha256:{i}" * 1 for i, p in enumerate(PLATFORMS)}


def run_gate(tmp_path: Path, policy: str, *components: dict, m=None, archives=None):
    archives = archives or FakeArchives()
    report = write_sboms(tmp_path, *components)

    def index_for(platform: str, sbom: dict) -> ArchiveIndex:
        return archives.index_for("debian", "bookworm", platform)

    record, checks = gate.check(m or make_manifest(packages=()), policy, report, DIGESTS, index_for, BASE_FIXES, NOW)
    return record, checks, report


def test_require_passes_when_every_fix_was_applied_and_records_them(tmp_path):
    record, checks, report = run_gate(tmp_path, "require", *AFTER_FIXES)
    assert (report.errors, report.warnings) == ([], [])
    assert [(c.name, c.platform, c.passed) for c in checks] == [("security-fixes", p, True) for p in PLATFORMS]
    assert record is not None and record.policy == "require" and record.checked == "2026-12-01T09:00:00Z"
    amd64 = record.platforms["linux/amd64"]
    assert [str(a) for a in amd64.applied] == ["libpam0g 1.5.2-6 -> 1.5.2-6+deb12u1 (bookworm-security)",
                                               "tzdata 2026b-0+deb12u1 -> 2026f-0+deb12u1 (bookworm-security)"]
    assert [(p.package, p.kind) for p in amd64.pending] == [("apt", "update")]  # not a security fix
    assert amd64.pending_security == ()


def test_require_fails_naming_every_pending_package_on_each_platform(tmp_path):
    record, checks, report = run_gate(tmp_path, "require", *TZDATA_HELD)
    assert report.errors == [
        f"{p}: 1 security fix(es) pending after the build that the org layer could apply: tzdata 2026b-0+deb12u1 -> "
        "2026f-0+deb12u1 (bookworm-security) (policy.security_fixes: require)" for p in PLATFORMS]
    assert [c.passed for c in checks] == [False, False]
    assert checks[0].detail == "1 security fix(es) pending: tzdata"
    assert record is not None and [a.package for a in record.platforms["linux/arm64"].applied] == ["libpam0g"]


def test_warn_publishes_with_a_warning_and_a_failed_check(tmp_path):
    record, checks, report = run_gate(tmp_path, "warn", *TZDATA_HELD)
    assert report.errors == []
    assert len(report.warnings) == 2 and "tzdata 2026b-0+deb12u1 -> 2026f-0+deb12u1" in report.warnings[0]
    assert "(policy.security_fixes: warn)" in report.warnings[0]
    assert [c.passed for c in checks] == [False, False]
    assert record is not None and record.policy == "warn"


def test_off_does_nothing_and_reads_no_archive(tmp_path):
    archives = FakeArchives()
    record, checks, report = run_gate(tmp_path, "off", *TZDATA_HELD, archives=archives)
    assert (record, checks, report.errors, report.warnings, archives.asked) == (None, [], [], [], [])


def test_no_shell_images_warn_that_the_upstream_must_rebuild_and_pass(tmp_path):
    m = make_manifest(distro="distroless", packages=())
    record, checks, report = run_gate(tmp_path, "require", *TZDATA_HELD, m=m)
    assert report.errors == []
    assert report.warnings == [f"{p}: upstream must rebuild: tzdata 2026b-0+deb12u1 -> 2026f-0+deb12u1 "
                               "(bookworm-security)" for p in PLATFORMS]
    assert [c.passed for c in checks] == [True, True]
    assert checks[0].detail.startswith("no fix the org layer could apply; upstream must rebuild: 1 security fix")
    assert record is not None and record.platforms["linux/amd64"].status == "upstream must rebuild"


def test_an_sbom_without_distro_packages_reads_no_archive(tmp_path):
    archives = FakeArchives()
    record, checks, report = run_gate(tmp_path, "require", archives=archives, m=make_manifest(distro="scratch"))
    assert archives.asked == [] and report.warnings == [] and [c.passed for c in checks] == [True, True]
    assert record is not None and record.platforms["linux/amd64"].to_json()["suites"] == []


def test_a_shell_image_whose_release_is_unknown_is_never_no_fixes(tmp_path):
    report = write_sboms(tmp_path, *AFTER_FIXES)
    _, checks = gate.check(make_manifest(packages=()), "require", report, DIGESTS, lambda p, s: None, {}, NOW)
    assert [c.passed for c in checks] == [False, False]
    assert report.errors[0].startswith("linux/amd64: security fixes not checked: cannot tell the debian release")


def test_applied_counts_a_newer_version_and_not_an_unchanged_one():
    built = installed_packages({"components": [component("libpam0g", "1.5.2-6+deb12u2"),
                                               component("tzdata", "2026b-0+deb12u1", "all")]})
    done = applied(BASE_FIXES["linux/amd64"], built, "debian")
    assert [(a.package, a.from_, a.to) for a in done] == [("libpam0g", "1.5.2-6", "1.5.2-6+deb12u2")]


# --- the record -------------------------------------------------------------------------------------


def test_the_conformance_predicate_carries_the_record_in_its_documented_shape(tmp_path):
    record, checks, _ = run_gate(tmp_path, "require", *AFTER_FIXES)
    assert record is not None
    predicate = attest.conformance_predicate(image="x", version="1.0.0", platform_results={"linux/amd64": checks[:1]},
                                             policy_rules=[], waivers=[], factory_version="0",
                                             security_fixes=record.to_json())
    doc = predicate["securityFixes"]
    assert set(doc) == {"policy", "checked", "platforms"}
    amd64 = doc["platforms"]["linux/amd64"]
    assert set(amd64) == {"status", "suites", "applied", "pending", "pendingSecurity"}
    assert amd64["status"] == "fixable" and amd64["pendingSecurity"] == 0
    assert amd64["suites"] == [{"name": "bookworm", "date": "2026-11-30T06:00:00Z"},
                               {"name": "bookworm-updates", "date": "2026-11-30T06:00:00Z"},
                               {"name": "bookworm-security", "date": None}]
    assert amd64["applied"][0] == {"package": "libpam0g", "arch": "amd64", "from": "1.5.2-6",
                                   "to": "1.5.2-6+deb12u1", "suite": "bookworm-security"}
    assert amd64["pending"] == [{"package": "apt", "arch": "amd64", "installed": "2.6.1", "candidate": "2.6.2",
                                 "suite": "bookworm-updates", "kind": "update"}]
    assert predicate["platforms"]["linux/amd64"]["checks"][0]["name"] == "security-fixes"
    assert SecurityFixes.from_json(json.loads(json.dumps(doc))) == record  # what the readers get back


def test_policy_off_leaves_the_key_out():
    predicate = attest.conformance_predicate(image="x", version="1.0.0", platform_results={}, policy_rules=[],
                                             waivers=[], factory_version="0")
    assert "securityFixes" not in predicate


def test_a_record_of_another_shape_is_refused_never_read_as_nothing_pending(tmp_path):
    record, _, _ = run_gate(tmp_path, "require", *TZDATA_HELD)
    assert record is not None
    doc = record.to_json()
    doc["platforms"]["linux/amd64"]["pendingSecurity"] = 0
    with pytest.raises(ValueError, match="pendingSecurity"):
        SecurityFixes.from_json(doc)
    with pytest.raises(ValueError, match="securityFixes is not a security-fixes record"):
        SecurityFixes.from_json({"policy": "require"})


def test_the_provenance_lists_the_applied_packages_as_purls_and_the_build_args(tmp_path):
    record, _, _ = run_gate(tmp_path, "require", *AFTER_FIXES)
    assert record is not None
    deps = resolved_dependencies(record, "debian")
    assert [d["uri"] for d in deps] == ["pkg:deb/debian/libpam0g@1.5.2-6%2Bdeb12u1?arch=amd64",
                                        "pkg:deb/debian/libpam0g@1.5.2-6%2Bdeb12u1?arch=arm64",
                                        "pkg:deb/debian/tzdata@2026f-0%2Bdeb12u1?arch=all"]  # one arch=all entry
    assert deps[0]["annotations"] == {"from": "1.5.2-6", "suite": "bookworm-security"}
    provenance = attest.slsa_provenance(
        builder_id="b", build_type="t", manifest={}, context_digest="sha256:c", platforms=list(PLATFORMS),
        build_args={"SECURITY_FIXES": "libpam0g tzdata", "ORG_LAYER": "run"}, invocation_id="",
        started=NOW, finished=NOW,
        dependencies=[attest.image_dependency("r.example.com/x@sha256:" + "a" * 64, "base"), *deps])
    resolved = provenance["buildDefinition"]["resolvedDependencies"]
    assert resolved[0]["uri"] == "oci://r.example.com/x" and resolved[1:] == deps
    assert provenance["buildDefinition"]["internalParameters"]["buildArgs"]["ORG_LAYER"] == "run"
