"""Read one file of an image's root filesystem from its layers, without unpacking the image: the package
database of a base image (``var/lib/dpkg/status``, ``lib/apk/db/installed``), which an upstream that is
not ours carries in no SBOM.

The layers are read top down, as the union filesystem stacks them: the first layer that has the file
gives its content; a whiteout of the file, or an opaque whiteout of a folder above it, in a higher layer
means the file is gone. Every layer read is read to its end and its digest checked (a registry that is not
ours could serve a made-up package database), and every read is bounded: the compressed bytes by the
descriptor's size, the uncompressed bytes and the file itself by the limits given.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from posixpath import normpath
from typing import IO, Protocol

from typing_extensions import Buffer

from factory.core.errors import LayoutError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Layer:
    digest: str  # sha256:<hex> of the compressed blob
    size: int  # the descriptor's size: the blob must be exactly this long
    media_type: str


@dataclass(frozen=True)
class Limits:
    max_unpacked: int = 8 << 30  # bytes of tar stream per layer
    max_file: int = 256 << 20  # bytes of the file read


LayerOpener = Callable[[Layer], AbstractContextManager[IO[bytes]]]


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Checked(io.RawIOBase):
    """A read-only stream that counts and hashes what passes, and refuses more than ``limit`` bytes."""

    def __init__(self, raw: _Readable, limit: int, what: str) -> None:
        super().__init__()
        self.raw, self.limit, self.what = raw, limit, what
        self.read_bytes = 0
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.raw.read(min(len(view), self.limit - self.read_bytes + 1))
        self.read_bytes += len(data)
        if self.read_bytes > self.limit:
            raise LayoutError(f"{self.what}: more than {self.limit} bytes")
        self.sha256.update(data)
        view[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def read_file(layers: Sequence[Layer], open_layer: LayerOpener, path: str, limits: Limits = Limits()) -> bytes | None:
    """The content of ``path`` (e.g. ``var/lib/dpkg/status``) in the image made of ``layers`` (bottom
    first, as a manifest lists them), or None when no layer has it or a higher layer removed it.
    A symbolic link or other non-regular file at ``path`` is an error, not followed."""
    wanted = _clean(path)
    for layer in reversed(layers):
        found, gone = _scan(layer, open_layer, wanted, limits)
        if found is not None:
            return found
        if gone:
            return None
    return None


def _scan(layer: Layer, open_layer: LayerOpener, wanted: str, limits: Limits) -> tuple[bytes | None, bool]:
    """(the file's content if this layer has it, whether this layer removes it); the layer read to its end."""
    found: bytes | None = None
    gone = False
    if "zstd" in layer.media_type:
        raise LayoutError(f"layer {layer.digest}: zstd layers are not read here ({layer.media_type})")
    with open_layer(layer) as raw:
        compressed = _Checked(raw, layer.size, f"layer {layer.digest}")
        unpacked = _Checked(_decompressor(compressed, layer), limits.max_unpacked, f"layer {layer.digest} unpacked")
        with tarfile.open(fileobj=unpacked, mode="r|") as tar:
            for member in tar:
                name = _clean(member.name)
                if name == wanted:
                    found = _regular(tar, member, limits, layer)
                elif _removes(name, wanted):
                    gone = True
        unpacked.drain()
        compressed.drain()
    if compressed.read_bytes != layer.size or f"sha256:{compressed.sha256.hexdigest()}" != layer.digest:
        raise LayoutError(f"layer {layer.digest}: the registry's blob does not match its digest and size")
    return found, gone and found is None


def _regular(tar: tarfile.TarFile, member: tarfile.TarInfo, limits: Limits, layer: Layer) -> bytes:
    if not member.isreg():
        raise LayoutError(f"layer {layer.digest}: {member.name} is not a regular file")
    if member.size > limits.max_file:
        raise LayoutError(f"layer {layer.digest}: {member.name} is larger than {limits.max_file} bytes")
    stream = tar.extractfile(member)
    if stream is None:
        raise LayoutError(f"layer {layer.digest}: {member.name} cannot be read")
    return stream.read(member.size)


def _removes(name: str, wanted: str) -> bool:
    """Whether tar entry ``name`` is a whiteout of ``wanted`` or of a folder holding it."""
    folder, _, base = name.rpartition("/")
    if base == OPAQUE:
        return wanted.startswith(f"{folder}/") if folder else True
    if base.startswith(WHITEOUT):
        removed = f"{folder}/{base[len(WHITEOUT):]}" if folder else base[len(WHITEOUT):]
        return wanted == removed or wanted.startswith(f"{removed}/")
    return False


def _clean(name: str) -> str:
    return normpath("/" + name).lstrip("/")


def _decompressor(stream: _Checked, layer: Layer) -> _Readable:
    if layer.media_type.endswith("gzip"):  # OCI's tar+gzip and Docker's tar.gzip
        return gzip.GzipFile(fileobj=stream, mode="rb")
    return stream  # an uncompressed tar


def layers_of(manifest: dict[str, object]) -> list[Layer]:
    """The layers an image manifest lists, bottom first."""
    found = manifest.get("layers")
    if not isinstance(found, list):
        raise LayoutError("the image manifest lists no layers")
    out = []
    for d in found:
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str) or not isinstance(d.get("size"), int):
            raise LayoutError("the image manifest has a malformed layer descriptor")
        out.append(Layer(d["digest"], d["size"], str(d.get("mediaType", ""))))
    return out

