"""The drift story against the real registry, a real git repository and real publishes through the CLI:
an upstream tag moves -> `factory drift` exits 3 -> `--update --commit` makes one one-line commit ->
the plan lists that image and everything built on it, parents first -> publish gives each a new patch
version -> the next plan is empty. Then a manifest edit plans only that image and its descendants."""

from __future__ import annotations

import json

import git
import pytest

from factory.oci.registry import Registry
from tests.integration.test_publish import ws  # noqa: F401  (fixture)
from tests.integration.workspace import manifest_on


def push_upstream(ws, docker, folder, busybox, marker: str) -> tuple[str, str]:
    """A test-owned upstream: the busybox fixture plus a marker file, pushed as <repo>-upstream:1.0 (a
    repository only this test uses). Returns (image, index digest)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "marker").write_text(marker)
    (folder / "Dockerfile").write_text(f"FROM {busybox.ref}\nCOPY marker /marker\n")
    image = f"{ws.registry}/{ws.repository}-upstream"
    docker.build(folder, platforms=["linux/amd64", "linux/arm64"],
                 output={"type": "image", "name": f"{image}:1.0", "push": "true"})
    with Registry(ws.registry, insecure=True) as registry:
        return image, registry.head_manifest(f"{ws.repository}-upstream", "1.0").digest


def on_parent(seeded, name: str, parent: str, **overrides) -> dict:
    doc = manifest_on(seeded, name, **overrides)
    del doc["upstream"]
    return {**doc, "parent": parent}


def planned(ws, *args: str) -> list[tuple[str, bool, list[str]]]:
    proc = ws.factory("plan", "--format", "json", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [(i["name"], i["build"], i["reasons"]) for i in json.loads(proc.stdout)]


def render_and_commit(ws, message: str) -> None:
    proc = ws.factory("render")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ws.commit(message)


@pytest.fixture
def family(ws, seeded, docker, tmp_path):
    """base (on a test-owned upstream) -> app -> tool, and base -> side; all published once."""
    image, digest = push_upstream(ws, docker, tmp_path / "u1", seeded["busybox"], "one")
    busybox = seeded["busybox"]
    ws.add_manifest(manifest_on(busybox, "base", upstream={"image": image, "tag": "1.0", "digest": digest}))
    ws.add_manifest(on_parent(busybox, "app", "base", env={"APP": "1"}))
    ws.add_manifest(on_parent(busybox, "tool", "app", env={"TOOL": "1"}))
    ws.add_manifest(on_parent(busybox, "side", "base", env={"SIDE": "1"}))
    render_and_commit(ws, "manifests")
    first = ws.factory("publish", "--all")
    assert first.returncode == 0, first.stdout + first.stderr
    return digest


def test_a_moved_upstream_is_bumped_in_one_line_and_rebuilds_exactly_its_family(ws, seeded, docker, family,
                                                                              tmp_path):
    old_digest = family
    assert planned(ws) == [("base", False, []), ("app", False, []), ("side", False, []), ("tool", False, [])]
    before = ws.tags()

    _, new_digest = push_upstream(ws, docker, tmp_path / "u2", seeded["busybox"], "two")
    assert new_digest != old_digest
    drift = ws.factory("drift", "--format", "json")
    assert drift.returncode == 3, drift.stdout + drift.stderr
    assert [(d["name"], d["drifted"], d["current"]) for d in json.loads(drift.stdout)] == [
        ("base", True, new_digest)]

    repo = git.Repo(ws.root)
    head = repo.head.commit
    manifest_before = (ws.root / "manifests" / "base.yaml").read_text()
    updated = ws.factory("drift", "--update", "--commit")
    assert updated.returncode == 3, updated.stdout + updated.stderr
    (bump,) = list(repo.iter_commits(f"{head.hexsha}..HEAD"))
    assert bump.message == (f"base: bump upstream 1.0 {old_digest.removeprefix('sha256:')[:12]} -> "
                            f"{new_digest.removeprefix('sha256:')[:12]}")
    (change,) = head.diff(bump, create_patch=True)
    assert change.a_path == change.b_path == "manifests/base.yaml"
    patch = change.diff.decode().splitlines()
    removed = [line for line in patch if line.startswith("-")]
    added = [line for line in patch if line.startswith("+")]
    assert len(removed) == len(added) == 1 and old_digest in removed[0] and new_digest in added[0]
    assert (ws.root / "manifests" / "base.yaml").read_text() == manifest_before.replace(old_digest, new_digest)
    assert not repo.is_dirty(untracked_files=True)

    render_and_commit(ws, "render after the bump")
    assert planned(ws) == [("base", True, ["upstream changed"]), ("app", True, ["parent changed"]),
                           ("side", True, ["parent changed"]), ("tool", True, ["parent changed"])]
    matrix = json.loads(ws.factory("plan", "--format", "github-matrix").stdout)["include"]
    assert [(e["image"], e["level"]) for e in matrix[::2]] == [("base", 0), ("app", 1), ("side", 1), ("tool", 2)]

    published = ws.factory("publish", "--all")
    assert published.returncode == 0, published.stdout + published.stderr
    tags = ws.tags()
    for name in ("base", "app", "side", "tool"):
        assert tags[f"{name}-v1.0.1"] != before[f"{name}-v1.0.0"], name
        assert tags[name] == tags[f"{name}-v1.0"] == tags[f"{name}-v1.0.1"], name
        assert f"{name}-v1.0.2" not in tags
    assert ws.labels(tags["base-v1.0.1"])["org.opencontainers.image.base.digest"] == new_digest
    assert ws.labels(tags["tool-v1.0.1"])["org.opencontainers.image.base.digest"] == tags["app-v1.0.1"]

    # Right after: nothing to build, in every format, and only look-ups were made.
    again = ws.factory("plan", "--stats")
    assert again.returncode == 0 and again.stdout.splitlines()[-1] == "nothing to build", again.stdout
    requests = int(again.stderr.strip().splitlines()[-1].removeprefix("registry requests: "))
    assert requests <= 1 + 4 * 4 + 3  # tag list; per image HEAD + index + manifest + config; per child a HEAD
    assert json.loads(ws.factory("plan", "--format", "github-matrix").stdout) == {"include": []}
    assert ws.tags() == tags


def test_a_manifest_edit_plans_only_that_image_and_its_descendants(ws, seeded, family):
    path = ws.root / "manifests" / "app.yaml"
    path.write_text(path.read_text().replace("APP: '1'", "APP: '1'\n  APP_MODE: strict"))
    # Not rendered yet: the plan is of the committed contexts (as publish's would be), and says so.
    stale = ws.factory("plan")
    assert stale.returncode == 0 and stale.stdout.splitlines()[-1] == "nothing to build", stale.stdout
    assert "not what the manifests render" in stale.stderr
    render_and_commit(ws, "app: add APP_MODE")
    assert planned(ws) == [("base", False, []), ("app", True, ["manifest changed"]),
                           ("side", False, []), ("tool", True, ["parent changed"])]
    # Naming a root keeps its descendants; an unchanged root named alone plans nothing.
    assert planned(ws, "app") == [("app", True, ["manifest changed"]), ("tool", True, ["parent changed"])]
    assert planned(ws, "side") == [("side", False, [])]
    assert planned(ws, "side", "--force") == [("side", True, ["forced"])]
