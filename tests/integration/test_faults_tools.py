"""A tool the publish needs is missing or crashes: cosign, the SBOM generator (trivy). Each is one clear
error naming the step (a missing tool: before anything is built), and nothing is tagged.

The tools come from a hermetic folder (FACTORY_TOOLS_PATH: the factory looks nowhere else) that holds
the real tools, with one of them removed or replaced by a wrapper that crashes like the real thing
would: killed by SIGSEGV, or a Go panic (exit 2).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests

from tests.integration.test_publish import (
    cosign,
    publish,
    ws,  # noqa: F401  (fixture)
)
from tests.integration.workspace import manifest_on

SEGFAULT = """#!/bin/sh
echo "SIGSEGV: segmentation violation PC=0x0 m=0 sigcode=1" >&2
kill -SEGV $$
"""
GO_PANIC = """#!/bin/sh
echo "panic: runtime error: invalid memory address or nil pointer dereference" >&2
echo "goroutine 1 [running]:" >&2
exit 2
"""


@pytest.fixture
def tools(tmp_path, runner) -> Path:
    """A hermetic tools folder with the real cosign, trivy and docker, for a test to break one of."""
    folder = tmp_path / "tools"
    folder.mkdir()
    for name in ("cosign", "trivy", "docker"):
        (folder / name).symlink_to(runner.require(name))
    return folder


def raw_tags(ws) -> list[str]:
    resp = requests.get(f"http://{ws.registry}/v2/{ws.repository}/tags/list", timeout=10)
    return resp.json().get("tags") or [] if resp.status_code == 200 else []


def replace(folder: Path, name: str, script: str) -> None:
    (folder / name).unlink()
    (folder / name).write_text(script)
    (folder / name).chmod(0o755)


def only_on(subcommand: str, script: str, real: str) -> str:
    """A wrapper that behaves like ``script`` for one subcommand and runs the real tool otherwise."""
    body = script.split("\n", 1)[1]
    return f'#!/bin/sh\nif [ "$1" = "{subcommand}" ]; then\n{body}fi\nexec {real} "$@"\n'


@pytest.mark.parametrize("tool", ["cosign", "trivy"])
def test_a_missing_tool_fails_before_building(ws, seeded, tools, tool):
    (tools / tool).unlink()
    ws.add_manifest(manifest_on(seeded["busybox"], "notool"))
    started = time.monotonic()
    proc, report = publish(ws, "notool", env={"FACTORY_TOOLS_PATH": str(tools)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert report is None  # refused before the run started
    expected = {"cosign": "publish needs cosign (sign, attest and parent verification steps)",
                "trivy": "no SBOM generator: neither syft nor trivy"}[tool]
    assert expected in proc.stderr and f"found in tools_path ({tools})" in proc.stderr, proc.stderr
    assert "make setup" in proc.stderr  # what to do
    assert "buildx build" not in proc.stderr and time.monotonic() - started < 60
    assert ws.tags() == {}


def test_cosign_crashing_fails_the_sign_step(ws, seeded, tools):
    replace(tools, "cosign", SEGFAULT)
    ws.add_manifest(manifest_on(seeded["busybox"], "segv"))
    proc, report = publish(ws, "segv", env={"FACTORY_TOOLS_PATH": str(tools)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    image = report["images"][0]
    assert (image["status"], image["step"]) == ("failed", "sign")
    assert "`cosign sign" in image["error"] and "was killed by SIGSEGV" in image["error"]
    assert "segv: failed at sign" in proc.stderr and "SIGSEGV" in proc.stderr
    assert "COSIGN_PASSWORD" not in image["error"]  # a crash is not blamed on the key
    assert ws.tags() == {}


def test_the_sbom_tool_crashing_fails_the_gates_step(ws, seeded, tools):
    replace(tools, "trivy", GO_PANIC)
    ws.add_manifest(manifest_on(seeded["busybox"], "panic"))
    proc, report = publish(ws, "panic", env={"FACTORY_TOOLS_PATH": str(tools)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    image = report["images"][0]
    assert (image["status"], image["step"]) == ("failed", "gates")
    assert "sbom linux/" in image["error"] and "`trivy image" in image["error"] and "exited 2" in image["error"]
    assert "panic:" in image["error"]
    assert ws.tags() == {}


def test_cosign_crashing_at_attest_leaves_a_signed_untagged_image_and_a_rerun_completes(
        ws, seeded, tools, runner, settings):
    """Signed but not attested: no tag reaches it. After the fix, one version, every tag, and the cosign
    CLI verifies the signature and the attestations of what the tags point at."""
    real = runner.require("cosign")
    replace(tools, "cosign", only_on("attest", SEGFAULT, real))
    ws.add_manifest(manifest_on(seeded["busybox"], "halfway"))
    proc, report = publish(ws, "halfway", env={"FACTORY_TOOLS_PATH": str(tools)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    image = report["images"][0]
    assert (image["step"], "SIGSEGV" in image["error"]) == ("attest", True)
    assert ws.tags() == {}
    # cosign's own tags show it: the index and its two platform images were signed, nothing attested.
    cosign_tags = raw_tags(ws)
    assert len([t for t in cosign_tags if t.endswith(".sig")]) == 3 and not any(t.endswith(".att") for t in cosign_tags)

    (tools / "cosign").unlink()
    (tools / "cosign").symlink_to(real)
    again, report = publish(ws, "halfway", env={"FACTORY_TOOLS_PATH": str(tools)})
    assert again.returncode == 0, again.stdout + again.stderr
    tags = ws.tags()
    assert {t for t in tags if re.fullmatch(r"halfway-v\d+\.\d+\.\d+", t)} == {"halfway-v1.0.0"}
    assert len(set(tags.values())) == 1
    index = tags["halfway"]
    for args in (("verify",), ("verify-attestation", "--type", "slsaprovenance1")):
        out = cosign(runner, settings, *args, ws.ref(index))
        assert out.returncode == 0, out.stderr
