"""Org CAs end to end with the real BuildKit, registry and docker, on linux/amd64 and linux/arm64 (QEMU).

An org CA is made for this run (cryptography), and it issues the certificate of an HTTPS server on the
host's loopback. Images rendered by the factory and built into OCI layouts (as publish builds them)
then complete a real TLS handshake to that server from inside the container (`--network host`, under
the hardened run flags), and the built-in image checks find the CA's fingerprint in the bundle. The
same image built without the org CA fails the handshake and the check: the test can fail.

The hardening-only manifest (no packages) is also taken apart: exactly one layer over the upstream,
holding only the files the hardening changes.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import io
import json
import ssl
import stat
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from factory.build import imagetest
from factory.build.buildx import BuildRequest, BuiltImage, build
from factory.core.model import Manifest
from factory.render import contexts as render
from factory.spec import config, manifest
from tests.certgen import Issued, make_ca, make_server
from tests.integration.workspace import Workspace, manifest_on

PLATFORMS = ("linux/amd64", "linux/arm64")
GREETING = "hello from the org's internal service"
ORG_CA = "certs/org-root-ca.pem"
BUILD_ARGS = {"FACTORY_VERSION": "1.0.0", "FACTORY_REVISION": "test", "FACTORY_CREATED": "2024-01-01T00:00:00Z",
              "FACTORY_FINGERPRINT": "sha256:test"}


# --- an HTTPS server on the host loopback, its certificate issued by the test's org CA ----------------

@pytest.fixture(scope="module")
def org_ca() -> Issued:
    return make_ca("Factory Integration Org Root CA")


@pytest.fixture(scope="module")
def https_url(org_ca, tmp_path_factory) -> Iterator[str]:
    server = make_server(org_ca, hosts=("127.0.0.1", "localhost"))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "server.pem").write_bytes(server.pem)
    (folder / "server.key").write_bytes(server.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")

    class Greeting(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = GREETING.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Greeting)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


# --- rendering and building like publish does ----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Built:
    manifest: Manifest
    settings: config.Settings
    image: BuiltImage
    image_id: str


def _build(tmp_path: Path, docker, seeded, doc: dict, *, ca: Issued | None, helper: str,
           platforms: tuple[str, ...] = PLATFORMS) -> Built:
    repo = tmp_path / doc["name"]
    (repo / "manifests").mkdir(parents=True)
    cfg: dict = {"helper_image": helper}
    if ca is not None:
        (repo / "certs").mkdir()
        (repo / ORG_CA).write_bytes(ca.pem)
        cfg["certificates"] = [ORG_CA]
    (repo / "factory.yaml").write_text(json.dumps(cfg))
    settings = config.load(repo / "factory.yaml", environ={})
    path = repo / "manifests" / f"{doc['name']}.yaml"
    path.write_text(json.dumps({
        "apiVersion": "factory/v1", "version": "1.0", "description": "org CA test image", "eol": "2028-06-30",
        "upstream": {"image": seeded.image, "tag": seeded.tag, "digest": seeded.digest},
        "distro": seeded.distro, "release": seeded.release or None, "platforms": list(platforms), **doc}))
    m = manifest.load_file(path, settings)
    render.write_all({m.name: m}, settings)
    built = build(docker, BuildRequest(m.name, settings.images_dir / m.name / render.DOCKERFILE, platforms,
                                       BUILD_ARGS), tmp_path / "out")
    return Built(m, settings, built, docker.load(built.archive))


def _curl(docker, image_id: str, platform: str, url: str) -> tuple[int, str, str]:
    return docker.run(image_id, ["-sS", "--max-time", "60", url], platform=platform, entrypoint="curl",
                      network="host")


def _checks(docker, built: Built, expect: imagetest.Expectations) -> dict[tuple[str, str], imagetest.CheckResult]:
    results = imagetest.test_image(docker, built.image.archive, built.image.layout, expect)
    return {(r.name, r.platform): r for r in results}


# --- an image with a TLS client (curl): the renderer's one-RUN path --------------------------------------

def test_an_image_with_the_org_ca_completes_a_tls_handshake_on_every_platform(
        tmp_path, docker, seeded_debian, org_ca, https_url):
    built = _build(tmp_path, docker, seeded_debian, {"name": "org-ca-curl", "packages": ["curl"]},
                   ca=org_ca, helper=seeded_debian.ref)
    try:
        checks = _checks(docker, built, imagetest.Expectations.for_manifest(built.manifest))
        assert not imagetest.failures(checks.values()), imagetest.failures(checks.values())
        for p in PLATFORMS:
            assert checks[("org-ca-trusted", p)].passed
            rc, out, err = _curl(docker, built.image_id, p, https_url)
            assert (rc, out) == (0, GREETING), f"{p}: curl exited {rc}: {err}"
    finally:
        docker.remove_image(built.image_id)


def test_the_same_image_without_the_org_ca_fails_the_handshake_and_the_check(
        tmp_path, docker, seeded_debian, org_ca, https_url):
    # One platform: what fails here (the check, the handshake) does not depend on it, and the test above
    # shows the handshake on every platform (an arm64 build with curl under QEMU costs a minute of CI).
    built = _build(tmp_path, docker, seeded_debian, {"name": "no-org-ca-curl", "packages": ["curl"]},
                   ca=None, helper=seeded_debian.ref, platforms=("linux/amd64",))
    try:
        expect = dataclasses.replace(imagetest.Expectations.for_manifest(built.manifest),
                                     ca_fingerprints=(org_ca.sha256,))
        checks = _checks(docker, built, expect)
        for p in ("linux/amd64",):
            assert not checks[("org-ca-trusted", p)].passed
            assert org_ca.sha256 in checks[("org-ca-trusted", p)].detail
            assert checks[("ca-bundle", p)].passed  # the public bundle is there; the org CA is not
            rc, out, _ = _curl(docker, built.image_id, p, https_url)
            # 60: CURLE_PEER_FAILED_VERIFICATION, the server's certificate chain is not trusted. (The
            # message reaches the test's stderr: python-on-whales does not capture a `docker run`'s.)
            assert (rc, out) == (60, ""), f"{p}: curl exited {rc}"
    finally:
        docker.remove_image(built.image_id)


# --- a hardening-only manifest: one small layer, prepared by the upstream in a helper stage -------------

# Everything the hardening may change. Directories on the way are in the layer as well.
ALLOWED = {"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "etc/ssl/certs/ca-certificates.crt",
           "etc/ssl/org-ca-certificates.crt", "usr/local/share/ca-certificates/01-org-root-ca.crt",
           "etc/ssl/certs/01-org-root-ca.pem"}


def _published_layer(ws: Workspace, digest: str) -> dict[str, tarfile.TarInfo]:
    """The members of the last layer of the published platform manifest ``digest``, downloaded."""
    layer = ws.manifest(digest)["layers"][-1]
    assert layer["size"] < 1_000_000, f"the hardening layer is {layer['size']} bytes"
    resp = requests.get(f"http://{ws.registry}/v2/{ws.repository}/blobs/{layer['digest']}", timeout=60)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(resp.content))) as tar:
        return {m.name.lstrip("./").rstrip("/"): m for m in tar.getmembers()}


def _assert_only_hardening(members: dict[str, tarfile.TarInfo], platform: str) -> None:
    files = {name for name, m in members.items() if not m.isdir()}
    hash_links = {n for n in files if n.startswith("etc/ssl/certs/") and n.endswith(".0")}
    setuid_copies = {n for n in files if n.startswith(("usr/bin/", "usr/sbin/"))}
    assert files - ALLOWED - hash_links - setuid_copies == set(), platform
    assert files >= ALLOWED and len(hash_links) == 1, platform
    assert {"usr/bin/su", "usr/bin/passwd", "usr/bin/mount"} <= setuid_copies, platform
    assert not any(m.mode & (stat.S_ISUID | stat.S_ISGID) for m in members.values()), platform
    assert not any(n.startswith(("var/", "usr/share/doc")) for n in members), platform  # no apt or dpkg leftovers


# --- an image without a shell: the helper image assembles the bundle ---------------------------------------

def test_a_no_shell_image_gets_the_org_ca_in_its_bundle(tmp_path, docker, seeded, seeded_debian, org_ca):
    built = _build(tmp_path, docker, seeded["noshell"], {"name": "org-ca-noshell"}, ca=org_ca,
                   helper=seeded_debian.ref)
    try:
        checks = _checks(docker, built, imagetest.Expectations.for_manifest(built.manifest))
        assert not imagetest.failures(checks.values()), imagetest.failures(checks.values())
        assert all(checks[("org-ca-trusted", p)].passed for p in PLATFORMS)
        final_stage = (built.settings.images_dir / "org-ca-noshell" / "Dockerfile").read_text().split("\nFROM ")[-1]
        assert "\nRUN " not in final_stage
    finally:
        docker.remove_image(built.image_id)


# --- through the publish pipeline: the published images trust the org CA ---------------------------------

def test_a_published_hardening_only_image_adds_one_layer_trusts_the_org_ca_and_its_debug_variant_shakes_hands(
        tmp_path, settings, docker, seeded_debian, org_ca, https_url):
    ws = Workspace.create(tmp_path / "repo", registry=settings.registry, state_dir=settings.state_dir,
                          extra_config={"helper_image": seeded_debian.ref, "certificates": [ORG_CA]})
    (ws.root / "certs").mkdir()
    (ws.root / ORG_CA).write_bytes(org_ca.pem)
    ws.add_manifest(manifest_on(seeded_debian, "orgca", variants={"debug": {"packages": ["curl"]}}))
    rendered = ws.factory("render")
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    ws.commit("render")
    report_path = ws.root / "report.json"
    proc = ws.factory("publish", "orgca", "--report", str(report_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    prod = json.loads(report_path.read_text())["images"][0]["prod"]
    trusted = {c["platform"]: c["passed"] for c in prod["checks"] if c["name"] == "org-ca-trusted"}
    assert trusted == dict.fromkeys(PLATFORMS, True)
    assert all(prod["gates"]["layers"][p]["added"] == 1 for p in PLATFORMS), prod["gates"]["layers"]
    # that one layer, as published, holds only what the hardening changes
    for p, digest in ws.platforms(ws.digest("orgca")).items():
        _assert_only_hardening(_published_layer(ws, digest), p)
    debug = ws.ref(ws.digest("orgca-debug"))
    for p in PLATFORMS:
        rc, out, err = _curl(docker, debug, p, https_url)
        assert (rc, out) == (0, GREETING), f"{p}: curl exited {rc}: {err}"
