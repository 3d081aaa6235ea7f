"""Reading OCI image layouts, on layouts written by hand in the shape buildx's OCI exporter uses."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from factory.core.errors import LayoutError
from factory.oci.layout import OCI_INDEX, OCI_MANIFEST, OciLayout, sha256_digest


class LayoutWriter:
    """Writes blobs and returns their descriptors, like an OCI exporter would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def blob(self, data: bytes, media_type: str, **extra) -> dict:
        digest = sha256_digest(data)
        (self.root / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    def json_blob(self, doc: dict, media_type: str, **extra) -> dict:
        return self.blob(json.dumps(doc, indent=2).encode(), media_type, **extra)

    def image(self, arch: str, layer_data: bytes, **extra) -> dict:
        config = self.json_blob({"architecture": arch, "os": "linux", "config": {"User": "1001"}},
                                "application/vnd.oci.image.config.v1+json")
        layer = self.blob(layer_data, "application/vnd.oci.image.layer.v1.tar+gzip")
        return self.json_blob({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                               "layers": [layer]}, OCI_MANIFEST, **extra)

    def top(self, *entries: dict) -> None:
        (self.root / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries)}))


def two_platform_layout(root: Path) -> tuple[LayoutWriter, dict]:
    w = LayoutWriter(root)
    amd = w.image("amd64", b"amd64-layer", platform={"architecture": "amd64", "os": "linux"})
    arm = w.image("arm64", b"arm64-layer-bigger", platform={"architecture": "arm64", "os": "linux",
                                                            "variant": "v8"})
    index = w.json_blob({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, arm]}, OCI_INDEX)
    w.top(index)
    return w, index


def test_unwraps_buildx_index_json(tmp_path):
    _, index = two_platform_layout(tmp_path)
    layout = OciLayout.from_dir(tmp_path)
    assert layout.index.digest == index["digest"]
    assert layout.index.is_index
    # arm64/v8 is normalised to linux/arm64 by the platform table
    assert layout.platforms == ("linux/amd64", "linux/arm64")
    assert set(layout.manifests) == {"linux/amd64", "linux/arm64"}


def test_config_layers_and_sizes(tmp_path):
    two_platform_layout(tmp_path)
    layout = OciLayout.from_dir(tmp_path)
    assert layout.config("linux/arm64")["architecture"] == "arm64"
    assert layout.config("linux/aarch64")["config"]["User"] == "1001"
    (layer,) = layout.layers("linux/arm64")
    assert layer.size == len(b"arm64-layer-bigger")
    img = layout.image("linux/arm64")
    assert img.compressed_size == img.config.size + len(b"arm64-layer-bigger")
    assert layout.blob(layer.digest).read_bytes() == b"arm64-layer-bigger"


def test_walk_puts_children_before_the_index(tmp_path):
    _, index = two_platform_layout(tmp_path)
    layout = OciLayout.from_dir(tmp_path)
    order = [d.digest for d, _ in layout.walk()]
    assert order[-1] == index["digest"]
    assert set(order[:-1]) == set(layout.manifests.values())
    # each raw document is returned byte-for-byte (the registry digest depends on it)
    for desc, raw in layout.walk():
        assert sha256_digest(raw) == desc.digest


def test_blobs_are_configs_and_layers_once(tmp_path):
    w = LayoutWriter(tmp_path)
    shared = b"same-layer"
    amd = w.image("amd64", shared, platform={"architecture": "amd64", "os": "linux"})
    arm = w.image("arm64", shared, platform={"architecture": "arm64", "os": "linux"})
    w.top(w.json_blob({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, arm]}, OCI_INDEX))
    blobs = OciLayout.from_dir(tmp_path).blobs()
    assert len(blobs) == 3  # two configs, one shared layer
    assert len({b.digest for b in blobs}) == 3


def test_attestation_manifests_are_pushed_but_are_no_platform(tmp_path):
    w = LayoutWriter(tmp_path)
    amd = w.image("amd64", b"l", platform={"architecture": "amd64", "os": "linux"})
    att = w.image("unknown", b"provenance", platform={"architecture": "unknown", "os": "unknown"},
                  annotations={"vnd.docker.reference.type": "attestation-manifest",
                               "vnd.docker.reference.digest": amd["digest"]})
    w.top(w.json_blob({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, att]}, OCI_INDEX))
    layout = OciLayout.from_dir(tmp_path)
    assert layout.platforms == ("linux/amd64",)
    assert att["digest"] in [d.digest for d, _ in layout.walk()]


def test_single_platform_layout_reads_platform_from_config(tmp_path):
    w = LayoutWriter(tmp_path)
    manifest = w.image("arm64", b"only")
    w.top(manifest)
    layout = OciLayout.from_dir(tmp_path)
    assert not layout.index.is_index
    assert layout.manifests == {"linux/arm64": manifest["digest"]}
    assert [d.digest for d, _ in layout.walk()] == [manifest["digest"]]


def test_tampered_blob_is_refused(tmp_path):
    w, index = two_platform_layout(tmp_path)
    amd_digest = json.loads(w.root.joinpath("blobs/sha256", index["digest"].split(":")[1]).read_text())[
        "manifests"][0]["digest"]
    w.root.joinpath("blobs/sha256", amd_digest.split(":")[1]).write_text('{"tampered": true}')
    with pytest.raises(LayoutError, match="does not match its descriptor"):
        OciLayout.from_dir(tmp_path)


def test_missing_blob(tmp_path):
    w, index = two_platform_layout(tmp_path)
    w.root.joinpath("blobs/sha256", index["digest"].split(":")[1]).unlink()
    with pytest.raises(LayoutError, match="is missing"):
        OciLayout.from_dir(tmp_path)


def test_not_a_layout(tmp_path):
    with pytest.raises(LayoutError, match="not an OCI image layout"):
        OciLayout.from_dir(tmp_path)


def test_index_json_must_hold_one_image(tmp_path):
    w = LayoutWriter(tmp_path)
    a = w.image("amd64", b"a")
    b = w.image("arm64", b"b")
    w.top(a, b)
    with pytest.raises(LayoutError, match="holds 2 entries"):
        OciLayout.from_dir(tmp_path)


def test_unknown_platform_lookup(tmp_path):
    two_platform_layout(tmp_path)
    with pytest.raises(LayoutError, match="no image for platform linux/s390x"):
        OciLayout.from_dir(tmp_path).image("linux/s390x")


def test_blob_refuses_non_digests(tmp_path):
    two_platform_layout(tmp_path)
    with pytest.raises(LayoutError, match="not a sha256 digest"):
        OciLayout.from_dir(tmp_path).blob("sha256:../../etc/passwd")


def _tar(src: Path, dest: Path) -> None:
    with tarfile.open(dest, "w") as tar:
        for path in sorted(src.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(src)), recursive=False)


def test_from_archive(tmp_path):
    _, index = two_platform_layout(tmp_path / "src")
    _tar(tmp_path / "src", tmp_path / "image.tar")
    layout = OciLayout.from_archive(tmp_path / "image.tar", tmp_path / "out")
    assert layout.index.digest == index["digest"]
    assert layout.root == tmp_path / "out"


def test_from_archive_refuses_paths_outside_workdir(tmp_path):
    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(LayoutError, match="cannot extract"):
        OciLayout.from_archive(tmp_path / "evil.tar", tmp_path / "out")
    assert not (tmp_path / "escaped").exists()
