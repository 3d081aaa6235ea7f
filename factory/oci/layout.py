"""Read an OCI image layout: the directory (or tar archive) that buildx's OCI exporter writes.

``docker buildx build --output type=oci,dest=image.tar`` writes ``oci-layout``, ``index.json`` and
``blobs/sha256/...``. Its ``index.json`` is a wrapper: its single entry points at the image itself,
which is an image index for a multi-platform build (or one image manifest for a single platform).
``OciLayout.index`` is that unwrapped image, the object whose digest is "the image" everywhere else
(the registry, cosign, the report).

Only JSON documents (indexes, manifests, configs) are read into memory; layers stay files.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.core import platforms
from factory.core.errors import LayoutError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# What we Accept when reading manifests: every kind a registry may hold for an image.
ACCEPT_MANIFESTS = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)

# BuildKit marks its attestation manifests (provenance/SBOM) inside the index like this.
_REFERENCE_TYPE = "vnd.docker.reference.type"


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest or index says about one blob."""

    media_type: str
    digest: str
    size: int
    platform: Mapping[str, Any] | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Descriptor:
        try:
            return cls(media_type=d.get("mediaType", ""), digest=d["digest"], size=int(d["size"]),
                       platform=d.get("platform"), annotations=d.get("annotations") or {})
        except (KeyError, TypeError, ValueError) as e:
            raise LayoutError(f"malformed descriptor {dict(d)!r}: {e}") from None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def is_attestation(self) -> bool:
        return self.annotations.get(_REFERENCE_TYPE) == "attestation-manifest"


@dataclass(frozen=True)
class PlatformImage:
    """One platform's image inside the layout."""

    platform: str  # normalised by factory.platforms, e.g. "linux/arm64"
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @property
    def compressed_size(self) -> int:
        """What a pull downloads for this platform: config plus compressed layers."""
        return self.config.size + sum(layer.size for layer in self.layers)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def platform_string(p: Mapping[str, Any]) -> str:
    """The normal form of an OCI platform object ("linux/arm64")."""
    return _normal("/".join(x for x in (p.get("os", ""), p.get("architecture", ""), p.get("variant", "")) if x))


def _normal(text: str) -> str:
    # Platforms the factory does not build (windows, unknown/unknown) are kept as written.
    try:
        return str(platforms.parse(text))
    except ValueError:
        return text


