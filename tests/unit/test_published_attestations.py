"""What the published SBOMs and provenance say, checked with the third-party verifiers (tests/verifiers.py)
on the documents the factory makes, and each verifier shown failing on a broken one."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from factory.adapters.gitinfo import Revision, public_url
from factory.build import gates, sbom
from factory.build.buildx import BuiltImage
from factory.build.gates import GateReport
from factory.core.labels import CONFORMANCE_PREDICATE_TYPE, CYCLONEDX, SLSA_PROVENANCE_TYPE
from factory.oci.layout import OciLayout
from factory.publish.attestations import Attestor, build_packages
from factory.publish.destination import Destination
from factory.publish.report import VariantResult
from tests import verifiers

DATA = Path(__file__).resolve().parents[1] / "data" / "sbom"
NAME = "registry.example.com/myorg/base"
AMD, ARM, INDEX = "sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "c" * 64
COMMIT = "e" * 40
HELPER = "registry.example.com/upstream/debian:12@sha256:" + "f" * 64


def trivy_bom() -> dict:
    return json.loads((DATA / "trivy-debian-bookworm-arm64.cdx.json").read_text())


def test_the_recorded_trivy_sbom_is_strictly_valid_and_a_tampered_one_is_not():
    doc = trivy_bom()
    verifiers.check_cyclonedx(doc)
    broken = copy.deepcopy(doc)
    broken["metadata"]["component"]["bogus"] = True
    with pytest.raises(ValueError, match="bogus"):
        verifiers.check_cyclonedx(broken)
    broken = copy.deepcopy(doc)
    broken["components"][0]["type"] = "not-a-type"
    with pytest.raises(ValueError, match="strict validation"):
        verifiers.check_cyclonedx(broken)


def test_metadata_component_is_the_image_and_the_dependency_graph_follows():
    doc = trivy_bom()
    old_ref = doc["metadata"]["component"]["bom-ref"]
    out = sbom.describe_image(doc, name=NAME, digest=ARM, platform="linux/arm64")
    component = out["metadata"]["component"]
    assert (component["type"], component["name"], component["version"]) == ("container", NAME, ARM)
    assert component["purl"] == ("pkg:oci/base@sha256:" + "b" * 64 +
                                 "?arch=arm64&repository_url=registry.example.com/myorg/base")
    assert component["bom-ref"] == component["purl"]
    refs = {d["ref"] for d in out.get("dependencies", [])} | {r for d in out.get("dependencies", [])
                                                              for r in d.get("dependsOn", [])}
    assert old_ref not in refs
    verifiers.check_cyclonedx(out)


def test_files_the_factory_copied_become_file_components(tmp_path):
    layout = _layout_with_top_layer(tmp_path, {"etc/ssl/certs/ca-certificates.crt": b"PEM\n", "etc/passwd": b"root\n"})
    files = sbom.org_layer_files(layout, "linux/amd64")
    assert [f.path for f in files] == ["etc/passwd", "etc/ssl/certs/ca-certificates.crt"]
    doc = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": []}
    out = sbom.with_files(doc, files)
    bundle = next(c for c in out["components"] if c["name"] == "/etc/ssl/certs/ca-certificates.crt")
    assert bundle["type"] == "file"
    assert bundle["hashes"] == [{"alg": "SHA-256", "content": files[1].sha256}]
    verifiers.check_cyclonedx(out)
    assert len(sbom.with_files(out, files)["components"]) == 2  # listed once


def test_the_index_sbom_lists_each_platform_image_and_is_strictly_valid():
    doc = sbom.index_sbom(name=NAME, index_digest=INDEX, platforms={"linux/arm64": ARM, "linux/amd64": AMD},
                          tool_version="0.1.0")
    verifiers.check_cyclonedx(doc)
    assert doc["metadata"]["component"]["version"] == INDEX
    assert [(c["version"], c["purl"].split("arch=")[1][:5]) for c in doc["components"]] == [(AMD, "amd64"),
                                                                                          (ARM, "arm64")]
    assert doc["dependencies"][0]["dependsOn"] == [c["bom-ref"] for c in doc["components"]]
    assert doc == sbom.index_sbom(name=NAME, index_digest=INDEX, platforms={"linux/amd64": AMD, "linux/arm64": ARM},
                                  tool_version="0.1.0")  # deterministic, serial number included
    broken = copy.deepcopy(doc)
    del broken["components"][0]["name"]
    with pytest.raises(ValueError, match="name"):
        verifiers.check_cyclonedx(broken)


@pytest.mark.parametrize(("url", "public"), [
    ("https://user:token@git.example.com/org/images.git", "https://git.example.com/org/images"),
    ("git@git.example.com:org/images.git", "https://git.example.com/org/images"),
    ("ssh://git@git.example.com:2222/org/images", "https://git.example.com/org/images"),
    ("/srv/git/images", ""),
    ("file:///srv/git/images", ""),
])
def test_the_source_url_never_carries_userinfo(url, public):
    assert public_url(url) == public


def _layer(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("etc/ssl")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    return gzip.compress(raw.getvalue(), mtime=0)


def _layout_with_top_layer(root: Path, files: dict[str, bytes], below: tuple[dict[str, bytes], ...] = ()) -> OciLayout:
    """A one-platform OCI layout whose top layer holds ``files`` over the layers ``below`` (gzip tars, as
    buildx writes)."""
    layers = [_layer(f) for f in (*below, files)]
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    blobs = {}

    def put(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(layer)}
                                      for layer in layers]})
    desc = put(manifest.encode())
    (root / "blobs" / "sha256").mkdir(parents=True)
    for digest, data in blobs.items():
        (root / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **desc,
         "platform": {"os": "linux", "architecture": "amd64"}}]}))
    return OciLayout.from_dir(root)


class _Generator:
    name = "fake"

    def __init__(self, doc: dict) -> None:
        self.doc = doc

    def generate(self, layout_dir: Path, platform: str) -> dict:
        return copy.deepcopy(self.doc)


def _gate(tmp_path: Path, *, has_shell: bool) -> tuple[GateReport, dict]:
    layout = _layout_with_top_layer(tmp_path / "layout", {"etc/ssl/certs/ca-certificates.crt": b"PEM\n"})
    built = BuiltImage("x", tmp_path / "x.tar", layout, 0.0)
    settings = SimpleNamespace(target=NAME, policy=SimpleNamespace(license_deny=(), license_warn=()))
    empty = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
             "metadata": {"component": {"type": "container", "bom-ref": "tmp", "name": "/tmp/factory-view-x"}},
             "components": [{"type": "operating-system", "name": "debian", "version": "12"}]}
    report = GateReport()
    gates.sboms_and_licenses(SimpleNamespace(has_shell=has_shell), settings, built, _Generator(empty),
                             tmp_path / "sbom", report)
    return report, json.loads(report.sboms["linux/amd64"].read_text())


def test_an_sbom_without_components_is_a_gate_warning(tmp_path):
    report, doc = _gate(tmp_path, has_shell=True)
    assert report.warnings == ["linux/amd64: the SBOM lists no components: nothing the image ships is accounted for"]
    assert doc["metadata"]["component"]["name"] == NAME  # never the temporary view's path


def test_a_no_shell_image_lists_the_files_the_factory_copied_and_is_not_empty(tmp_path):
    report, doc = _gate(tmp_path, has_shell=False)
    assert report.warnings == []
    assert [c["name"] for c in doc["components"] if c["type"] == "file"] == ["/etc/ssl/certs/ca-certificates.crt"]
    verifiers.check_cyclonedx(doc)


def _status(*packages: tuple[str, str]) -> bytes:
    return "".join(f"Package: {n}\nStatus: install ok installed\nVersion: {v}\nArchitecture: amd64\n\n"
                   for n, v in packages).encode()


def test_the_provenance_packages_are_what_the_build_installed_or_upgraded_with_versions(tmp_path):
    base = {"var/lib/dpkg/status": _status(("libc6", "2.36-9"), ("tzdata", "2025a-0"))}
    org = {"var/lib/dpkg/status": _status(("libc6", "2.36-9"), ("tzdata", "2026a-0"), ("netbase", "6.4"))}
    layout = _layout_with_top_layer(tmp_path, org, below=(base,))
    debian = SimpleNamespace(distro="debian", has_shell=True)
    found = build_packages(debian, layout, {"linux/amd64": {"base": 1}})
    assert found == {"linux/amd64": [
        {"uri": "pkg:deb/debian/netbase@6.4?arch=amd64", "name": "netbase", "annotations": {"platform": "linux/amd64"}},
        {"uri": "pkg:deb/debian/tzdata@2026a-0?arch=amd64", "name": "tzdata",
         "annotations": {"platform": "linux/amd64", "from": "2025a-0"}}]}  # libc6, unchanged, is not listed
    assert build_packages(SimpleNamespace(distro="distroless", has_shell=False), layout,
                          {"linux/amd64": {"base": 1}}) == {}


class _Signer:
    def __init__(self) -> None:
        self.attested: list[tuple[str, str, dict]] = []

    def attest(self, ref, predicate, predicate_type, *, replace=False):
        self.attested.append((ref, predicate_type, predicate))


def _attest_index(platforms: dict[str, str], index: str) -> list[tuple[str, str, dict]]:
    signer = _Signer()
    attestor = Attestor(signer, Destination(None, "myorg/base", NAME), Revision(COMMIT, 0, False), "run1",
                        source_url="https://git.example.com/o/r", helper_image=HELPER)
    m = SimpleNamespace(name="static", version="1.0", path=Path("static.yaml"), distro="distroless", upstream=None,
                        parent=None, has_shell=False, waivers=())
    out = VariantResult(tag_prefix="static", version="1.0.0", index_digest=index, platforms=platforms)
    attestor.index(m, out, [], "registry.example.com/upstream/noshell:1.0@" + "sha256:" + "d" * 64, {},
                   datetime.now(UTC), packages={})
    return sorted(signer.attested, key=lambda a: (a[0], a[1]))


def test_provenance_goes_on_the_index_and_each_platform_and_an_index_sbom_on_the_index():
    found = _attest_index({"linux/amd64": AMD, "linux/arm64": ARM}, INDEX)
    assert [(ref.rsplit("@", 1)[1], kind) for ref, kind, _ in found] == [
        (AMD, SLSA_PROVENANCE_TYPE), (ARM, SLSA_PROVENANCE_TYPE),
        (INDEX, CYCLONEDX), (INDEX, CONFORMANCE_PREDICATE_TYPE), (INDEX, SLSA_PROVENANCE_TYPE)]
    by_digest = {ref.rsplit("@", 1)[1]: p for ref, kind, p in found if kind == SLSA_PROVENANCE_TYPE}
    assert by_digest[ARM]["buildDefinition"]["externalParameters"]["platforms"] == ["linux/arm64"]
    deps = [d["name"] for d in by_digest[INDEX]["buildDefinition"]["resolvedDependencies"]]
    assert deps == ["source", "base", "helper"]
    verifiers.check_cyclonedx(next(p for _, kind, p in found if kind == CYCLONEDX))


def test_a_one_platform_image_gets_one_provenance_and_no_second_sbom():
    found = _attest_index({"linux/amd64": AMD}, AMD)
    assert [kind for _, kind, _ in found] == [CONFORMANCE_PREDICATE_TYPE, SLSA_PROVENANCE_TYPE]
