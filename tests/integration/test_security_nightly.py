"""The nightly rebuilds for security fixes alone, against the real registry, cosign and Debian archive.

A hardening-only Debian image and a child built on it are published on the seeded upstream (mmdebstrap
of suite ``bookworm`` alone) with ``policy.security_fixes: off``, so that their versions carry the fixes
``bookworm-security`` has for it. Then the policy becomes ``require`` and `factory nightly` runs: nothing
drifted, so it must rebuild the image for the reason "security fixes" alone, and its child after it. The
new version has no security fix pending on linux/amd64 and linux/arm64, by `factory fixes` and by apt
itself (``apt-get -s upgrade`` inside it with the security suite enabled); a second nightly builds
nothing.
"""

from __future__ import annotations

import json
import re
import time

import yaml

from tests.integration.conftest import REPO_ROOT
from tests.integration.workspace import Workspace, apt_upgrades, manifest_on, ok

ARTIFACTS = REPO_ROOT / "test-artifacts" / "security-nightly"
# One platform: what the nightly decides (rebuild for fixes alone, the child after it, nothing the next
# night) does not depend on it; applying the fixes on every platform, arm64 under QEMU, and apt's own word
# on each are tests/integration/test_security_publish.py's (this test took 4.6 min of CI with arm64).
PLATFORMS = ("linux/amd64",)
POLICY = {"scanner_db_unavailable": "warn"}


def _security(ws: Workspace, *names: str) -> dict[tuple[str, str], list[dict]]:
    """(image, platform) -> its pending security fixes, by `factory fixes --format json`."""
    proc = ws.factory("fixes", *names, "--format", "json")
    assert proc.returncode in (0, 4), f"{proc.stdout}\n{proc.stderr[-3000:]}"
    doc = json.loads(proc.stdout)
    assert not [r for r in doc["reports"] if r["status"] == "error"], doc
    return {(r["image"], r["platform"]): [f for f in r["fixes"] if f["kind"] == "security"] for r in doc["reports"]}


def _set_policy(ws: Workspace, security_fixes: str) -> None:
    path = ws.root / "factory.yaml"
    config = yaml.safe_load(path.read_text())
    config["policy"] = {**POLICY, "security_fixes": security_fixes}
    path.write_text(yaml.safe_dump(config))


def test_nightly_rebuilds_for_security_fixes_alone_then_nothing(tmp_path, settings, seeded_debian, docker):
    ws = Workspace.create(tmp_path / "repo", registry=settings.registry, state_dir=settings.state_dir,
                          extra_config={"helper_image": seeded_debian.ref,
                                        "policy": {**POLICY, "security_fixes": "off"}})
    ws.add_manifest(manifest_on(seeded_debian, "secbase", description="hardening only, on bookworm alone",
                                platforms=list(PLATFORMS)))
    child = manifest_on(seeded_debian, "secapp", description="a child of secbase", env={"APP": "1"},
                        platforms=list(PLATFORMS))
    del child["upstream"]
    child["parent"] = "secbase"
    ws.add_manifest(child)
    ok(ws.factory("render"))
    ws.commit("manifests, policy off")
    started = time.monotonic()
    ok(ws.factory("publish", "--all"))
    first_publish = time.monotonic() - started
    before = ws.tags()
    pending_before = _security(ws)
    for platform in PLATFORMS:
        assert pending_before[("secbase", platform)], f"secbase 1.0.0 {platform}: bookworm-security has fixes for it"

    # require: the policy decides the build args, never the rendered context (render --check stays clean),
    # so the one reason to rebuild is the fixes pending in the published version
    _set_policy(ws, "require")
    ok(ws.factory("render", "--check"))
    ws.commit("policy: security_fixes require")
    planned = ws.factory("plan", "--format", "json")
    assert planned.returncode == 0, planned.stderr[-3000:]
    plan = {p["name"]: p for p in json.loads(planned.stdout)}
    assert plan["secbase"]["reasons"] == ["security fixes"], plan["secbase"]
    assert "parent changed" in plan["secapp"]["reasons"], plan["secapp"]
    packages = {f["package"] for f in plan["secbase"]["security_fixes"]}
    assert packages == {f["package"] for p in PLATFORMS for f in pending_before[("secbase", p)]}
    table = ws.factory("plan")
    assert table.returncode == 0 and all(len(line) <= 100 for line in table.stdout.splitlines()), table.stdout

    started = time.monotonic()
    nightly = ws.factory("nightly")
    nightly_seconds = time.monotonic() - started
    assert nightly.returncode == 0, nightly.stdout + nightly.stderr[-4000:]
    assert "bump upstream" not in nightly.stdout  # nothing drifted: the fixes alone rebuilt it
    assert re.search(r"plan: secbase: security fixes$", nightly.stdout, re.M), nightly.stdout  # alone
    assert "security fixes for secbase (pending in 1.0.0): " in nightly.stdout
    assert "plan: secapp: parent changed" in nightly.stdout
    tags = ws.tags()
    assert tags["secbase"] == tags["secbase-v1.0.1"] != before["secbase-v1.0.0"]
    assert tags["secapp"] == tags["secapp-v1.0.1"] != before["secapp-v1.0.0"]
    assert ws.labels(tags["secapp-v1.0.1"])["org.opencontainers.image.base.digest"] == tags["secbase-v1.0.1"]

    after = _security(ws)
    apt_left = {}
    for image in ("secbase", "secapp"):
        for platform in PLATFORMS:
            assert after[(image, platform)] == [], f"{image} 1.0.1 {platform}: {after[(image, platform)]}"
            upgrades = apt_upgrades(docker, ws.ref(f"{image}-v1.0.1"), platform)
            apt_left[f"{image} {platform}"] = sorted(u[0] for u in upgrades if u[3])
            assert not apt_left[f"{image} {platform}"], f"apt still upgrades from the security suite: {upgrades}"
    verified = ws.factory("verify", ws.ref("secbase-v1.0.1"))
    assert verified.returncode == 0, verified.stdout + verified.stderr[-3000:]
    assert "security fixes" in verified.stdout and "policy require" in verified.stdout

    started = time.monotonic()
    again = ws.factory("nightly")
    second_seconds = time.monotonic() - started
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    assert "nothing drifted, nothing changed and no security fix pending: no builds" in again.stdout  # checked
    assert ws.tags() == tags

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "summary.json").write_text(json.dumps({
        "first_publish_seconds": round(first_publish, 1), "nightly_seconds": round(nightly_seconds, 1),
        "second_nightly_seconds": round(second_seconds, 1),
        "pending_before": {f"{i} {p}": [f"{f['package']} {f['installed']} -> {f['candidate']}" for f in fixes]
                           for (i, p), fixes in sorted(pending_before.items())},
        "nightly_notes": nightly.stdout.splitlines()[:20], "apt_security_upgrades_after": apt_left,
    }, indent=2))
