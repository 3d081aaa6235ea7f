"""The package changelog between two SBOMs, and the version order that says upgrade or downgrade."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.build import sbom
from factory.consume import changelog
from factory.consume.changelog import (
    PackageVersion,
    VersionChange,
    compare_versions,
    diff_packages,
    diff_sboms,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "sbom"


def bom(*components: tuple[str, str], ecosystem: str = "deb") -> dict:
    """A CycloneDX document with these (name, version) packages, shaped as trivy writes them."""
    return {"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [
        {"type": "library", "name": name, "version": version,
         "purl": f"pkg:{ecosystem}/debian/{name}@{version}?arch=amd64"} for name, version in components]}


def test_added_removed_upgraded_downgraded_and_unchanged():
    old = bom(("bash", "5.2.15-2+b2"), ("curl", "7.88.1-10+deb12u5"), ("tzdata", "2024a-0+deb12u1"),
              ("zlib1g", "1:1.2.13.dfsg-1"), ("gone", "1.0"))
    new = bom(("bash", "5.2.15-2+b2"), ("curl", "7.88.1-10+deb12u12"), ("tzdata", "2023c-5+deb12u1"),
              ("zlib1g", "1:1.2.13.dfsg-1"), ("jq", "1.6-2.1"))
    diff = diff_sboms(old, new)
    assert diff.added == (PackageVersion("jq", "1.6-2.1"),)
    assert diff.removed == (PackageVersion("gone", "1.0"),)
    assert diff.upgraded == (VersionChange("curl", "7.88.1-10+deb12u5", "7.88.1-10+deb12u12"),)
    assert diff.downgraded == (VersionChange("tzdata", "2024a-0+deb12u1", "2023c-5+deb12u1"),)
    assert diff.unchanged == 2
    assert not diff.empty
    assert diff.summary() == "1 added, 1 removed, 1 upgraded, 1 downgraded, 2 unchanged"


def test_identical_sboms_have_no_changes():
    document = json.loads((DATA / "trivy-debian-bookworm-arm64.cdx.json").read_text())
    diff = diff_sboms(document, document)
    assert diff.empty
    assert diff.unchanged == len(sbom.packages(document)) > 0
    assert changelog.table(diff) == f"no package changes ({diff.unchanged} packages unchanged)"


def test_one_package_added_to_a_real_trivy_sbom():
    old = json.loads((DATA / "trivy-debian-bookworm-arm64.cdx.json").read_text())
    new = json.loads(json.dumps(old))
    new["components"].append({"type": "library", "name": "procps", "version": "2:4.0.2-3",
                              "purl": "pkg:deb/debian/procps@4.0.2-3?arch=arm64&epoch=2"})
    diff = diff_sboms(old, new)
    assert (diff.added, diff.removed, diff.upgraded, diff.downgraded) == (
        (PackageVersion("procps", "2:4.0.2-3"),), (), (), ())


def test_a_name_in_two_ecosystems_is_compared_per_ecosystem():
    old = {"components": bom(("six", "1.16.0-4"))["components"]
           + bom(("six", "1.16.0"), ecosystem="pypi")["components"]}
    new = {"components": bom(("six", "1.16.0-4"))["components"]
           + bom(("six", "1.17.0"), ecosystem="pypi")["components"]}
    diff = diff_sboms(old, new)
    assert diff.upgraded == (VersionChange("pypi/six", "1.16.0", "1.17.0"),)
    assert diff.unchanged == 1


def test_diff_packages_takes_package_maps():
    pkg = lambda v: sbom.Package("a", v, "", (), "deb")  # noqa: E731
    assert diff_packages({"a": pkg("1.0")}, {"a": pkg("1.0~rc1")}).downgraded == (VersionChange("a", "1.0", "1.0~rc1"),)


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("1.0", "1.0", 0),
    ("1.0", "1.1", -1),
    ("1.10", "1.9", 1),  # numbers compare as numbers
    ("1.0~rc1", "1.0", -1),  # ~ sorts before the end of the string
    ("1.0~rc1", "1.0~rc2", -1),
    ("1.0", "1.0+b1", -1),
    ("1.0a", "1.0+", -1),  # letters before other characters
    ("1:1.0", "2.0", 1),  # the epoch wins
    ("0:2.0", "2.0", 0),  # no epoch is epoch 0
    ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12", -1),
    ("2.36-9+deb12u4", "2.36-9+deb12u10", -1),
    ("1.2.3-1", "1.2.3-1.1", -1),  # revision compared after the upstream version
    ("1.2-3-4", "1.2-3-5", -1),  # the revision is after the last hyphen
    ("3.11.2", "3.11.10", -1),  # PyPI / semver-like versions order the same way
    ("1.36.1-r15", "1.36.1-r2", 1),  # apk revisions
])
def test_compare_versions_follows_dpkg(a, b, expected):
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected


def test_table_lists_every_change_by_name():
    diff = diff_sboms(bom(("b", "1.0"), ("c", "2.0")), bom(("a", "0.1"), ("b", "1.1")))
    lines = changelog.table(diff).splitlines()
    assert lines[:3] == ["+ a  0.1", "^ b  1.0 -> 1.1", "- c  2.0"]
    assert lines[3].startswith("1 added, 1 removed, 1 upgraded, 0 unchanged")


def test_json_output_is_the_diff_plus_both_sides():
    diff = diff_sboms(bom(("b", "1.0")), bom(("b", "1.1")))
    side = changelog.PlatformSbom("r:old", "sha256:" + "1" * 64, "linux/amd64", "sha256:" + "2" * 64, {})
    doc = json.loads(changelog.as_json(diff, side, side))
    assert doc["upgraded"] == [{"name": "b", "old": "1.0", "new": "1.1"}]
    assert doc["old"]["ref"] == "r:old" and doc["new"]["platform"] == "linux/amd64"
    assert set(doc) == {"old", "new", "added", "removed", "upgraded", "downgraded", "unchanged"}


def test_apk_packages_order_by_apk_rules():
    # apk: _rc is a pre-release (before the release); dpkg's rules would put "1.0_rc1" after "1.0"
    assert compare_versions("1.0_rc1-r0", "1.0-r0", "apk") == -1
    assert compare_versions("1.0_rc1-r0", "1.0-r0", "deb") == 1


def test_a_string_that_is_no_version_is_ordered_as_text_not_refused():
    assert compare_versions("1.0 beta", "1.0 gamma", "pypi") == -1
    assert compare_versions("1.0 beta", "1.0 beta", "pypi") == 0
