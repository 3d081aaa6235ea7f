"""The foundation: toolchain, services, buildx multi-platform, fixtures (issue 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import requests

from tests.integration.conftest import REPO_ROOT

INDEX_TYPES = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"


def factory_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "factory", *args], capture_output=True, text=True,
                          cwd=kw.pop("cwd", REPO_ROOT), **kw)


def get_index(registry: str, repo: str, ref: str) -> dict:
    resp = requests.get(f"http://{registry}/v2/{repo}/manifests/{ref}", headers={"Accept": INDEX_TYPES}, timeout=10)
    resp.raise_for_status()
    return resp.json()


def platforms_of(index: dict) -> set[str]:
    return {f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]}


def test_doctor_lists_every_tool_and_exits_0():
    proc = factory_cli("doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = {line.split()[1]: line for line in proc.stdout.splitlines() if line.startswith("ok")}
    assert set(lines) >= {"docker", "buildx", "cosign", "trivy", "qemu-arm64", "registry", "mmdebstrap"}
    major = int(lines["docker"].split("engine ")[1].split(".")[0])
    assert major >= 26
    assert "linux/arm64" in lines["buildx"]


def test_doctor_exits_2_and_says_what_to_do_when_the_registry_is_missing():
    proc = factory_cli("doctor", env={**os.environ, "FACTORY_REGISTRY": "127.0.0.1:1"})
    assert proc.returncode == 2
    assert "MISSING registry" in proc.stdout and "make services" in proc.stdout


def test_buildx_pushes_a_two_platform_index(settings, docker, unique_repo, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\nARG TARGETARCH\nCOPY hello-${TARGETARCH} /hello\n")
    for arch in ("amd64", "arm64"):
        (tmp_path / f"hello-{arch}").write_text(f"hello from {arch}\n")
    ref = f"{settings.registry}/{unique_repo}:t1"
    docker.build(tmp_path, platforms=["linux/amd64", "linux/arm64"],
                 output={"type": "image", "name": ref, "push": "true"})
    index = get_index(settings.registry, unique_repo, "t1")
    assert platforms_of(index) == {"linux/amd64", "linux/arm64"}
    # BuildKit's unsigned attestation manifests are off: only the two platform manifests.
    assert len(index["manifests"]) == 2


def test_fixtures_are_multi_arch_and_runnable_on_both_platforms(settings, seeded, docker):
    for fx in seeded.values():
        repo = fx.image.split("/", 1)[1]
        assert platforms_of(get_index(settings.registry, repo, fx.digest)) == {"linux/amd64", "linux/arm64"}
    busybox = seeded["busybox"]
    for platform, machine in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        rc, out, err = docker.run(busybox.ref, ["uname", "-m"], platform=platform)
        assert (rc, out.strip()) == (0, machine), err
    noshell = seeded["noshell"]
    rc, out, err = docker.run(noshell.ref, ["/usr/bin/tini", "--version"], platform="linux/arm64", entrypoint="")
    assert rc == 0 and "tini version" in out + err
    rc, _, err = docker.run(noshell.ref, ["/bin/sh", "-c", "true"], platform="linux/amd64", entrypoint="")
    assert rc != 0  # no shell: the distroless stand-in


def test_seeding_again_gives_the_same_digest(settings, runner, docker, seeded):
    from factory.ops.seed import Seeder

    again = Seeder(settings, runner, docker).seed(["busybox"], settings.platforms)[0]
    assert again.digest == seeded["busybox"].digest


def test_services_and_bootstrap_rerun_change_nothing_and_take_seconds():
    for script, args, marker in (("services.sh", ["up"], "already reachable"),
                                 ("bootstrap.sh", [], "up to date")):
        start = time.monotonic()
        proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / script), *args], capture_output=True, text=True)
        elapsed = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr
        assert marker in proc.stderr
        assert elapsed < 10, f"{script} took {elapsed:.1f}s on a warm machine"
