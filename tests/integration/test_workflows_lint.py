"""actionlint (with shellcheck on every `run:` script) over the workflows: a real linter run; the unit
tests only check structure. The second test shows the linter really reads these files and their scripts."""

import shutil
import subprocess
import sys
from pathlib import Path

from factory.adapters.tools import Runner

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def actionlint(folder: Path) -> subprocess.CompletedProcess:
    # Both from the venv (the dev extras' wheels). shellcheck is named explicitly: actionlint quietly skips
    # the run: scripts when it finds none on PATH, and the lint would be weaker without saying so.
    runner = Runner(extra_path=(Path(sys.executable).parent,))
    binary, shellcheck = runner.require("actionlint"), runner.require("shellcheck")
    files = sorted(str(p) for p in folder.glob("*.yml"))
    assert len(files) == 3
    return subprocess.run([binary, "-no-color", f"-shellcheck={shellcheck}", *files], capture_output=True, text=True,
                          timeout=120)


def test_actionlint_finds_nothing():
    proc = actionlint(WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_an_unquoted_expansion_and_an_unknown_output(tmp_path):
    shutil.copytree(WORKFLOWS, tmp_path, dirs_exist_ok=True)
    release = tmp_path / "release.yml"
    text = release.read_text()
    text = text.replace('factory merge "$IMAGE" "${args[@]}"', 'factory merge $IMAGE "${args[@]}"')
    text = text.replace("needs.plan.outputs.level1_images", "needs.plan.outputs.level9_images")
    release.write_text(text)
    proc = actionlint(tmp_path)
    assert proc.returncode == 1
    assert "SC2086" in proc.stdout  # shellcheck ran on the run: script
    assert "level9_images" in proc.stdout
