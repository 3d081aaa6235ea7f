"""actionlint over the workflows (a real linter run; unit tests only check structure)."""

import subprocess
import sys
from pathlib import Path

from factory.tools import Runner

ROOT = Path(__file__).resolve().parents[2]


def test_actionlint_finds_nothing():
    actionlint = Runner(extra_path=(Path(sys.executable).parent,)).require("actionlint")
    proc = subprocess.run([actionlint, "-no-color"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
