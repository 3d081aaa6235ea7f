"""Verification before trust: a moved upstream tag and a parent whose signature does not verify are
refused before anything is built; nothing is tagged."""

from __future__ import annotations

import subprocess

from tests.integration.test_nightly import push_upstream
from tests.integration.test_publish import (
    publish,
    ws,  # noqa: F401  (fixture)
)
from tests.integration.workspace import manifest_on


def test_an_upstream_whose_tag_moved_is_refused(ws, seeded, docker, tmp_path):
    pinned = push_upstream(ws, docker, tmp_path / "u1", seeded["busybox"], "one")
    ws.add_manifest(manifest_on(seeded["busybox"], "moved", upstream={
        "image": f"{ws.registry}/{ws.repository}-upstream", "tag": "1.0", "digest": pinned}))
    push_upstream(ws, docker, tmp_path / "u2", seeded["busybox"], "two")  # the tag moves under us
    proc, report = publish(ws, "moved")
    assert proc.returncode == 1
    image = report["images"][0]
    assert image["step"] == "resolve base" and "now points at" in image["error"] and "drift" in image["error"]
    assert ws.tags() == {}


def test_a_parent_whose_signature_does_not_verify_is_refused(ws, seeded, runner, tmp_path):
    ws.add_manifest(manifest_on(seeded["busybox"], "parent"))
    first, _ = publish(ws, "parent")
    assert first.returncode == 0, first.stdout + first.stderr
    child = manifest_on(seeded["busybox"], "child", env={"C": "1"})
    del child["upstream"]
    child["parent"] = "parent"
    ws.add_manifest(child)
    subprocess.run([runner.require("cosign"), "generate-key-pair"], cwd=tmp_path, env={"COSIGN_PASSWORD": ""},
                   capture_output=True, check=True)
    # Another signing key: the parent (signed with the dev key) does not verify with it.
    proc, report = publish(ws, "child", env={"COSIGN_KEY": str(tmp_path / "cosign.key")})
    assert proc.returncode == 1
    image = report["images"][0]
    assert image["step"] == "resolve base" and "does not verify" in image["error"]
    assert not any(t.startswith("child") for t in ws.tags())


def test_an_up_to_date_version_that_does_not_verify_is_replaced(ws, seeded, runner, tmp_path):
    ws.add_manifest(manifest_on(seeded["busybox"], "rekeyed"))
    first, _ = publish(ws, "rekeyed")
    assert first.returncode == 0, first.stdout + first.stderr
    subprocess.run([runner.require("cosign"), "generate-key-pair"], cwd=tmp_path, env={"COSIGN_PASSWORD": ""},
                   capture_output=True, check=True)
    # Same inputs, but the current version was signed with a key we no longer trust.
    again, report = publish(ws, "rekeyed", env={"COSIGN_KEY": str(tmp_path / "cosign.key")})
    assert again.returncode == 0, again.stdout + again.stderr
    assert report["images"][0]["status"] == "published" and report["images"][0]["prod"]["version"] == "1.0.1"
    tags = ws.tags()
    assert tags["rekeyed"] == tags["rekeyed-v1.0.1"] != tags["rekeyed-v1.0.0"]
