"""factory.oci.rootfs: one file read from an image's layers, whiteouts honoured, every layer checked."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from contextlib import contextmanager

import pytest

from factory.core.errors import LayoutError
from factory.oci.rootfs import Layer, Limits, layers_of, read_file

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
STATUS = "var/lib/dpkg/status"


def _tar(entries: dict[str, bytes | None], *, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            if content is None:  # a folder
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


class Blobs:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.opened: list[str] = []

    def layer(self, entries: dict[str, bytes | None], *, gz: bool = True, **kw: str) -> Layer:
        data = _tar(entries, **kw)
        data = gzip.compress(data) if gz else data
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return Layer(digest, len(data), GZIP if gz else "application/vnd.oci.image.layer.v1.tar")

    @contextmanager
    def open(self, layer: Layer):
        self.opened.append(layer.digest)
        yield io.BytesIO(self.blobs[layer.digest])


def test_the_topmost_layer_with_the_file_wins_and_lower_layers_are_not_read():
    b = Blobs()
    base = b.layer({"var/": None, STATUS: b"Package: old\n"})
    top = b.layer({"./var/lib/dpkg/status": b"Package: new\n"}, gz=False)
    assert read_file([base, top], b.open, STATUS) == b"Package: new\n"
    assert b.opened == [top.digest]


def test_a_file_in_no_layer_is_none():
    b = Blobs()
    assert read_file([b.layer({"etc/hostname": b"x"})], b.open, STATUS) is None


@pytest.mark.parametrize("whiteout", ["var/lib/dpkg/.wh.status", "var/lib/.wh.dpkg", "var/lib/dpkg/.wh..wh..opq"])
def test_a_whiteout_in_a_higher_layer_removes_the_file(whiteout):
    b = Blobs()
    base = b.layer({STATUS: b"Package: old\n"})
    assert read_file([base, b.layer({whiteout: b""})], b.open, STATUS) is None


def test_a_layer_that_removes_the_folder_and_adds_the_file_again_has_it():
    b = Blobs()
    base = b.layer({STATUS: b"Package: old\n"})
    top = b.layer({"var/lib/dpkg/.wh..wh..opq": b"", STATUS: b"Package: new\n"})
    assert read_file([base, top], b.open, STATUS) == b"Package: new\n"


def test_a_blob_that_does_not_match_its_digest_is_refused():
    b = Blobs()
    layer = b.layer({STATUS: b"Package: real\n"})
    b.blobs[layer.digest] = gzip.compress(_tar({STATUS: b"Package: made-up\n"}))
    with pytest.raises(LayoutError, match="does not match its digest"):
        read_file([Layer(layer.digest, len(b.blobs[layer.digest]), GZIP)], b.open, STATUS)


def test_a_blob_longer_than_its_descriptor_is_refused():
    b = Blobs()
    layer = b.layer({STATUS: b"x"})
    with pytest.raises(LayoutError, match="more than"):
        read_file([Layer(layer.digest, layer.size - 10, GZIP)], b.open, STATUS)


def test_reads_are_bounded():
    b = Blobs()
    layer = b.layer({STATUS: b"x" * 5000})
    with pytest.raises(LayoutError, match="larger than 100 bytes"):
        read_file([layer], b.open, STATUS, Limits(max_file=100))
    with pytest.raises(LayoutError, match="unpacked: more than 1000 bytes"):
        read_file([layer], b.open, STATUS, Limits(max_unpacked=1000))


def test_a_symlink_is_not_followed():
    b = Blobs()
    with pytest.raises(LayoutError, match="not a regular file"):
        read_file([b.layer({}, symlink=STATUS)], b.open, STATUS)


def test_zstd_layers_are_refused_by_name():
    with pytest.raises(LayoutError, match="zstd"):
        read_file([Layer("sha256:" + "0" * 64, 1, "application/vnd.oci.image.layer.v1.tar+zstd")],
                  Blobs().open, STATUS)


def test_layers_of_a_manifest():
    manifest = {"layers": [{"digest": "sha256:" + "a" * 64, "size": 3, "mediaType": GZIP}]}
    assert layers_of(manifest) == [Layer("sha256:" + "a" * 64, 3, GZIP)]
    with pytest.raises(LayoutError):
        layers_of({"layers": [{"digest": 1}]})
