"""The registry client against the real registry on 127.0.0.1:5000, with a real buildx OCI layout."""

from __future__ import annotations

import json
import uuid

import pytest

from factory.adapters.docker import Docker
from factory.adapters.tools import Runner
from factory.core.errors import RegistryError, TagExists
from factory.oci.layout import OciLayout, sha256_digest
from factory.oci.registry import Registry
from tests.integration.registry_servers import own_registry

REGISTRY = "127.0.0.1:5000"


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> OciLayout:
    """A tiny two-platform image, built by buildx through the factory's docker adapter."""
    work = tmp_path_factory.mktemp("image")
    ctx = work / "ctx"
    ctx.mkdir()
    # Unique content per run, so that nothing is already in the registry from an earlier run.
    (ctx / "hello.txt").write_text(f"hello {uuid.uuid4()}\n")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    archive = work / "image.tar"
    Docker(Runner()).build(
        ctx, platforms=["linux/amd64", "linux/arm64"],
        output={"type": "oci", "dest": str(archive), "rewrite-timestamp": "true"},
        build_args={"SOURCE_DATE_EPOCH": "0"},
    )
    return OciLayout.from_archive(archive, work / "layout")


@pytest.fixture
def repo() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def registry():
    with Registry(REGISTRY, insecure=True, timeout=10, retries=2, backoff=0.05) as r:
        yield r


def test_push_layout_by_digest(layout, repo, registry):
    result = registry.push_layout(layout, repo)

    assert result.index_digest == layout.index.digest
    assert set(result.manifests) == {"linux/amd64", "linux/arm64"}
    assert result.blobs_uploaded == len(layout.blobs()) and result.blobs_skipped == 0
    assert result.bytes == sum(b.size for b in layout.blobs())
    # What the registry serves is byte-for-byte what buildx wrote.
    raw, media_type, digest = registry.get_manifest(repo, layout.index.digest)
    assert digest == layout.index.digest == sha256_digest(raw)
    assert media_type == layout.index.media_type
    platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
                 for m in json.loads(raw)["manifests"]}
    assert platforms == result.manifests
    for platform, manifest_digest in result.manifests.items():
        found = registry.head_manifest(repo, manifest_digest)
        assert found is not None and found.digest == manifest_digest
        for layer in layout.layers(platform):
            assert registry.get_blob(repo, layer.digest) == layout.blob(layer.digest).read_bytes()
    # Pushed by digest only: no tag exists.
    assert registry.list_tags(repo) == []


def test_second_push_uploads_nothing(layout, repo, registry):
    registry.push_layout(layout, repo)
    before = registry.requests_made.copy()
    again = registry.push_layout(layout, repo)
    assert again.index_digest == layout.index.digest
    assert (again.blobs_uploaded, again.blobs_skipped, again.bytes) == (0, len(layout.blobs()), 0)
    used = registry.requests_made - before
    assert used["POST"] == 0  # no upload session was opened


def test_tag_and_immutable_guard(layout, repo, registry):
    result = registry.push_layout(layout, repo)
    assert registry.list_tags(repo) == []

    registry.tag(repo, result.index_digest, "demo-v1.0.0", expect_absent=True)
    assert registry.list_tags(repo) == ["demo-v1.0.0"]
    assert registry.head_manifest(repo, "demo-v1.0.0").digest == result.index_digest
    # Re-running the same step (same digest) is not a conflict.
    registry.tag(repo, result.index_digest, "demo-v1.0.0", expect_absent=True)

    other = result.manifests["linux/amd64"]
    with pytest.raises(TagExists) as err:
        registry.tag(repo, other, "demo-v1.0.0", expect_absent=True)
    assert result.index_digest in str(err.value) and other in str(err.value)
    assert registry.head_manifest(repo, "demo-v1.0.0").digest == result.index_digest  # did not move

    # A floating tag moves.
    registry.tag(repo, result.index_digest, "demo")
    registry.tag(repo, other, "demo")
    assert registry.head_manifest(repo, "demo").digest == other


def test_list_tags_with_page_size(layout, repo, registry):
    result = registry.push_layout(layout, repo)
    names = [f"t{i}" for i in range(5)]
    for name in names:
        registry.tag(repo, result.index_digest, name)
    # distribution 2.8 (Debian's) ignores n= on tags/list and answers in one page; newer registries
    # page it. Either way every tag comes back. Link-following itself is shown on the catalog below.
    assert sorted(registry.list_tags(repo, page_size=2)) == names
    assert sorted(registry.list_tags(repo)) == names


def test_pagination_follows_link_headers(tmp_path):
    """On a fresh registry of our own (so the catalog holds exactly our 5 repositories)."""
    with own_registry(tmp_path) as host, Registry(host, insecure=True, timeout=10) as r:
        names = [f"page/r{i}" for i in range(5)]
        for name in names:
            assert r.push_blob(name, sha256_digest(name.encode()), name.encode())
        before = r.requests_made["GET"]
        assert r.catalog(page_size=2) == names
        assert r.requests_made["GET"] - before == 3  # pages of 2, 2, 1, linked by rel="next"
        assert r.catalog() == names


def test_push_blob_from_bytes_and_skip(repo, registry):
    data = f"blob {uuid.uuid4()}".encode()
    digest = sha256_digest(data)
    assert not registry.blob_exists(repo, digest)
    assert registry.push_blob(repo, digest, data) is True
    assert registry.blob_exists(repo, digest)
    assert registry.push_blob(repo, digest, data) is False
    assert registry.get_blob(repo, digest) == data


def test_push_blob_with_wrong_digest_is_refused(repo, registry):
    wrong = sha256_digest(b"something else")
    with pytest.raises(RegistryError) as err:
        registry.push_blob(repo, wrong, b"actual content")
    assert err.value.status == 400 and err.value.code == "DIGEST_INVALID"
    assert "DIGEST_INVALID" in str(err.value)


def test_missing_manifest(repo, registry):
    assert registry.head_manifest(repo, "nope") is None
    with pytest.raises(RegistryError) as err:
        registry.get_manifest(repo, "nope")
    assert err.value.status == 404 and err.value.method == "GET"
    assert f"/v2/{repo}/manifests/nope" in str(err.value)


def test_delete_manifest(layout, repo, registry):
    result = registry.push_layout(layout, repo)
    registry.tag(repo, result.index_digest, "gone")
    registry.delete_manifest(repo, result.index_digest)
    assert registry.head_manifest(repo, result.index_digest) is None
    assert registry.head_manifest(repo, "gone") is None


def test_ping_and_request_counts(registry):
    registry.ping()
    assert registry.requests_made["GET"] == 1


def test_unreachable_registry_is_an_environment_error():
    with (Registry("127.0.0.1:9", insecure=True, timeout=2, retries=1, backoff=0.01) as r,
          pytest.raises(RegistryError) as err):
        r.ping()
    assert err.value.exit_code == 2
    assert "not reachable" in str(err.value)
