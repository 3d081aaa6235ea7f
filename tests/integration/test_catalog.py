"""The catalog against the real registry, cosign and a real publish through the CLI.

One throwaway factory repository publishes a Debian-based image twice (linux/amd64 only, to keep
the two publishes short; the changelog compares one platform either way): the second version adds
one package (netbase: no dependencies, so nothing else arrives with it) and is built on a changed
upstream (the seeded Debian plus one file, pushed under a new tag). An unsigned image without SBOMs
sits beside them. Then `factory catalog` writes the site, which is checked as data, as HTML, and in
headless Chromium (a screenshot is kept under test-artifacts/catalog/).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import requests

from factory.consume import catalog, site
from tests.integration.conftest import REPO_ROOT
from tests.integration.workspace import INDEX_ACCEPT, Workspace, manifest_on

ARTIFACTS = REPO_ROOT / "test-artifacts" / "catalog"
ADDED_PACKAGE = "netbase"


@dataclass
class Published:
    ws: Workspace
    site: Path
    first_upstream: str
    second_upstream: str
    unsigned: str  # index digest of the image no one signed


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def _publish(ws: Workspace, name: str) -> None:
    _ok(ws.factory("render"))
    ws.commit("render")
    _ok(ws.factory("publish", name, "--report", str(ws.root / "report.json")))


def _changed_upstream(ws: Workspace, docker, seeded_debian, folder: Path) -> tuple[str, str, str]:
    """The seeded Debian plus one file, pushed as a new upstream tag: (image, tag, index digest)."""
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(f"FROM {seeded_debian.ref}\nCOPY marker /etc/upstream-marker\n")
    (folder / "marker").write_text(f"upstream rebuilt {uuid.uuid4().hex}\n")
    image, tag = f"{ws.registry}/upstream/debian-catalog-test", f"12-{uuid.uuid4().hex[:8]}"
    docker.build(folder, platforms=["linux/amd64", "linux/arm64"],
                 output={"type": "image", "name": f"{image}:{tag}", "push": "true"})
    resp = requests.head(f"http://{ws.registry}/v2/upstream/debian-catalog-test/manifests/{tag}",
                         headers={"Accept": INDEX_ACCEPT}, timeout=10)
    resp.raise_for_status()
    return image, tag, resp.headers["Docker-Content-Digest"]


@pytest.fixture(scope="module")
def published(tmp_path_factory, settings, seeded_debian, docker) -> Published:
    tmp = tmp_path_factory.mktemp("catalog")
    ws = Workspace.create(tmp / "repo", registry=settings.registry, state_dir=settings.state_dir,
                          extra_config={"helper_image": seeded_debian.ref})
    # tzdata is in minbase already: listing it makes both versions take the renderer's one-RUN path
    # (a manifest without packages gets the hardening-only layer, whose dpkg database lacks
    # ca-certificates), so that the changelog shows exactly the package the second version adds
    doc = manifest_on(seeded_debian, "cat", platforms=["linux/amd64"], variants={"debug": {}},
                      packages=["tzdata"], description="Catalog test image on the seeded Debian")
    ws.add_manifest(doc)
    _publish(ws, "cat")

    image, tag, digest = _changed_upstream(ws, docker, seeded_debian, tmp / "upstream")
    ws.add_manifest({**doc, "upstream": {"image": image, "tag": tag, "digest": digest},
                     "packages": [ADDED_PACKAGE]})
    _publish(ws, "cat")

    # An image that is not the factory's work: no signature, no SBOM attestation.
    unsigned = ws.push_dummy(docker, tmp / "dummy", "stray-v1.0.0")

    out = tmp / "site"
    proc = _ok(ws.factory("catalog", "--out", str(out)))
    assert f"-> {out / 'index.html'}" in proc.stdout
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copytree(out, ARTIFACTS / "site", dirs_exist_ok=True)
    return Published(ws, out, seeded_debian.digest, digest, unsigned)


def _entry(doc: dict, name: str) -> dict:
    return next(i for i in doc["images"] if i["name"] == name)


def test_changelog_lists_exactly_the_added_package_and_the_upstream_change(published):
    doc = json.loads((published.site / "catalog.json").read_text())
    jsonschema.Draft202012Validator(catalog.schema()).validate(doc)
    cat = _entry(doc, "cat")
    assert [v["version"] for v in cat["versions"]] == ["1.0.1", "1.0.0"]
    newest, first = cat["versions"]
    assert first["changes"] is None
    changes = newest["changes"]
    assert changes["previous"] == "1.0.0" and changes["platform"] == "linux/amd64"
    assert (changes["base_changed"], changes["base_before"], changes["base_after"]) == (
        True, published.first_upstream, published.second_upstream)
    packages = changes["packages"]
    assert [p["name"] for p in packages["added"]] == [ADDED_PACKAGE]
    assert (packages["removed"], packages["upgraded"], packages["downgraded"]) == ([], [], [])
    assert packages["unchanged"] > 50

    page = (published.site / cat["page"]).read_text()
    section = page[page.index('id="v1.0.1"'):page.index('id="v1.0.0"')]
    assert f"added <b>{ADDED_PACKAGE}</b>" in section and "Base changed" in section
    assert section.count("<li class=") == 1


def test_catalog_reads_the_registry_and_verifies(published):
    doc = json.loads((published.site / "catalog.json").read_text())
    ws = published.ws
    tags = ws.tags()
    cat, debug = _entry(doc, "cat"), _entry(doc, "cat-debug")
    assert cat["digest"] == tags["cat-v1.0.1"] == tags["cat-v1"]
    assert cat["from_line"] == f"FROM {ws.registry}/{ws.repository}:cat-v1@{tags['cat-v1']}"
    assert cat["floating_tags"] == ["cat-v1.0", "cat-v1", "cat"]
    assert cat["debug"] == "cat-debug" and debug["variant"] == "debug"
    assert debug["versions"][0]["base"]["image"] == "cat"  # the debug variant is built on its prod image
    newest = cat["versions"][0]
    assert newest["signed"] is True and newest["notes"] == []
    # One platform: buildx writes an image manifest, not an index, so the image is its own platform image.
    image = ws.manifest(tags["cat-v1.0.1"])
    assert [p["platform"] for p in newest["platforms"]] == ["linux/amd64"]
    amd = newest["platforms"][0]
    assert amd["digest"] == tags["cat-v1.0.1"]
    assert amd["layers"] == len(image["layers"]) >= 2
    assert amd["size"] == image["config"]["size"] + sum(layer["size"] for layer in image["layers"])
    assert amd["packages"] > 50
    assert amd["base_size"] > 0 and amd["overhead"] == amd["size"] - amd["base_size"]
    config = requests.get(f"http://{ws.registry}/v2/{ws.repository}/blobs/{image['config']['digest']}",
                          timeout=10).json()
    assert newest["created"] == config["config"]["Labels"]["org.opencontainers.image.created"]
    assert cat["eol"]["date"] == "2028-06-30" and cat["eol"]["status"] in ("supported", "warning")
    assert (published.site / "cosign.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")


def test_an_unsigned_image_without_sboms_is_shown_as_such(published):
    doc = json.loads((published.site / "catalog.json").read_text())
    stray = _entry(doc, "stray")
    version = stray["versions"][0]
    assert version["digest"] == published.unsigned
    assert version["signed"] is False
    assert all(p["packages"] is None for p in version["platforms"])
    assert any("does not verify" in n for n in version["notes"])
    assert "NOT signed" in (published.site / "index.html").read_text()


def test_factory_diff_between_the_two_versions(published):
    ws = published.ws
    proc = _ok(ws.factory("diff", ws.ref("cat-v1.0.0"), ws.ref("cat-v1.0.1"), "--format", "json"))
    doc = json.loads(proc.stdout)
    assert [p["name"] for p in doc["added"]] == [ADDED_PACKAGE]
    assert (doc["removed"], doc["upgraded"], doc["downgraded"]) == ([], [], [])
    table = _ok(ws.factory("diff", ws.ref("cat-v1.0.0"), ws.ref("cat-v1.0.1")))
    assert f"+ {ADDED_PACKAGE}" in table.stdout
    missing = ws.factory("diff", ws.ref("cat-v1.0.0"), ws.ref("cat-v1.0.1"), "--platform", "linux/arm64")
    assert missing.returncode == 1 and "has no linux/arm64 image" in missing.stderr


def _chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium not found: run `make setup` (scripts/bootstrap.sh installs Debian's chromium)")
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={user_data}", *args], capture_output=True, text=True, timeout=180)


def test_catalog_page_in_headless_chromium(published, tmp_path):
    index = published.site / "index.html"
    shot = ARTIFACTS / "index.png"
    shot.unlink(missing_ok=True)
    proc = _chromium(f"--screenshot={shot}", "--window-size=1280,2000", index.as_uri(), user_data=tmp_path / "a")
    assert shot.is_file() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    phone = ARTIFACTS / "index-phone.png"
    _chromium(f"--screenshot={phone}", "--window-size=390,1600", index.as_uri(), user_data=tmp_path / "b")
    assert phone.is_file()
    page = published.site / "images" / "cat.html"
    _chromium(f"--screenshot={ARTIFACTS / 'image-cat.png'}", "--window-size=1280,2000", page.as_uri(),
              user_data=tmp_path / "c")

    dom = _chromium("--dump-dom", index.as_uri(), user_data=tmp_path / "d")
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = published.site / "rendered-index.html"  # the DOM as Chromium built it, beside the original
    rendered.write_text(dom.stdout)
    try:
        doc = json.loads((published.site / "catalog.json").read_text())
        for image in doc["images"]:
            assert f'id="{image["name"]}"' in dom.stdout, image["name"]
            assert image["from_line"] in dom.stdout
        assert "never deploy" in dom.stdout.lower()
        links = site.links_in(rendered)
        assert len(links) > 10
        assert site.broken_links(published.site) == []
    finally:
        rendered.unlink()


def test_every_published_sbom_and_provenance_passes_the_strict_verifiers(published, runner, settings):
    from tests.integration.test_attestations_published import check_debian_image

    check_debian_image(published.ws, runner, settings, added=ADDED_PACKAGE)
