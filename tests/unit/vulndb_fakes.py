"""An in-memory registry for the vulnerability database artifact (factory.build.vulndb), and builders of
database folders and hostile layers. No process, no socket."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from factory.build import vulndb
from factory.core.errors import RegistryError
from factory.oci.layout import sha256_digest

DATA = Path(__file__).resolve().parents[1] / "data" / "trivy-db"
NOW = datetime.fromisoformat("2026-11-28T12:00:00+00:00")  # 12 h after the fixture database was built


class FakeDbRegistry:
    """The four calls vulndb makes, over dicts; counts the blob downloads."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.downloads = 0
        self.unreachable = False

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        if self.unreachable:
            raise RegistryError("connection refused", method="GET", url=f"https://mirror/v2/{repo}/manifests/{reference}")
        if (repo, reference) not in self.manifests:
            raise RegistryError("manifest unknown", method="GET", status=404,
                                url=f"https://mirror/v2/{repo}/manifests/{reference}")
        raw, media_type = self.manifests[repo, reference]
        return raw, media_type, sha256_digest(raw)

    @contextmanager
    def open_blob(self, repo: str, digest: str, *, max_bytes: int) -> Iterator[BinaryIO]:
        self.downloads += 1
        yield io.BytesIO(self.blobs[digest][:max_bytes])

    def push_blob(self, repo: str, digest: str, data_or_path: bytes | Path) -> bool:
        data = data_or_path if isinstance(data_or_path, bytes) else Path(data_or_path).read_bytes()
        assert sha256_digest(data) == digest
        new = digest not in self.blobs
        self.blobs[digest] = data
        return new

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> str:
        digest = sha256_digest(raw)
        self.manifests[repo, reference] = self.manifests[repo, digest] = (raw, media_type)
        return digest

    def manifest(self, repo: str, reference: str) -> dict:
        return json.loads(self.manifests[repo, reference][0])

    def serve_layer(self, repo: str, tag: str, layer: bytes, *, media_type: str = vulndb.LAYER_TYPE,
                    digest: str | None = None) -> str:
        """Publish ``layer`` as the database artifact, as it is (a hostile or broken one)."""
        digest = digest or sha256_digest(layer)
        self.blobs[digest] = layer
        manifest = {"schemaVersion": 2, "mediaType": vulndb.MANIFEST_TYPE,
                    "config": {"mediaType": vulndb.CONFIG_TYPE, "digest": sha256_digest(b"{}"), "size": 2},
                    "layers": [{"mediaType": media_type, "digest": digest, "size": len(layer)}]}
        return self.put_manifest(repo, tag, json.dumps(manifest).encode(), vulndb.MANIFEST_TYPE)


def db_folder(where: Path, *, updated_at: str = "2026-11-28T00:00:00Z", version: int = 2,
              content: bytes = b"bolt" * 10) -> Path:
    """A database folder as trivy leaves it: db/trivy.db and db/metadata.json."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "trivy.db").write_bytes(content)
    (where / "metadata.json").write_text(json.dumps({"Version": version, "UpdatedAt": updated_at}))
    return where


def tar_gz(*members: tarfile.TarInfo | tuple[str, bytes]) -> bytes:
    """A gzip'd tar of (name, data) files and ready-made TarInfo entries (links, folders)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


META = json.dumps({"Version": 2, "UpdatedAt": "2026-11-28T00:00:00Z"}).encode()
