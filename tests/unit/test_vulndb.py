"""The vulnerability database as an OCI artifact: fetch (once per digest, checked, swapped whole), status
(schema, age) and push (trivy's layout), against an in-memory registry."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest

from factory.build import vulndb
from factory.core.errors import ScanError
from tests.unit.vulndb_fakes import DATA, META, NOW, FakeDbRegistry, db_folder, tar_gz

SOURCE = "mirror.example.com/security/trivy-db:2"
REPO = "security/trivy-db"
DAY = timedelta(hours=48)


def registry_with(db_dir: Path = DATA / "db", **kw) -> FakeDbRegistry:
    registry = FakeDbRegistry()
    vulndb.push(registry, REPO, "2", db_dir, **kw)
    return registry


def fetch(registry: FakeDbRegistry, cache: Path, source: str = SOURCE) -> str:
    return vulndb.fetch(lambda host: registry, source, cache)


def leftovers(cache: Path) -> list[str]:
    """What a failed or finished fetch must not leave: its temporary folder, the swapped-out database."""
    return sorted(p.name for p in cache.iterdir() if p.name != "db") if cache.exists() else []


# --- status ------------------------------------------------------------------------------------


def test_the_fixture_database_is_usable_within_the_limit(tmp_path):
    cache = tmp_path / "cache"
    db_folder(cache / "db")
    status = vulndb.status(cache, max_age=DAY, now=NOW)
    assert status.available and status.info is not None
    assert status.info.as_dict(NOW) == {"source": "", "digest": "", "updated_at": "2026-11-28T00:00:00Z",
                                        "age_hours": 12.0}
    assert status.detail == "trivy database built 2026-11-28T00:00:00Z (12 h ago)"


def test_a_database_older_than_the_limit_is_unavailable_and_says_so(tmp_path):
    db_folder(tmp_path / "db")
    status = vulndb.status(tmp_path, max_age=timedelta(hours=6), now=NOW)
    assert not status.available and status.info is not None  # the age is known: it is in the record
    assert "built 2026-11-28T00:00:00Z, 12 h ago, older than scanner.db_max_age_hours (6 h)" in status.detail
    assert "refresh it or its mirror" in status.detail
    # in force up to the limit itself
    assert vulndb.status(tmp_path, max_age=timedelta(hours=12), now=NOW).available


@pytest.mark.parametrize("updated_at", ["yesterday", "2026-11-28T00:00:00", "", None, 20261128])
def test_a_database_of_unknown_age_is_unavailable(tmp_path, updated_at):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "trivy.db").write_bytes(b"bolt")
    meta = {"Version": 2} if updated_at is None else {"Version": 2, "UpdatedAt": updated_at}
    (tmp_path / "db" / "metadata.json").write_text(json.dumps(meta))
    status = vulndb.status(tmp_path, max_age=DAY, now=NOW)
    assert not status.available and status.info is None
    assert f"no valid UpdatedAt ({updated_at!r}): the database's age is unknown" in status.detail


@pytest.mark.parametrize("metadata, complaint", [
    (None, "missing or unreadable"),
    ("not json", "missing or unreadable"),
    ('{"Version": 1, "UpdatedAt": "2026-11-28T00:00:00Z"}', "database schema 1, trivy needs 2"),
    ('{"UpdatedAt": "2026-11-28T00:00:00Z"}', "database schema None, trivy needs 2"),
    ('[2]', "database schema None, trivy needs 2"),
])
def test_a_database_of_another_schema_or_without_metadata_is_unavailable(tmp_path, metadata, complaint):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "trivy.db").write_bytes(b"bolt")
    if metadata is not None:
        (tmp_path / "db" / "metadata.json").write_text(metadata)
    status = vulndb.status(tmp_path, max_age=DAY, now=NOW)
    assert not status.available and complaint in status.detail
    assert str(tmp_path / "db" / "metadata.json") in status.detail


@pytest.mark.parametrize("content", [None, b""])
def test_no_database_says_where_and_how_to_get_one(tmp_path, content):
    if content is not None:
        db_folder(tmp_path / "db", content=content)
    status = vulndb.status(tmp_path, max_age=DAY, now=NOW)
    assert not status.available
    assert f"no trivy vulnerability database at {tmp_path / 'db' / 'trivy.db'}" in status.detail
    assert "scanner.db_repository" in status.detail and "--download-db-only" in status.detail


# --- push ----------------------------------------------------------------------------------------


def test_push_publishes_the_folder_as_trivy_publishes_its_database():
    registry = registry_with()
    manifest = registry.manifest(REPO, "2")
    assert (manifest["mediaType"], manifest["artifactType"]) == (vulndb.MANIFEST_TYPE, vulndb.CONFIG_TYPE)
    assert manifest["config"]["mediaType"] == "application/vnd.aquasec.trivy.config.v1+json"
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
    assert layer["annotations"] == {"org.opencontainers.image.title": "db.tar.gz"}
    assert registry.blobs[manifest["config"]["digest"]] == b"{}"
    blob = registry.blobs[layer["digest"]]
    assert len(blob) == layer["size"]
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["metadata.json", "trivy.db"]
        assert tar.extractfile("trivy.db").read() == (DATA / "db" / "trivy.db").read_bytes()
        assert json.loads(tar.extractfile("metadata.json").read())["UpdatedAt"] == "2026-11-28T00:00:00Z"
    assert manifest["annotations"]["org.opencontainers.image.created"] == "2026-11-28T00:00:00Z"


def test_push_can_date_the_database_now_without_touching_the_folder(tmp_path):
    registry = registry_with(updated_at=NOW)
    (layer,) = registry.manifest(REPO, "2")["layers"]
    with tarfile.open(fileobj=io.BytesIO(registry.blobs[layer["digest"]]), mode="r:gz") as tar:
        meta = json.loads(tar.extractfile("metadata.json").read())
    assert (meta["UpdatedAt"], meta["DownloadedAt"], meta["NextUpdate"], meta["Version"]) == (
        "2026-11-28T12:00:00Z", "2026-11-28T12:00:00Z", "2026-11-29T12:00:00Z", 2)
    assert json.loads((DATA / "db" / "metadata.json").read_text())["UpdatedAt"] == "2026-11-28T00:00:00Z"


def test_equal_folders_push_equal_digests():
    assert registry_with().manifest(REPO, "2") == registry_with().manifest(REPO, "2")


# --- fetch -----------------------------------------------------------------------------------------


def test_fetch_brings_the_artifact_into_the_cache_and_records_where_from(tmp_path):
    registry = registry_with()
    cache = tmp_path / "cache"
    digest = fetch(registry, cache)
    assert digest == registry.get_manifest(REPO, "2")[2]
    assert (cache / "db" / "trivy.db").read_bytes() == (DATA / "db" / "trivy.db").read_bytes()
    assert json.loads((cache / "db" / "factory-source.json").read_text()) == {"source": SOURCE, "digest": digest}
    status = vulndb.status(cache, max_age=DAY, now=NOW)
    assert status.available and (status.info.source, status.info.digest) == (SOURCE, digest)
    assert f"{SOURCE}@{digest}" in status.detail
    assert leftovers(cache) == []


def test_fetch_downloads_nothing_when_the_cache_has_that_digest(tmp_path):
    registry = registry_with()
    first = fetch(registry, tmp_path)
    mtime = (tmp_path / "db" / "trivy.db").stat().st_mtime_ns
    assert fetch(registry, tmp_path) == first and registry.downloads == 1
    assert (tmp_path / "db" / "trivy.db").stat().st_mtime_ns == mtime
    # a cache that lost a file is fetched again, digest or not
    (tmp_path / "db" / "metadata.json").unlink()
    assert fetch(registry, tmp_path) == first and registry.downloads == 2


def test_a_new_digest_replaces_the_whole_database(tmp_path):
    registry = registry_with()
    first = fetch(registry, tmp_path)
    (tmp_path / "db" / "stale-file").write_text("from the old version")
    vulndb.push(registry, REPO, "2", DATA / "db-next")
    second = fetch(registry, tmp_path)
    assert second != first and registry.downloads == 2
    assert (tmp_path / "db" / "trivy.db").read_bytes() == (DATA / "db-next" / "trivy.db").read_bytes()
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["factory-source.json", "metadata.json",
                                                                   "trivy.db"]
    assert vulndb.status(tmp_path, max_age=DAY, now=NOW).info.digest == second
    assert leftovers(tmp_path) == []


def broken_artifact(registry: FakeDbRegistry, case: str) -> None:
    good = tar_gz(("trivy.db", b"bolt"), ("metadata.json", META))
    if case == "media type":
        registry.serve_layer(REPO, "2", good, media_type="application/vnd.oci.image.layer.v1.tar+gzip")
    elif case == "two layers":
        digest = registry.serve_layer(REPO, "2", good)
        manifest = json.loads(registry.manifests[REPO, digest][0])
        manifest["layers"] *= 2
        registry.put_manifest(REPO, "2", json.dumps(manifest).encode(), vulndb.MANIFEST_TYPE)
    elif case == "not json":
        registry.put_manifest(REPO, "2", b"<html>", vulndb.MANIFEST_TYPE)
    elif case == "digest":
        registry.serve_layer(REPO, "2", good, digest="sha256:" + "0" * 64)
    elif case == "not gzip":
        registry.serve_layer(REPO, "2", b"PK\x03\x04 a zip file")
    elif case == "corrupt":
        registry.serve_layer(REPO, "2", good[:20] + bytes(40) + good[60:])
    elif case == "no metadata":
        registry.serve_layer(REPO, "2", tar_gz(("trivy.db", b"bolt")))
    elif case == "only hostile members":
        registry.serve_layer(REPO, "2", tar_gz(*hostile_members()))


def hostile_members() -> list:
    """Every way a layer could try to write elsewhere or pass a link off as the database."""
    link = tarfile.TarInfo("trivy.db")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard = tarfile.TarInfo("metadata.json")
    hard.type, hard.linkname = tarfile.LNKTYPE, "../../metadata.json"
    folder = tarfile.TarInfo("trivy.db/")
    folder.type = tarfile.DIRTYPE
    return [link, hard, folder, ("../trivy.db", b"escaped"), ("/tmp/metadata.json", META),
            ("db/trivy.db", b"nested"), ("../../outside", b"escaped")]


@pytest.mark.parametrize("case, complaint", [
    ("media type", "is not a trivy database artifact: expected one layer of type "
                   "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip (mirror it with `oras cp`"),
    ("two layers", "is not a trivy database artifact"),
    ("not json", "the manifest is not JSON"),
    ("digest", "the database layer does not match its digest sha256:000"),
    ("not gzip", "the database layer is not a gzip'd tar"),
    ("corrupt", "the database layer is not a gzip'd tar"),
    ("no metadata", "the database layer holds no metadata.json"),
    ("only hostile members", "the database layer holds no trivy.db, metadata.json"),
])
def test_a_bad_artifact_is_an_error_and_leaves_the_database_as_it_was(tmp_path, case, complaint):
    cache = tmp_path / "a" / "cache"
    registry = registry_with()
    before = fetch(registry, cache)
    broken_artifact(registry, case)
    with pytest.raises(ScanError) as e:
        fetch(registry, cache)
    assert complaint in str(e.value)
    assert str(e.value).startswith(SOURCE) or "database layer" in str(e.value)
    assert (cache / "db" / "trivy.db").read_bytes() == (DATA / "db" / "trivy.db").read_bytes()
    assert vulndb.status(cache, max_age=DAY, now=NOW).info.digest == before
    assert leftovers(cache) == [] and sorted(p.name for p in tmp_path.rglob("*") if "cache" not in p.parts) == ["a"]


def test_a_bad_artifact_on_the_first_fetch_leaves_no_database(tmp_path):
    registry = FakeDbRegistry()
    broken_artifact(registry, "no metadata")
    with pytest.raises(ScanError, match=r"holds no metadata\.json"):
        fetch(registry, tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert not vulndb.status(tmp_path, max_age=DAY, now=NOW).available


def test_only_the_two_files_are_taken_from_a_layer_with_more(tmp_path):
    registry = FakeDbRegistry()
    registry.serve_layer(REPO, "2", tar_gz(*hostile_members(), ("./trivy.db", b"bolt"), ("metadata.json", META),
                                           ("README", b"extra"), ("index/other.db", b"extra")))
    fetch(registry, tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache" / "db").iterdir()) == ["factory-source.json",
                                                                           "metadata.json", "trivy.db"]
    assert (tmp_path / "cache" / "db" / "trivy.db").read_bytes() == b"bolt"  # the regular file, not the link
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # nothing escaped
    assert vulndb.status(tmp_path / "cache", max_age=DAY, now=NOW).available


def test_size_limits(tmp_path, monkeypatch):
    registry = FakeDbRegistry()
    registry.serve_layer(REPO, "2", tar_gz(("trivy.db", b"b" * 5000), ("metadata.json", META)))
    monkeypatch.setattr(vulndb, "MAX_UNPACKED", 4000)
    with pytest.raises(ScanError, match="unpacks to more than 4000 bytes"):
        fetch(registry, tmp_path)
    monkeypatch.setattr(vulndb, "MAX_COMPRESSED", 10)
    with pytest.raises(ScanError, match=r"database layer of [0-9]+ bytes, more than 10"):
        fetch(registry, tmp_path)
    assert registry.downloads == 1 and leftovers(tmp_path) == []  # the second was refused before reading


@pytest.mark.parametrize("source, complaint", [
    ("Not A Ref!", "scanner.db_repository 'Not A Ref!'"),
    (SOURCE, f"cannot fetch the vulnerability database {SOURCE}: GET https://mirror/v2/{REPO}/manifests/2: "
             "connection refused"),
])
def test_an_unreachable_or_wrong_repository_is_an_error(tmp_path, source, complaint):
    registry = FakeDbRegistry()
    registry.unreachable = True
    with pytest.raises(ScanError) as e:
        fetch(registry, tmp_path, source)
    assert complaint in str(e.value)


def test_a_missing_tag_names_the_repository(tmp_path):
    with pytest.raises(ScanError, match=f"cannot fetch the vulnerability database {SOURCE}: .*manifest unknown"):
        fetch(FakeDbRegistry(), tmp_path)


def test_a_cache_that_cannot_be_written_is_an_error(tmp_path):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    with pytest.raises(ScanError, match=f"cannot write the vulnerability database into {tmp_path / 'cache'}"):
        fetch(registry_with(), tmp_path / "cache")


def test_the_registry_is_asked_for_the_repositorys_host(tmp_path):
    asked = []
    registry = registry_with()
    vulndb.fetch(lambda host: asked.append(host) or registry, SOURCE, tmp_path)
    assert asked == ["mirror.example.com"]
