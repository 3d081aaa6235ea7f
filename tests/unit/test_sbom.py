"""SBOM normalisation, the license policy and the generators' command lines (no process runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.build.sbom import (
    LicenseFinding,
    Package,
    SyftSbom,
    TrivySbom,
    choose_generator,
    license_findings,
    normalise_license,
    operating_system,
    packages,
    parse_cyclonedx,
    parse_expression,
    purl_type,
    view_index,
)
from factory.core.errors import EnvironmentProblem, LayoutError, SbomError
from factory.oci.layout import OCI_MANIFEST, Descriptor

DATA = Path(__file__).resolve().parents[1] / "data" / "sbom"
DENY = ["AGPL-1.0", "AGPL-3.0", "AGPL-3.0-only", "AGPL-3.0-or-later", "SSPL-1.0"]  # config defaults
WARN = ["GPL-2.0", "GPL-3.0", "GPL-2.0-only", "GPL-3.0-only", "GPL-2.0-or-later", "GPL-3.0-or-later"]


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def bom(*components: dict) -> dict:
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": list(components)}


def lib(name: str, *licenses: dict, version: str = "1.0") -> dict:
    return {"type": "library", "name": name, "version": version, "purl": f"pkg:npm/{name}@{version}",
            "licenses": list(licenses)}


# --- packages() on a real trivy BOM ------------------------------------------------------------


def test_packages_from_trivy_debian_bom():
    pkgs = packages(load("trivy-debian-bookworm-arm64.cdx.json"))
    assert sorted(pkgs) == ["adduser", "base-files", "bsdutils", "dpkg", "libc6", "perl-base", "tzdata"]
    assert pkgs["dpkg"] == Package(
        name="dpkg", version="1.21.23", type="deb",
        purl="pkg:deb/debian/dpkg@1.21.23?arch=arm64&distro=debian-12.15",
        licenses=("GPL-2.0-or-later", "GPL-2.0-only", "BSD-2-Clause", "public-domain-s-s-d"),
    )
    # trivy writes the Debian epoch into the version and as a purl qualifier
    assert pkgs["bsdutils"].version == "1:2.38.1-5+deb12u3"
    # {license: {name}} entries, including trivy's "X WITH Y" names, are kept as written
    assert pkgs["tzdata"].licenses == ("public-domain",)
    assert "GPL-2.0-only WITH bison-exception+" in pkgs["perl-base"].licenses


def test_operating_system_is_not_a_package():
    sbom = load("trivy-debian-bookworm-arm64.cdx.json")
    assert operating_system(sbom) == "debian 12.15"
    assert "debian" not in packages(sbom)


def test_packages_from_other_shapes():
    pkgs = packages(load("mixed-shapes.cdx.json"))
    # "six" from two ecosystems: both kept, keyed by type; nested components found; files and
    # purl-less applications are not packages; a library without purl is
    assert sorted(pkgs) == ["deb/six", "github.com/mongodb/mongo-tools", "left-pad", "libgcc-s1",
                            "libstatic", "pymongo", "pypi/six"]
    assert pkgs["pypi/six"].licenses == ("MIT",)
    assert pkgs["left-pad"].licenses == ("(GPL-2.0-or-later OR MIT)",)
    assert pkgs["libstatic"].type == "library" and pkgs["libstatic"].purl == ""
    assert operating_system(load("mixed-shapes.cdx.json")) == "debian 12"


def test_same_name_same_type_is_keyed_by_version():
    pkgs = packages(bom(lib("a", version="1"), lib("a", version="2"), lib("b")))
    assert sorted(pkgs) == ["b", "npm/a@1", "npm/a@2"]


@pytest.mark.parametrize("purl, expected", [
    ("pkg:deb/debian/dpkg@1.21.23?arch=arm64", "deb"),
    ("pkg:PyPI/six@1.16.0", "pypi"),
    ("pkg:golang/github.com/x/y@v1", "golang"),
    ("", ""),
    ("not-a-purl", ""),
])
def test_purl_type(purl, expected):
    assert purl_type(purl) == expected


# --- SPDX expressions --------------------------------------------------------------------------


@pytest.mark.parametrize("text, tree", [
    ("MIT", ("license", "MIT", None)),
    ("GPL-2.0-or-later OR MIT", ("or", (("license", "GPL-2.0-or-later", None), ("license", "MIT", None)))),
    ("A AND B OR C", ("or", (("and", (("license", "A", None), ("license", "B", None))), ("license", "C", None)))),
    ("A AND (B OR C)", ("and", (("license", "A", None), ("or", (("license", "B", None), ("license", "C", None)))))),
    ("GPL-2.0-only WITH Classpath-exception-2.0", ("license", "GPL-2.0-only", "Classpath-exception-2.0")),
    ("a or b", ("or", (("license", "a", None), ("license", "b", None)))),
    # Debian names with operators inside one word are one license
    ("BSD-3-clause-and-or-GPL-3+", ("license", "BSD-3-clause-and-or-GPL-3+", None)),
    # what does not parse is kept whole rather than dropped
    ("(MIT OR", ("license", "(MIT OR", None)),
    ("MIT)", ("license", "MIT)", None)),
    ("AND MIT", ("license", "AND MIT", None)),
])
def test_parse_expression(text, tree):
    assert parse_expression(text) == tree


@pytest.mark.parametrize("text, normal", [
    ("GPL-2.0", "gpl-2.0-only"),  # SPDX's deprecated id means "only"
    ("GPL-2.0+", "gpl-2.0-or-later"),
    ("GPL-2", "gpl-2.0-only"),  # Debian's short names
    ("GPL-3+", "gpl-3.0-or-later"),
    ("LGPL-2.1+", "lgpl-2.1-or-later"),
    ("agpl-3.0-or-later", "agpl-3.0-or-later"),
    ("GPL-2.0 WITH Classpath-exception-2.0", "gpl-2.0-only with classpath-exception-2.0"),
    ("MIT", "mit"),
    ("MPL-1.1+", "mpl-1.1+"),  # only the GNU family has known spellings
])
def test_normalise_license(text, normal):
    assert normalise_license(text) == normal


# --- license policy ----------------------------------------------------------------------------

MIT = {"license": {"id": "MIT"}}


def expr(text: str) -> dict:
    return {"expression": text}


def lid(text: str) -> dict:
    return {"license": {"id": text}}


def lname(text: str) -> dict:
    return {"license": {"name": text}}


@pytest.mark.parametrize("licenses, severity, offenders", [
    ([MIT], None, ()),
    ([lid("AGPL-3.0-only")], "error", ("AGPL-3.0-only",)),
    ([lname("GPL-2.0")], "warning", ("GPL-2.0",)),  # trivy's {license: {name}} shape
    ([expr("GPL-2.0-or-later OR MIT")], None, ()),  # OR: MIT may be chosen
    ([expr("GPL-2.0-or-later AND MIT")], "warning", ("GPL-2.0-or-later",)),  # AND: both apply
    ([expr("AGPL-3.0-only OR GPL-3.0-only")], "warning", ("GPL-3.0-only",)),  # the best option counts
    ([expr("AGPL-3.0-only OR SSPL-1.0")], "error", ("AGPL-3.0-only", "SSPL-1.0")),
    ([expr("MIT AND (AGPL-3.0-only OR Apache-2.0)")], None, ()),
    ([expr("(MIT OR GPL-3.0-only) AND AGPL-3.0-or-later")], "error", ("AGPL-3.0-or-later",)),
    ([MIT, lid("GPL-2.0-only")], "warning", ("GPL-2.0-only",)),  # separate entries all apply
    ([lid("GPL-3.0-or-later"), lid("SSPL-1.0")], "error", ("SSPL-1.0",)),
    ([lname("GPL-3.0-or-later WITH Bison-exception")], "warning", ("GPL-3.0-or-later WITH Bison-exception",)),
    ([lid("GPL-2+")], "warning", ("GPL-2+",)),  # Debian spelling of GPL-2.0-or-later
    ([lid("gpl-3.0")], "warning", ("gpl-3.0",)),
    ([lid("LGPL-2.1-only")], None, ()),  # LGPL is not on the default warn list
    ([lid("AGPL-3.0")], "error", ("AGPL-3.0",)),
    ([], None, ()),  # nothing declared: nothing known, no finding
])
def test_license_policy_table(licenses, severity, offenders):
    findings = license_findings(bom(lib("pkg", *licenses)), DENY, WARN)
    if severity is None:
        assert findings == []
    else:
        assert [(f.package, f.severity, f.licenses) for f in findings] == [("pkg", severity, offenders)]


def test_copyleft_approved_silences_warnings_not_denials():
    sbom = bom(lib("gpl", lid("GPL-2.0-only")), lib("agpl", lid("AGPL-3.0-only")))
    assert [(f.package, f.severity) for f in license_findings(sbom, DENY, WARN)] == [
        ("agpl", "error"), ("gpl", "warning")]
    assert [(f.package, f.severity) for f in license_findings(sbom, DENY, WARN, copyleft_approved=True)] == [
        ("agpl", "error")]


@pytest.mark.parametrize("pattern, license_id, hit", [
    ("AGPL-*", "AGPL-3.0-or-later", True),
    ("AGPL-*", "GPL-3.0-only", False),
    ("gpl-*", "GPL-2+", True),  # globs match the normalised spelling
    ("GPL-2.0-only WITH Classpath-exception-2.0", "GPL-2.0 WITH Classpath-exception-2.0", True),
    ("GPL-2.0-only WITH Classpath-exception-2.0", "GPL-2.0-only", False),
])
def test_policy_entries(pattern, license_id, hit):
    findings = license_findings(bom(lib("pkg", expr(license_id))), [pattern], [])
    assert bool(findings) is hit


def test_license_exception_does_not_lift_the_base_license():
    findings = license_findings(bom(lib("libgcc", expr("GPL-3.0-or-later WITH GCC-exception-3.1"))), DENY, WARN)
    assert findings[0].licenses == ("GPL-3.0-or-later WITH GCC-exception-3.1",)


def test_findings_on_real_boms():
    debian = license_findings(load("trivy-debian-bookworm-arm64.cdx.json"), DENY, WARN)
    assert not [f for f in debian if f.severity == "error"]
    warned = {f.package for f in debian}
    assert {"dpkg", "base-files", "libc6", "adduser"} <= warned
    assert "tzdata" not in warned  # public-domain

    mixed = license_findings(load("mixed-shapes.cdx.json"), DENY, WARN)
    assert [(f.package, f.severity, f.licenses) for f in mixed] == [
        ("github.com/mongodb/mongo-tools", "error", ("SSPL-1.0",)),
        ("libstatic", "error", ("AGPL-3.0-only",)),
        ("libgcc-s1", "warning", ("GPL-3.0-or-later WITH GCC-exception-3.1",)),
    ]


def test_finding_message_names_package_and_licenses():
    f = LicenseFinding("left-pad", "1.3.0", "error", ("AGPL-3.0-only",), ("MIT", "AGPL-3.0-only OR SSPL-1.0"))
    assert f.message == "left-pad 1.3.0: license AGPL-3.0-only denied (declared: MIT AND (AGPL-3.0-only OR SSPL-1.0))"
    assert str(f) == f"error: {f.message}"
    warning = LicenseFinding("bash", "5.2", "warning", ("GPL-3.0-or-later",), ("GPL-3.0-or-later",))
    assert warning.message == ("bash 5.2: license GPL-3.0-or-later needs a copyleft-approved image "
                               "(declared: GPL-3.0-or-later)")


# --- generators --------------------------------------------------------------------------------


class FakeRunner:
    """Only ``which`` and ``extra_path``: choose_generator looks, it runs nothing."""

    def __init__(self, *present: str) -> None:
        self.present, self.extra_path = present, (Path("/opt/factory/tools/bin"),)
        self.searched = "PATH or /opt/factory/tools/bin"

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.present else None


@pytest.mark.parametrize("present, chosen", [
    (("syft", "trivy"), SyftSbom),
    (("trivy",), TrivySbom),
    (("syft",), SyftSbom),
])
def test_choose_generator(present, chosen, tmp_path):
    assert isinstance(choose_generator(FakeRunner(*present), tmp_path), chosen)


def test_choose_generator_without_tools_is_one_clear_error(tmp_path):
    with pytest.raises(EnvironmentProblem) as e:
        choose_generator(FakeRunner(), tmp_path)
    assert "neither syft nor trivy" in str(e.value) and "/opt/factory/tools/bin" in str(e.value)
    assert "make setup" in str(e.value)


def test_trivy_argv_is_offline_and_uses_the_cache_dir(tmp_path):
    argv = TrivySbom(FakeRunner(), tmp_path / "cache").argv(Path("/tmp/v/linux-arm64"))
    assert argv[:4] == ["trivy", "image", "--input", "/tmp/v/linux-arm64"]
    assert argv[argv.index("--format") + 1] == "cyclonedx"
    assert argv[argv.index("--cache-dir") + 1] == str(tmp_path / "cache")
    assert {"--offline-scan", "--quiet", "--skip-version-check"} <= set(argv)
    assert "--platform" not in argv  # ignored by trivy for --input: the view selects the platform


def test_syft_argv():
    argv = SyftSbom(FakeRunner()).argv(Path("/tmp/v/linux-amd64"))
    assert argv == ["syft", "oci-dir:/tmp/v/linux-amd64", "-o", "cyclonedx-json", "-q"]
    assert SyftSbom.ENV == {"SYFT_CHECK_FOR_APP_UPDATE": "false"}


def test_view_index_points_at_one_platform_manifest():
    desc = Descriptor(OCI_MANIFEST, "sha256:" + "b" * 64, 669, {"architecture": "arm64", "os": "linux"})
    assert view_index(desc) == {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:" + "b" * 64, "size": 669,
                       "platform": {"architecture": "arm64", "os": "linux"}}],
    }
    assert "platform" not in view_index(Descriptor(OCI_MANIFEST, "sha256:" + "c" * 64, 10))["manifests"][0]


@pytest.mark.parametrize("text, complaint", [
    ("", "did not write JSON"),
    ("2024/01/01 INFO something\n{}", "did not write JSON"),
    ('{"bomFormat": "SPDX"}', "not a CycloneDX BOM"),
    ("[]", "not a CycloneDX BOM"),
])
def test_bad_generator_output_is_an_error(text, complaint):
    with pytest.raises(SbomError, match=complaint):
        parse_cyclonedx(text, tool="trivy", platform="linux/amd64")


# --- the platform view, on a small layout written here -----------------------------------------


def write_layout(root: Path) -> dict[str, str]:
    """A two-platform layout shaped like buildx's: index.json -> image index -> one manifest per
    platform. Returns platform -> manifest digest."""
    import hashlib

    def blob(doc: dict) -> dict:
        data = json.dumps(doc).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    manifests, digests = [], {}
    for arch in ("amd64", "arm64"):
        config = blob({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
        manifest = blob({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                         "layers": []})
        manifests.append({"mediaType": OCI_MANIFEST, **manifest, "platform": {"architecture": arch, "os": "linux"}})
        digests[f"linux/{arch}"] = manifest["digest"]
    index = blob({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                  "manifests": manifests})
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", **index}]}))
    return digests


def test_platform_view_holds_only_that_platform(tmp_path):
    from factory.build.sbom import platform_view

    digests = write_layout(tmp_path / "layout")
    with platform_view(tmp_path / "layout", "linux/aarch64") as view:
        assert view.name == "linux-arm64"
        index = json.loads((view / "index.json").read_text())
        assert [m["digest"] for m in index["manifests"]] == [digests["linux/arm64"]]
        assert (view / "blobs").resolve() == (tmp_path / "layout" / "blobs").resolve()
        assert (view / "blobs" / "sha256" / digests["linux/arm64"].split(":")[1]).is_file()
    assert not view.exists()  # removed afterwards; the layout itself is untouched
    assert (tmp_path / "layout" / "blobs").is_dir()


def test_platform_view_of_a_missing_platform_names_the_ones_there(tmp_path):
    from factory.build.sbom import platform_view

    write_layout(tmp_path / "layout")
    with (pytest.raises(LayoutError, match=r"no image for platform linux/s390x.*linux/amd64, linux/arm64"),
          platform_view(tmp_path / "layout", "linux/s390x")):
        pass
