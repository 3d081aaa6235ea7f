"""The scanner's vulnerability database, as an OCI artifact in a registry.

trivy publishes its database as a one-layer OCI artifact (``ghcr.io/aquasecurity/trivy-db:2``: config
``application/vnd.aquasec.trivy.config.v1+json``, one ``application/vnd.aquasec.trivy.db.layer.v1.tar+gzip``
layer holding ``trivy.db`` and ``metadata.json``); an org that scans where the public one is out of reach
mirrors it into its own registry (docs/gates.md). ``fetch`` brings the artifact named by
``scanner.db_repository`` into the scanner's cache through the factory's registry client (its
credentials, limits and digest checks), once per digest: a run whose cache already holds that
digest downloads nothing. ``status`` then says whether the cached database may be used: schema 2,
and built (``UpdatedAt``) no longer ago than ``scanner.db_max_age_hours``. ``push`` publishes a
``db/`` folder the same way trivy's is published (the demo, the tests, an air-gapped mirror).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from factory.core.errors import RegistryError, ScanError
from factory.core.reference import Ref
from factory.oci.layout import sha256_digest
from factory.oci.registry import Registry

CONFIG_TYPE = "application/vnd.aquasec.trivy.config.v1+json"
LAYER_TYPE = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
SCHEMA = 2  # the DB schema trivy 0.76 reads; with another one it insists on downloading
FILES = ("trivy.db", "metadata.json")
SOURCE_FILE = "factory-source.json"  # beside the database: which artifact it came from
# trivy's public database is ~80 MB compressed and ~900 MB unpacked (2026); room to grow, not to exhaust.
MAX_COMPRESSED = 1 << 30
MAX_UNPACKED = 4 << 30
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DbInfo:
    """One database as the scanner will use it."""

    source: str  # the repository and tag it was fetched from; "" when placed in the cache by hand
    digest: str  # the artifact's manifest digest, the database's version ("" when placed by hand)
    updated_at: datetime  # when trivy-db built it (metadata.json UpdatedAt)

    def age(self, now: datetime) -> timedelta:
        return now - self.updated_at

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {"source": self.source, "digest": self.digest,
                "updated_at": self.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "age_hours": round(self.age(now).total_seconds() / 3600, 1)}


@dataclass(frozen=True)
class DbStatus:
    available: bool
    detail: str  # where the database is, or why it cannot be used
    info: DbInfo | None = None


# --- using the cache ---------------------------------------------------------------------------


def status(cache_dir: Path, *, max_age: timedelta, now: datetime) -> DbStatus:
    """Whether trivy can scan offline with ``cache_dir``: the files it would otherwise download, of the
    schema it reads, built no longer than ``max_age`` ago."""
    db, meta = cache_dir / "db" / "trivy.db", cache_dir / "db" / "metadata.json"
    if not db.is_file() or db.stat().st_size == 0:
        return DbStatus(False, f"no trivy vulnerability database at {db}: set scanner.db_repository to the "
                               "database's repository, or place one there with `trivy image --download-db-only "
                               f"--cache-dir {cache_dir}` (docs/gates.md)")
    try:
        info = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return DbStatus(False, f"{meta} is missing or unreadable ({e})")
    if not isinstance(info, dict) or info.get("Version") != SCHEMA:
        version = info.get("Version") if isinstance(info, dict) else None
        return DbStatus(False, f"{meta}: database schema {version!r}, trivy needs {SCHEMA}")
    updated = _time(info.get("UpdatedAt"))
    if updated is None:
        return DbStatus(False, f"{meta}: no valid UpdatedAt ({info.get('UpdatedAt')!r}): the database's age is unknown")
    source, digest = _recorded_source(cache_dir)
    found = DbInfo(source, digest, updated)
    age_h, built = found.age(now).total_seconds() / 3600, found.as_dict(now)["updated_at"]
    if found.age(now) > max_age:
        limit = max_age.total_seconds() / 3600
        return DbStatus(False, f"the vulnerability database{_from(found)} was built {built}, {age_h:.0f} h ago, "
                               f"older than scanner.db_max_age_hours ({limit:.0f} h): refresh it or its mirror", found)
    return DbStatus(True, f"trivy database{_from(found)} built {built} ({age_h:.0f} h ago)", found)


def _from(info: DbInfo) -> str:
    return f" {info.source}@{info.digest}" if info.source else ""


def _time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else None


def _recorded_source(cache_dir: Path) -> tuple[str, str]:
    try:
        doc = json.loads((cache_dir / "db" / SOURCE_FILE).read_text())
        return str(doc["source"]), str(doc["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return "", ""


# --- fetching ----------------------------------------------------------------------------------


def fetch(registry_for: Callable[[str], Registry], source: str, cache_dir: Path) -> str:
    """Bring the database artifact ``source`` (``registry/repository:tag``) into ``cache_dir/db``;
    returns its digest. Downloads only when the cache holds another digest. Raises ScanError with
    what went wrong (registry errors included), never leaving a half-written database behind."""
    try:
        ref = Ref.parse(source)
    except (ValueError, RegistryError) as e:  # Ref.parse raises RegistryError
        raise ScanError(f"scanner.db_repository {source!r}: {e}") from None
    try:
        registry = registry_for(ref.registry)
        raw, _, digest = registry.get_manifest(ref.repository, ref.reference)
        if _recorded_source(cache_dir)[1] == digest and all((cache_dir / "db" / f).is_file() for f in FILES):
            return digest
        layer = _db_layer(raw, source)
        with tempfile.TemporaryDirectory(prefix=".db-", dir=_mkdir(cache_dir)) as tmp:
            blob = Path(tmp) / "db.tar.gz"
            _download(registry, ref.repository, layer, blob)
            _unpack(blob, Path(tmp) / "db")
            (Path(tmp) / "db" / SOURCE_FILE).write_text(json.dumps({"source": source, "digest": digest}))
            _replace(Path(tmp) / "db", cache_dir / "db")
    except RegistryError as e:
        raise ScanError(f"cannot fetch the vulnerability database {source}: {e}") from None
    except OSError as e:
        raise ScanError(f"cannot write the vulnerability database into {cache_dir}: {e}") from None
    return digest


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _db_layer(raw: bytes, source: str) -> Mapping[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise ScanError(f"{source}: the manifest is not JSON") from None
    layers = doc.get("layers") if isinstance(doc, dict) else None
    found = [d for d in layers or [] if isinstance(d, dict) and d.get("mediaType") == LAYER_TYPE]
    if len(found) != 1 or not isinstance(found[0].get("digest"), str) or not isinstance(found[0].get("size"), int):
        raise ScanError(f"{source} is not a trivy database artifact: expected one layer of type {LAYER_TYPE} "
                        "(mirror it with `oras cp`, see docs/gates.md)")
    if found[0]["size"] > MAX_COMPRESSED:
        raise ScanError(f"{source}: database layer of {found[0]['size']} bytes, more than {MAX_COMPRESSED}")
    return found[0]


def _download(registry: Registry, repo: str, layer: Mapping[str, Any], dest: Path) -> None:
    digest, size = layer["digest"], layer["size"]
    hasher = hashlib.sha256()
    with registry.open_blob(repo, digest, max_bytes=size) as body, dest.open("wb") as out:
        while chunk := body.read(_CHUNK):
            hasher.update(chunk)
            out.write(chunk)
    if f"sha256:{hasher.hexdigest()}" != digest:
        raise ScanError(f"the database layer does not match its digest {digest}")


def _unpack(blob: Path, dest: Path) -> None:
    """Only ``trivy.db`` and ``metadata.json``, regular files at the top, within MAX_UNPACKED in all."""
    dest.mkdir()
    total = 0
    try:
        with tarfile.open(blob, mode="r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name not in FILES or not member.isreg():
                    continue
                total += member.size
                if total > MAX_UNPACKED:
                    raise ScanError(f"the database unpacks to more than {MAX_UNPACKED} bytes")
                source = tar.extractfile(member)
                if source is None:
                    continue
                with source, (dest / name).open("wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:  # corrupt deflate data: zlib.error
        raise ScanError(f"the database layer is not a gzip'd tar: {e}") from None
    missing = [f for f in FILES if not (dest / f).is_file()]
    if missing:
        raise ScanError(f"the database layer holds no {', '.join(missing)}")


def _replace(new: Path, current: Path) -> None:
    """Swap the whole folder: a scan never sees a trivy.db of one version with another's metadata."""
    old = current.with_name(current.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if current.exists():
        current.rename(old)
    new.rename(current)
    shutil.rmtree(old, ignore_errors=True)


# --- publishing ----------------------------------------------------------------------------------


def push(registry: Registry, repository: str, tag: str, db_dir: Path, *,
         updated_at: datetime | None = None) -> str:
    """Publish ``db_dir`` (trivy.db, metadata.json) as trivy's database artifact at ``repository:tag``;
    returns the manifest digest. ``updated_at`` rewrites metadata.json's times (a locally made database,
    as ``factory seed`` makes the upstream images: dated when it is made)."""
    meta = json.loads((db_dir / "metadata.json").read_text())
    if updated_at is not None:
        stamp = updated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        next_update = (updated_at + timedelta(hours=24)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta = {**meta, "UpdatedAt": stamp, "DownloadedAt": stamp, "NextUpdate": next_update}
    layer = _tar_gz({"trivy.db": (db_dir / "trivy.db").read_bytes(),
                     "metadata.json": json.dumps(meta, sort_keys=True).encode()})
    config = b"{}"
    for blob in (config, layer):
        registry.push_blob(repository, sha256_digest(blob), blob)
    manifest = {
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": CONFIG_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": sha256_digest(layer), "size": len(layer),
                    "annotations": {"org.opencontainers.image.title": "db.tar.gz"}}],
        "annotations": {"org.opencontainers.image.created": meta.get("UpdatedAt", "")},
    }
    return registry.put_manifest(repository, tag, json.dumps(manifest).encode(), MANIFEST_TYPE)


def _tar_gz(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()



# The demo's stand-in for trivy's public database (no internet here): tests/data/trivy-db's invented
# advisories, published into the local registry dated when seeded, as `factory seed` makes the upstreams.
FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "data" / "trivy-db" / "db"
FIXTURE_REPOSITORY, FIXTURE_TAG = "security/trivy-db", "2"


def seed_fixture(registry: Registry, *, now: datetime) -> str:
    """Push the fixture database to ``<registry>/security/trivy-db:2``; its digest."""
    if not (FIXTURE / "trivy.db").is_file():
        raise ScanError(f"no fixture database at {FIXTURE}: `factory seed trivy-db` runs from a source checkout")
    return push(registry, FIXTURE_REPOSITORY, FIXTURE_TAG, FIXTURE, updated_at=now)
