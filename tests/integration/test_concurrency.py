"""Two publishes of the same image at once: the per-image file lock makes one wait, and it then finds
the image up to date. One version, not two."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.integration.test_publish import ws  # noqa: F401  (fixture)
from tests.integration.workspace import manifest_on


def test_two_publishes_at_once_give_one_version(ws, seeded):  # noqa: F811
    ws.add_manifest(manifest_on(seeded["busybox"], "twin"))
    assert ws.factory("render").returncode == 0
    ws.commit()
    argv = [sys.executable, "-m", "factory", "--config", str(ws.root / "factory.yaml"), "publish", "twin"]
    procs = [subprocess.Popen(argv, cwd=ws.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "CI": "true"}) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    statuses = sorted(re.search(r"^twin\s+(\S+)", out, re.M).group(1) for out, _ in outs)
    assert statuses == ["published", "up-to-date"]
    assert {t for t in ws.tags() if re.fullmatch(r"twin-v\d+\.\d+\.\d+", t)} == {"twin-v1.0.0"}
