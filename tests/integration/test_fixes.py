"""`factory fixes` against the real registry, cosign and Debian archive, checked against apt itself.

One throwaway factory repository publishes an image on the seeded Debian upstream (mmdebstrap of suite
``bookworm`` alone) for linux/amd64 and linux/arm64. `factory fixes --format json` must list, per
platform, exactly what ``apt-get -s upgrade`` inside that published image upgrades once
``bookworm-updates`` and ``bookworm-security`` are in its sources: same packages, same installed and
new versions, the same ones attributed to the security suite. An SBOM attestation checked against
another key is an error naming the image, never "no fixes".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import REPO_ROOT
from tests.integration.workspace import Workspace, apt_upgrades, manifest_on, ok

PLATFORMS = ("linux/amd64", "linux/arm64")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "fixes"


@dataclass
class Published:
    ws: Workspace
    image: str  # the immutable tag's reference


@pytest.fixture(scope="module")
def published(tmp_path_factory, settings, seeded_debian) -> Published:
    tmp = tmp_path_factory.mktemp("fixes")
    ws = Workspace.create(tmp / "repo", registry=settings.registry, state_dir=settings.state_dir,
                          extra_config={"helper_image": seeded_debian.ref})
    ws.add_manifest(manifest_on(seeded_debian, "fixes", description="fixes test image on bookworm alone"))
    ws.add_manifest(manifest_on(seeded_debian, "never", description="a manifest never published"))
    ok(ws.factory("render"))
    ws.commit("render")
    ok(ws.factory("publish", "fixes"))
    return Published(ws, ws.ref("fixes-v1.0.0"))


def test_fixes_equal_what_apt_upgrades_on_each_platform(published, docker):
    proc = published.ws.factory("fixes", "--format", "json")
    assert proc.returncode == 4, f"expected exit 4 (security fixes pending)\n{proc.stdout}\n{proc.stderr[-3000:]}"
    doc = json.loads(proc.stdout)
    assert doc["unpublished"] == ["never"]
    reports = {r["platform"]: r for r in doc["reports"] if r["image"] == "fixes"}
    assert sorted(reports) == list(PLATFORMS)
    summary = {}
    for platform in PLATFORMS:
        report = reports[platform]
        assert report["status"] == "fixable" and report["version"] == "1.0.0", report
        assert (report["distro"], report["codename"]) == ("debian", "bookworm")
        assert {s["name"] for s in report["suites"]} == {"bookworm", "bookworm-updates", "bookworm-security"}
        ours = {(f["package"], f["installed"], f["candidate"], f["kind"] == "security") for f in report["fixes"]}
        apt = apt_upgrades(docker, published.image, platform)
        assert ours == apt, (f"{platform}: factory and apt differ\n only factory: {sorted(ours - apt)}\n"
                             f" only apt: {sorted(apt - ours)}")
        security = sum(1 for f in report["fixes"] if f["kind"] == "security")
        assert security > 0, "the seeded upstream is bookworm alone: bookworm-security has fixes for it"
        summary[platform] = {"packages": report["packages"], "security": security,
                             "updates": len(report["fixes"]) - security,
                             "fixes": [f"{f['package']} {f['installed']} -> {f['candidate']} ({f['suite']})"
                                       for f in report["fixes"]]}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "summary.json").write_text(json.dumps(summary, indent=2))
    assert doc["summary"]["security"] == sum(s["security"] for s in summary.values())

    table = published.ws.factory("fixes", "fixes")
    assert table.returncode == 4, table.stderr[-3000:]
    assert "fixes 1.0.0 linux/arm64: " in table.stdout and "bookworm-security" in table.stdout
    assert "security fix(es) pending in fixes" in table.stderr


def test_an_sbom_that_does_not_verify_is_an_error_naming_the_image(published, runner, tmp_path: Path):
    """The attestations were signed with the dev key; checked against another key they do not verify."""
    runner.run(["cosign", "generate-key-pair"], cwd=tmp_path, env={"COSIGN_PASSWORD": ""}, input="", timeout=60)
    proc = published.ws.factory("fixes", "fixes", "--key", str(tmp_path / "cosign.pub"), "--format", "json")
    assert proc.returncode == 2, f"{proc.stdout}\n{proc.stderr[-3000:]}"
    doc = json.loads(proc.stdout)
    assert {r["status"] for r in doc["reports"]} == {"error"}
    assert all(r["fixes"] == [] and "cyclonedx" in r["error"] for r in doc["reports"])
    for platform in PLATFORMS:
        assert f"fixes 1.0.0 {platform}: no verified cyclonedx attestation" in proc.stderr
    assert "no security fix pending" not in proc.stderr
