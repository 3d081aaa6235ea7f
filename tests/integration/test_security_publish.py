"""Publish applies the distribution's security fixes, proves none is left, and records them: the real
dockerd/buildx (arm64 under QEMU), registry, cosign and Debian archive, checked against apt itself.

The seeded Debian upstream is an mmdebstrap of suite ``bookworm`` alone, so bookworm-security has fixes for
some of its packages. With the default policy (require) a hardening-only image on it is published with
exactly those packages upgraded, in its one added layer: `factory fixes` and `apt-get -s upgrade` both find
no security fix left on either platform, and the signed conformance attestation lists what was applied.
An upstream that holds a package back (``apt-mark hold tzdata``) fails the gate, naming it, and nothing is
tagged.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import requests

from factory.core.labels import CONFORMANCE_PREDICATE_TYPE
from tests.integration.conftest import REPO_ROOT
from tests.integration.workspace import (
    INDEX_ACCEPT,
    Workspace,
    apt_upgrades,
    attested_predicates,
    manifest_on,
    ok,
)

PLATFORMS = ("linux/amd64", "linux/arm64")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "security-publish"


@dataclass
class Published:
    ws: Workspace
    image: str  # the immutable tag's reference
    index: str
    report: dict
    seconds: float


def _workspace(tmp: Path, settings, seeded_debian) -> Workspace:
    # security_fixes=None: factory.yaml says nothing, so the default policy (require) is what is tested.
    return Workspace.create(tmp / "repo", registry=settings.registry, state_dir=settings.state_dir,
                            extra_config={"helper_image": seeded_debian.ref}, security_fixes=None)


def _publish(ws: Workspace, name: str) -> tuple[object, dict | None, float]:
    ok(ws.factory("render"))
    ws.commit("render")
    report = ws.root / f"report-{name}.json"
    started = time.monotonic()
    proc = ws.factory("publish", name, "--report", str(report))
    return proc, (json.loads(report.read_text()) if report.exists() else None), time.monotonic() - started


@pytest.fixture(scope="module")
def published(tmp_path_factory, settings, seeded_debian) -> Published:
    ws = _workspace(tmp_path_factory.mktemp("security"), settings, seeded_debian)
    ws.add_manifest(manifest_on(seeded_debian, "minbase", description="hardening only, on bookworm alone"))
    proc, report, seconds = _publish(ws, "minbase")
    ok(proc)
    assert report is not None
    index = ws.tags()["minbase-v1.0.0"]
    return Published(ws, ws.ref("minbase-v1.0.0"), index, report, seconds)


def _layers(ws: Workspace, manifest_digest: str) -> int:
    return len(ws.manifest(manifest_digest)["layers"])


def _upstream_layers(seeded_debian) -> dict[str, int]:
    host, _, repo = seeded_debian.image.partition("/")

    def get(ref: str) -> dict:
        resp = requests.get(f"http://{host}/v2/{repo}/manifests/{ref}", headers={"Accept": INDEX_ACCEPT},
                            timeout=10)
        resp.raise_for_status()
        return resp.json()
    index = get(seeded_debian.digest)
    return {f"{m['platform']['os']}/{m['platform']['architecture']}": len(get(m["digest"])["layers"])
            for m in index["manifests"] if m["platform"]["os"] != "unknown"}


def test_fixes_are_applied_none_is_left_and_the_attestation_lists_them(published, seeded_debian, settings, runner,
                                                                      docker):
    ws, image = published.ws, published.image
    prod = published.report["images"][0]["prod"]
    assert prod["fix_args"]["ORG_LAYER"] == "run"
    upgraded = set(prod["fix_args"]["SECURITY_FIXES"].split())
    assert upgraded, "the seeded upstream is bookworm alone: bookworm-security has fixes for it"

    # Still one added layer over the upstream, on each platform.
    platforms = ws.platforms(published.index)
    upstream = _upstream_layers(seeded_debian)
    for platform in PLATFORMS:
        assert _layers(ws, platforms[platform]) == upstream[platform] + 1

    # The factory's answer: no security fix pending on either platform (exit 0: at most other updates).
    proc = ws.factory("fixes", "minbase", "--format", "json")
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-3000:]}"
    reports = {r["platform"]: r for r in json.loads(proc.stdout)["reports"] if r["image"] == "minbase"}
    assert sorted(reports) == list(PLATFORMS)

    # The signed conformance attestation, read with the cosign CLI.
    [conformance] = attested_predicates(runner, settings.dev_key.with_suffix(".pub"), ws.ref(published.index),
                                        CONFORMANCE_PREDICATE_TYPE)
    record = conformance["securityFixes"]
    assert record["policy"] == "require" and record["checked"].endswith("Z")
    assert conformance["passed"] is True
    assert record == prod["security_fixes"], "the run report carries the same record"

    summary = {}
    for platform in PLATFORMS:
        ours = {(f["package"], f["installed"], f["candidate"], f["kind"] == "security")
                for f in reports[platform]["fixes"]}
        assert not [f for f in ours if f[3]], f"{platform}: security fixes left: {ours}"
        # apt's answer in the published image: nothing from the security suite, and the same other updates.
        apt = apt_upgrades(docker, image, platform)
        assert not [a for a in apt if a[3]], f"{platform}: apt still upgrades from bookworm-security: {apt}"
        assert ours == apt
        # What was applied is what apt would have upgraded from the security suite in the upstream.
        before = {(p, old, new) for p, old, new, security in apt_upgrades(docker, seeded_debian.ref, platform)
                  if security}
        found = record["platforms"][platform]
        applied = {(a["package"], a["from"], a["to"]) for a in found["applied"]}
        assert applied == before, f"{platform}: applied {sorted(applied ^ before)} differ from apt's answer"
        assert {a["package"] for a in found["applied"]} <= upgraded
        assert found["status"] == "fixable" and found["pendingSecurity"] == 0
        assert {s["name"] for s in found["suites"]} == {"bookworm", "bookworm-updates", "bookworm-security"}
        check = next(c for c in conformance["platforms"][platform]["checks"] if c["name"] == "security-fixes")
        assert check["passed"] is True
        summary[platform] = {"applied": len(applied), "fixes": sorted(f"{a['package']} {a['from']} -> {a['to']}"
                                                                      for a in found["applied"])}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "applied.json").write_text(json.dumps(
        {"platforms": summary, "publish_seconds": round(published.seconds, 1),
         "timings": published.report["images"][0]["timings"], "archives": published.report.get("archives")},
        indent=2))


def test_the_provenance_lists_the_applied_packages_and_the_build_arguments(published, settings, runner):
    [provenance] = attested_predicates(runner, settings.dev_key.with_suffix(".pub"),
                                       published.ws.ref(published.index), "slsaprovenance1")
    args = provenance["buildDefinition"]["internalParameters"]["buildArgs"]
    prod = published.report["images"][0]["prod"]
    assert args["SECURITY_FIXES"] == prod["fix_args"]["SECURITY_FIXES"] and args["ORG_LAYER"] == "run"
    purls = {d["uri"] for d in provenance["buildDefinition"]["resolvedDependencies"]
             if d.get("uri", "").startswith("pkg:")}
    for platform, found in prod["security_fixes"]["platforms"].items():
        arch = platform.split("/")[1]
        for a in found["applied"]:
            assert any(p.startswith(f"pkg:deb/debian/{a['package']}@") and p.endswith(f"arch={a['arch']}")
                       for p in purls), (a, arch)


def test_the_gate_fails_a_build_that_leaves_a_fix_pending(tmp_path, settings, seeded_debian, docker):
    """An upstream that holds tzdata back: apply-fixes.sh does not upgrade it, the gate names it, nothing is
    tagged."""
    folder = tmp_path / "held"
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {seeded_debian.ref}\nRUN apt-mark hold tzdata\n")
    tag = f"12-held-{uuid.uuid4().hex[:8]}"
    image = f"{seeded_debian.image}-held"
    docker.build(folder, platforms=list(PLATFORMS),
                 output={"type": "image", "name": f"{image}:{tag}", "push": "true"})
    host, _, repo = image.partition("/")
    held = replace(seeded_debian, image=image, tag=tag, digest=_digest(host, repo, tag))

    ws = _workspace(tmp_path, settings, seeded_debian)
    # One platform: the gate is the same code on each, and an arm64 build under QEMU costs minutes of CI
    ws.add_manifest(manifest_on(held, "held", description="hardening only, on an upstream holding tzdata",
                                platforms=["linux/amd64"]))
    proc, report, _ = _publish(ws, "held")
    assert proc.returncode == 1, f"{proc.stdout}\n{proc.stderr[-3000:]}"
    assert report is not None
    [result] = report["images"]
    assert (result["status"], result["step"]) == ("failed", "gates"), result
    assert "tzdata" in result["error"] and "bookworm-security" in result["error"], result["error"]
    assert "security fix(es) pending after the build" in result["error"]
    assert "apt-mark hold" in result["error"]  # the hint
    assert ws.tags() == {}, "nothing may be tagged"


def _digest(host: str, repo: str, tag: str) -> str:
    resp = requests.head(f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": INDEX_ACCEPT}, timeout=10)
    resp.raise_for_status()
    return resp.headers["Docker-Content-Digest"]
