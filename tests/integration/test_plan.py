"""factory plan against the real registry, and its bake file against the real buildx."""

from __future__ import annotations

import json
import subprocess

from tests.integration.test_publish import ws  # noqa: F401  (fixture)
from tests.integration.workspace import manifest_on


def test_plan_bake_file_is_accepted_by_buildx_and_plan_empties_after_publish(ws, seeded, runner):
    ws.add_manifest(manifest_on(seeded["busybox"], "p1"))
    child = manifest_on(seeded["busybox"], "p2", env={"X": "1"})
    del child["upstream"]
    child["parent"] = "p1"
    ws.add_manifest(child)
    assert ws.factory("render").returncode == 0
    ws.commit()

    planned = ws.factory("plan", "--format", "json")
    assert planned.returncode == 0, planned.stderr
    assert [(i["name"], i["reasons"]) for i in json.loads(planned.stdout)] == [("p1", ["new"]), ("p2", ["new"])]

    bake_file = ws.root / "bake.json"
    bake_file.write_text(ws.factory("plan", "--format", "bake").stdout)
    printed = subprocess.run([runner.require("docker"), "buildx", "bake", "--print", "-f", str(bake_file)],
                             capture_output=True, text=True, cwd=ws.root, timeout=60)
    assert printed.returncode == 0, printed.stderr
    resolved = json.loads(printed.stdout)["target"]
    assert set(resolved) == {"p1", "p2"} and resolved["p2"]["contexts"] == {"parent": "target:p1"}
    assert resolved["p1"]["context"] == "images/p1" and resolved["p1"]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert resolved["p2"]["args"]["BASE_REF"] == "parent"

    # The PR workflow's build: every target, every platform, the child on its parent's target; nothing pushed.
    built = subprocess.run([runner.require("docker"), "buildx", "bake", "-f", str(bake_file), "--progress", "plain",
                            "--set", "*.output=type=cacheonly"], capture_output=True, text=True, cwd=ws.root,
                           timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    assert ws.tags() == {}

    matrix = json.loads(ws.factory("plan", "--format", "github-matrix").stdout)["include"]
    assert {(e["image"], e["platform"]) for e in matrix} == {
        ("p1", "linux/amd64"), ("p1", "linux/arm64"), ("p2", "linux/amd64"), ("p2", "linux/arm64")}

    assert ws.factory("publish", "--all").returncode == 0
    after = json.loads(ws.factory("plan", "--format", "json").stdout)
    assert [i["build"] for i in after] == [False, False]
    assert json.loads(ws.factory("plan", "--format", "github-matrix").stdout) == {"include": []}
