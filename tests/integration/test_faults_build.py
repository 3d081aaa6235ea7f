"""The build cannot produce every platform: a package that exists for amd64 but not arm64, an upstream
that dropped an architecture, or no arm64 emulation on this machine. Each is one clear error naming the
step and the platform, and nothing is tagged."""

from __future__ import annotations

import functools

from factory.build import buildx as build
from factory.context import RunContext
from factory.publish import pipeline
from factory.publish import variant as publish_mod
from tests.integration.test_publish import (
    publish,
    ws,  # noqa: F401  (fixture)
)
from tests.integration.workspace import manifest_on


def test_a_package_missing_on_arm64_fails_the_build_naming_the_platform(ws, seeded_debian):
    # lib32gcc-s1 (32-bit x86 runtime) exists in Debian for amd64 only: apt on arm64 cannot find it.
    ws.add_manifest(manifest_on(seeded_debian, "amd64only", packages=["lib32gcc-s1"]))
    proc, report = publish(ws, "amd64only")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    image = report["images"][0]
    assert (image["status"], image["step"], image["platform"]) == ("failed", "build", "linux/arm64")
    assert "Unable to locate package lib32gcc-s1" in image["error"]  # BuildKit's own words reach the user
    assert "a RUN step failed on linux/arm64 only" in image["error"]  # the hint
    assert "amd64only: failed at build [linux/arm64]" in proc.stderr
    assert ws.tags() == {}


def test_an_upstream_without_arm64_fails_naming_the_platform(ws, seeded, docker, tmp_path):
    """Given a single-platform base, BuildKit builds the arm64 image FROM the amd64 one (a warning, no
    error): the "arm64" image would carry amd64 binaries, and pass its tests on an amd64 host. Refused."""
    folder = tmp_path / "upstream"
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {seeded['busybox'].ref}\n")
    upstream = f"{ws.registry}/{ws.repository}-upstream"
    docker.build(folder, platforms=["linux/amd64"], output={"type": "image", "name": f"{upstream}:1.0", "push": "true"})
    digest = ws_digest(ws, f"{ws.repository}-upstream", "1.0")
    ws.add_manifest(manifest_on(seeded["busybox"], "dropped", upstream={"image": upstream, "tag": "1.0",
                                                                         "digest": digest}))
    proc, report = publish(ws, "dropped")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    image = report["images"][0]
    assert (image["status"], image["step"], image["platform"]) == ("failed", "resolve base", "linux/arm64")
    assert "has no image for linux/arm64 (it has linux/amd64)" in image["error"]
    assert "buildx build" not in proc.stderr  # refused before building
    assert ws.tags() == {}


def test_no_arm64_emulation_is_refused_before_building(ws, seeded, tmp_path, monkeypatch):
    """The kernel's binfmt_misc handler for arm64 is disabled. Disabling the real one would break every
    other arm64 build on this machine, so the publish (in-process, everything else real) reads a
    binfmt_misc folder of its own; the CLI reads /proc/sys/fs/binfmt_misc, as every other test shows."""
    binfmt = tmp_path / "binfmt_misc"
    binfmt.mkdir()
    (binfmt / "qemu-aarch64").write_text("disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n")
    monkeypatch.setattr(publish_mod, "unbuildable_platforms",
                        functools.partial(build.unbuildable_platforms, binfmt_dir=binfmt))
    ws.add_manifest(manifest_on(seeded["busybox"], "noemu"))
    assert ws.factory("render").returncode == 0
    ws.commit()
    report = pipeline.publish(RunContext(ws.root / "factory.yaml"), ["noemu"])
    image = report.images[0]
    assert (image.status, image.step, image.platform) == ("failed", "build", "linux/arm64")
    assert "cannot build linux/arm64 here: no QEMU emulation" in image.error and "make services" in image.error
    assert image.timings["build"] < 5  # refused before buildx started
    assert ws.tags() == {}


def ws_digest(ws, repository: str, reference: str) -> str:
    from factory.oci.registry import Registry

    with Registry(ws.registry, insecure=True) as r:
        return r.head_manifest(repository, reference).digest
