"""Rendered Dockerfiles build for real and do what they say: one per distro kind that can be seeded here
(Debian, the distroless stand-in, a scratch-kind image) and its debug variant, on linux/amd64 with the
real BuildKit. The helper stage uses the seeded Debian image, pinned by digest, as factory.yaml would.
(The publish tests cover both platforms; alpine and ubuntu upstreams cannot be fetched here.)"""

from __future__ import annotations

import json
import tarfile
import uuid
from pathlib import Path

import pytest

from factory.render import contexts as render
from factory.spec import config, manifest

PLATFORM = "linux/amd64"


@pytest.fixture(scope="module")
def repo(tmp_path_factory, seeded_debian) -> Path:
    root = tmp_path_factory.mktemp("render-repo")
    (root / "factory.yaml").write_text(json.dumps({"helper_image": seeded_debian.ref}))
    (root / "manifests").mkdir()
    return root


def _render(repo: Path, doc: dict) -> tuple[render.RenderedImage, Path]:
    settings = config.load(repo / "factory.yaml", environ={})
    path = repo / "manifests" / f"{doc['name']}.yaml"
    path.write_text(json.dumps({"apiVersion": "factory/v1", "platforms": [PLATFORM], "eol": "2028-06-30", **doc}))
    m = manifest.load_file(path, settings)
    render.write_all({m.name: m}, settings)
    return render.render_manifest(m, settings), settings.images_dir / m.name


def _build(docker, context: Path, **build_args: str) -> str:
    tag = f"factory-render-test/{context.parent.name}-{context.name}:{uuid.uuid4().hex[:8]}"
    docker.build(context, platforms=[PLATFORM], output={"type": "image", "name": tag},
                 build_args={"FACTORY_VERSION": "1.0.0", "FACTORY_FINGERPRINT": "sha256:test", **build_args})
    return tag


def _files(docker, image: str, tmp_path: Path, *names: str) -> dict[str, bytes | None]:
    dest = tmp_path / f"{uuid.uuid4().hex[:8]}.tar"
    docker.export_filesystem(image, PLATFORM, dest)
    with tarfile.open(dest) as tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers()}
        return {n: (tar.extractfile(members[n]).read() if n in members and members[n].isfile() else None)
                for n in names}


def _upstream(seeded) -> dict:
    return {"image": seeded.image, "tag": seeded.tag, "digest": seeded.digest}


def test_debian_kind_builds_hardened_and_its_debug_variant_adds_a_shell(repo, seeded_debian, docker):
    _, folder = _render(repo, {
        "name": "render-debian", "version": "1.0", "description": "Debian with a zone", "distro": "debian",
        "release": "12", "upstream": _upstream(seeded_debian), "timezone": "Europe/Berlin",
        "env": {"GREETING": 'a "quoted" $HOME \\ value'}, "variants": {"debug": {"packages": ["busybox"]}}})
    prod = _build(docker, folder)
    try:
        rc, out, err = docker.run(prod, ["-c", 'id -u; echo "$TZ"; cat /etc/timezone; date +%Z; echo "$GREETING"'],
                                  platform=PLATFORM, entrypoint="/bin/sh")
        assert rc == 0, err
        uid, tz, tz_file, abbreviation, greeting = out.splitlines()
        assert (uid, tz, tz_file, greeting) == ("1001", "Europe/Berlin", "Europe/Berlin", 'a "quoted" $HOME \\ value')
        assert abbreviation in ("CET", "CEST")

        debug = _build(docker, folder / "debug", BASE_REF=f"docker.io/{prod}", BASE_DIGEST="sha256:test")
        try:
            rc, out, err = docker.run(debug, ["sh", "-c", "id -u"], platform=PLATFORM, entrypoint="/bin/busybox")
            assert (rc, out.strip()) == (0, "1001"), err
        finally:
            docker.remove_image(debug)
    finally:
        docker.remove_image(prod)


def test_distroless_kind_keeps_the_upstream_users_and_gets_files_without_run(repo, seeded, docker, tmp_path):
    noshell = seeded["noshell"]
    _, folder = _render(repo, {
        "name": "render-noshell", "version": "1.0", "description": "distroless stand-in", "distro": "distroless",
        "release": "12", "upstream": _upstream(noshell), "timezone": "Asia/Tokyo",
        "variants": {"debug": {"packages": ["busybox"]}}})
    final_stage = (folder / "Dockerfile").read_text().split("\nFROM ")[-1]
    assert "\nRUN " not in final_stage
    prod = _build(docker, folder)
    try:
        files = _files(docker, prod, tmp_path, "etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt",
                       "etc/localtime", "etc/timezone", "usr/share/zoneinfo/Asia/Tokyo", "bin/sh")
        passwd = files["etc/passwd"].decode().splitlines()
        assert passwd[0].startswith("root:x:0:0:")
        assert any(line.startswith("nonroot:x:65532:65532:") for line in passwd)  # the upstream's own
        assert passwd[-1] == "app:x:1001:1001::/nonexistent:/sbin/nologin"
        assert files["etc/group"].decode().splitlines()[-1] == "app:x:1001:"
        assert b"BEGIN CERTIFICATE" in files["etc/ssl/certs/ca-certificates.crt"]
        assert files["etc/localtime"].startswith(b"TZif") and files["etc/timezone"] == b"Asia/Tokyo\n"
        assert files["usr/share/zoneinfo/Asia/Tokyo"] == files["etc/localtime"]
        assert files["bin/sh"] is None  # still no shell

        debug = _build(docker, folder / "debug", BASE_REF=f"docker.io/{prod}", BASE_DIGEST="sha256:test")
        try:
            rc, out, err = docker.run(debug, ["-c", 'id -u; echo "$TZ"'], platform=PLATFORM, entrypoint="/busybox/sh")
            assert (rc, out.split()) == (0, ["1001", "Asia/Tokyo"]), err
        finally:
            docker.remove_image(debug)
    finally:
        docker.remove_image(prod)


def test_scratch_kind_gets_root_and_the_user(repo, seeded, docker, tmp_path):
    busybox = seeded["busybox"]
    _, folder = _render(repo, {
        "name": "render-scratch", "version": "1.0", "description": "scratch kind", "distro": "scratch",
        "upstream": _upstream(busybox)})
    prod = _build(docker, folder)
    try:
        files = _files(docker, prod, tmp_path, "etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt")
        assert files["etc/passwd"] == (b"root:x:0:0:root:/root:/sbin/nologin\n"
                                       b"app:x:1001:1001::/nonexistent:/sbin/nologin\n")
        assert files["etc/group"] == b"root:x:0:\napp:x:1001:\n"
        assert b"BEGIN CERTIFICATE" in files["etc/ssl/certs/ca-certificates.crt"]
        rc, out, err = docker.run(prod, ["-c", "id -u; echo $TZ"], platform=PLATFORM, entrypoint="/bin/sh")
        assert (rc, out.split()) == (0, ["1001", "UTC"]), err
    finally:
        docker.remove_image(prod)