class OciLayout:
    """An extracted OCI image layout. Build with ``from_dir`` or ``from_archive``."""

    def __init__(self, root: Path, index: Descriptor, images: tuple[PlatformImage, ...]) -> None:
        self.root = root
        self.index = index
        self.images = images

    @classmethod
    def from_archive(cls, archive: Path, workdir: Path) -> OciLayout:
        """Extract an OCI archive (tar) into ``workdir`` and read it."""
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(archive) as tar:
                # The "data" filter refuses absolute paths, links out of the tree and device files.
                tar.extractall(workdir, filter="data")
        except (OSError, tarfile.TarError) as e:
            raise LayoutError(f"{archive}: cannot extract OCI archive: {e}") from None
        return cls.from_dir(workdir)

    @classmethod
    def from_dir(cls, root: Path) -> OciLayout:
        root = Path(root)
        marker = _read_json_file(root / "oci-layout")
        if marker.get("imageLayoutVersion") != "1.0.0":
            raise LayoutError(f"{root}/oci-layout: unsupported imageLayoutVersion "
                              f"{marker.get('imageLayoutVersion')!r} (expected '1.0.0')")
        top = _read_json_file(root / "index.json")
        index = _unwrap(top, root)
        layout = cls(root, index, ())
        layout.images = tuple(layout._platform_images())
        return layout

    # --- reading blobs ---------------------------------------------------------------------

    def blob(self, digest: str) -> Path:
        """The file holding ``digest``; raises when it is missing."""
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
            raise LayoutError(f"{digest!r} is not a sha256 digest")
        path = self.root / "blobs" / algo / hexpart
        if not path.is_file():
            raise LayoutError(f"{self.root}: blob {digest} is missing")
        return path

    def read(self, desc: Descriptor) -> bytes:
        """A (small, JSON) blob's bytes, checked against its descriptor's digest and size."""
        data = self.blob(desc.digest).read_bytes()
        if len(data) != desc.size or sha256_digest(data) != desc.digest:
            raise LayoutError(f"{self.root}: blob {desc.digest} does not match its descriptor "
                              f"(size {len(data)}, expected {desc.size})")
        return data

    def read_json(self, desc: Descriptor) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(self.read(desc))
            return doc
        except json.JSONDecodeError as e:
            raise LayoutError(f"{self.root}: blob {desc.digest} is not JSON: {e}") from None

    # --- the image ---------------------------------------------------------------------------

    @property
    def platforms(self) -> tuple[str, ...]:
        return tuple(img.platform for img in self.images)

    @property
    def manifests(self) -> dict[str, str]:
        """platform -> manifest digest."""
        return {img.platform: img.manifest.digest for img in self.images}

    def image(self, platform: str) -> PlatformImage:
        wanted = _normal(platform)
        for img in self.images:
            if img.platform == wanted:
                return img
        raise LayoutError(f"{self.root}: no image for platform {platform} (has {', '.join(self.platforms)})")

    def config(self, platform: str) -> dict[str, Any]:
        """The image configuration (env, user, labels, rootfs ...) of one platform."""
        return self.read_json(self.image(platform).config)

    def layers(self, platform: str) -> tuple[Descriptor, ...]:
        return self.image(platform).layers

    def walk(self) -> Iterator[tuple[Descriptor, bytes]]:
        """Every index and manifest under the image with its raw bytes, children before parents,
        ending with ``self.index``: the order in which a registry accepts them."""
        seen: set[str] = set()

        def visit(desc: Descriptor) -> Iterator[tuple[Descriptor, bytes]]:
            if desc.digest in seen:
                return
            seen.add(desc.digest)
            raw = self.read(desc)
            if desc.is_index:
                for child in _children(json.loads(raw), desc):
                    yield from visit(child)
            yield desc, raw

        yield from visit(self.index)

    def blobs(self) -> list[Descriptor]:
        """The non-manifest blobs (configs and layers) of every manifest, each once."""
        found: dict[str, Descriptor] = {}
        for desc, raw in self.walk():
            if desc.is_index:
                continue
            doc = json.loads(raw)
            for d in (doc.get("config"), *doc.get("layers", [])):
                if d is not None:
                    blob = Descriptor.from_json(d)
                    found.setdefault(blob.digest, blob)
        return list(found.values())

    def _platform_images(self) -> Iterator[PlatformImage]:
        for desc, raw in self.walk():
            if desc.is_index or desc.is_attestation:
                continue
            doc = json.loads(raw)
            config = Descriptor.from_json(doc.get("config") or {})
            platform = desc.platform
            if platform is None:  # a single-platform layout: the config says which platform
                platform = self.read_json(config)
            yield PlatformImage(
                platform=platform_string(platform),
                manifest=desc,
                config=config,
                layers=tuple(Descriptor.from_json(d) for d in doc.get("layers", [])),
            )


def _read_json_file(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        return doc
    except FileNotFoundError:
        raise LayoutError(f"{path} not found: not an OCI image layout "
                          "(expected the output of `docker buildx build --output type=oci`)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise LayoutError(f"{path}: {e}") from None


def _unwrap(top: dict[str, Any], root: Path) -> Descriptor:
    """index.json -> the descriptor of the image it holds (buildx writes exactly one entry)."""
    entries = top.get("manifests") or []
    if len(entries) != 1:
        raise LayoutError(f"{root}/index.json holds {len(entries)} entries; expected exactly one "
                          "image (one `docker buildx build --output type=oci` per layout)")
    desc = Descriptor.from_json(entries[0])
    if not (desc.is_index or desc.media_type in MANIFEST_TYPES):
        raise LayoutError(f"{root}/index.json: entry has media type {desc.media_type!r}, "
                          "expected an image index or manifest")
    return desc


def _children(doc: dict[str, Any], parent: Descriptor) -> list[Descriptor]:
    children = [Descriptor.from_json(d) for d in doc.get("manifests") or []]
    if not children:
        raise LayoutError(f"index {parent.digest} lists no manifests")
    return children
