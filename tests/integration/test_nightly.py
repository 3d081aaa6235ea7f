"""The nightly: drift -> commit -> render -> plan -> publish, and nothing but look-ups when nothing changed."""

from __future__ import annotations

import json

import git

from tests.integration.test_publish import ws  # noqa: F401  (fixture)
from tests.integration.workspace import manifest_on


def push_upstream(ws, docker, folder, busybox, marker: str) -> str:
    """A test-owned upstream: the busybox fixture plus a marker file, pushed under <repo>-upstream:1.0."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "marker").write_text(marker)
    (folder / "Dockerfile").write_text(f"FROM {busybox.ref}\nCOPY marker /marker\n")
    ref = f"{ws.registry}/{ws.repository}-upstream:1.0"
    docker.build(folder, platforms=["linux/amd64", "linux/arm64"],
                 output={"type": "image", "name": ref, "push": "true"})
    from factory.oci.registry import Registry

    return Registry(ws.registry, insecure=True).head_manifest(f"{ws.repository}-upstream", "1.0").digest


def test_nightly_rebuilds_what_drifted_and_its_children_then_nothing(ws, seeded, docker, tmp_path):
    digest = push_upstream(ws, docker, tmp_path / "u1", seeded["busybox"], "one")
    parent = manifest_on(seeded["busybox"], "base", upstream={"image": f"{ws.registry}/{ws.repository}-upstream",
                                                              "tag": "1.0", "digest": digest})
    ws.add_manifest(parent)
    child = manifest_on(seeded["busybox"], "app", env={"APP": "1"})
    del child["upstream"]
    child["parent"] = "base"
    ws.add_manifest(child)
    assert ws.factory("render").returncode == 0
    ws.commit("manifests")
    first = ws.factory("publish", "--all")
    assert first.returncode == 0, first.stdout + first.stderr

    quiet = ws.factory("nightly")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "nothing drifted and nothing changed: no builds" in quiet.stdout
    before = ws.tags()

    repo = git.Repo(ws.root)
    head_before = repo.head.commit.hexsha
    new_digest = push_upstream(ws, docker, tmp_path / "u2", seeded["busybox"], "two")
    drift = ws.factory("drift")
    assert drift.returncode == 3 and "DRIFTED" in drift.stdout, drift.stdout + drift.stderr
    updated = ws.factory("drift", "--update", "--commit")
    assert updated.returncode == 3, updated.stderr
    (bump,) = list(repo.iter_commits(f"{head_before}..HEAD"))
    assert bump.message.startswith("base: bump upstream 1.0")
    assert list(bump.stats.files) == ["manifests/base.yaml"]
    assert bump.stats.total["lines"] == 2  # one line out, one line in: the digest
    assert new_digest.removeprefix("sha256:")[:12] in bump.message
    assert ws.factory("render").returncode == 0
    ws.commit("render")
    planned = json.loads(ws.factory("plan", "--format", "json").stdout)
    assert [(p["name"], p["reasons"]) for p in planned] == [("base", ["upstream changed"]),
                                                             ("app", ["parent changed"])]

    bumped = ws.factory("nightly")
    assert bumped.returncode == 0, bumped.stdout + bumped.stderr
    tags = ws.tags()
    assert tags["base-v1.0.1"] != before["base-v1.0.0"] and tags["app-v1.0.1"] != before["app-v1.0.0"]
    assert tags["base"] == tags["base-v1.0.1"] and tags["app"] == tags["app-v1.0.1"]
    assert ws.labels(tags["app-v1.0.1"])["org.opencontainers.image.base.digest"] == tags["base-v1.0.1"]

    again = ws.factory("nightly")
    assert again.returncode == 0 and "no builds" in again.stdout
    assert ws.tags() == tags
