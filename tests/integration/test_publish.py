"""The publish pipeline against the real registry, dockerd/buildx (arm64 under QEMU) and cosign."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration.workspace import Workspace, manifest_on


@pytest.fixture
def ws(tmp_path, settings, seeded_debian) -> Workspace:
    # No-shell images are hardened in a helper stage that needs a pinned Debian image: the seeded one.
    return Workspace.create(tmp_path / "repo", registry=settings.registry, state_dir=settings.state_dir,
                            extra_config={"helper_image": seeded_debian.ref})


def publish(ws: Workspace, *names: str, extra: tuple[str, ...] = (), env: dict | None = None):
    render = ws.factory("render")
    assert render.returncode == 0, render.stdout + render.stderr
    ws.commit("render")
    report = ws.root / "report.json"
    proc = ws.factory("publish", *names, "--report", str(report), *extra, env=env)
    return proc, (json.loads(report.read_text()) if report.exists() else None)


def cosign(runner, settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([runner.require("cosign"), *args, "--key", str(settings.dev_key.with_suffix(".pub")),
                           "--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry"],
                          capture_output=True, text=True, timeout=120)


def test_debian_image_publishes_signed_attested_and_hardened(ws, seeded_debian, settings, runner, docker):
    ws.add_manifest(manifest_on(seeded_debian, "deb", packages=["tzdata"], env={"PYTHONUNBUFFERED": "1"},
                                tests=[{"name": "uid", "run": ["id", "-u"], "expect_stdout": "1001"}]))
    proc, report = publish(ws, "deb")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    tags = ws.tags()
    assert set(tags) == {"deb-v1.0.0", "deb-v1.0", "deb-v1", "deb"}
    index = tags["deb-v1.0.0"]
    assert len(set(tags.values())) == 1
    platforms = ws.platforms(index)
    assert set(platforms) == {"linux/amd64", "linux/arm64"}
    assert report["images"][0]["prod"]["index_digest"] == index

    # The cosign CLI itself, with the public key: signature on the index and on each platform, the
    # SBOM attestation on each platform, the conformance and provenance attestations on the index.
    for digest in [index, *platforms.values()]:
        out = cosign(runner, settings, "verify", ws.ref(digest))
        assert out.returncode == 0, out.stderr
    for digest in platforms.values():
        out = cosign(runner, settings, "verify-attestation", "--type", "cyclonedx", ws.ref(digest))
        assert out.returncode == 0, out.stderr
    from factory.core.labels import CONFORMANCE_PREDICATE_TYPE

    for kind in (CONFORMANCE_PREDICATE_TYPE, "slsaprovenance1"):
        out = cosign(runner, settings, "verify-attestation", "--type", kind, ws.ref(index))
        assert out.returncode == 0, out.stderr

    # Runs as 1001 with TZ=UTC under the hardened flags, on both platforms, pulled by digest.
    for platform in platforms:
        rc, out, err = docker.run(ws.ref(index), ["-c", 'id -u; echo "$TZ"; echo "$PYTHONUNBUFFERED"'],
                                  platform=platform, entrypoint="/bin/sh")
        assert (rc, out.split()) == (0, ["1001", "UTC", "1"]), err

    labels = ws.labels(index)
    assert labels["org.opencontainers.image.base.digest"] == seeded_debian.digest
    assert labels["org.opencontainers.image.version"] == "1.0.0"


def test_noshell_upstream_is_hardened_without_run_and_published(ws, seeded, docker):
    ws.add_manifest(manifest_on(seeded["noshell"], "static",
                                tests=[{"name": "tini runs", "run": ["/usr/bin/tini", "--version"],
                                        "expect_stdout": "tini version"}]))
    proc, report = publish(ws, "static")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dockerfile = (ws.root / "images" / "static" / "Dockerfile").read_text()
    final_stage = dockerfile.split("\nFROM ")[-1]
    assert "\nRUN " not in final_stage
    index = ws.tags()["static-v1.0.0"]
    conformance = report["images"][0]["prod"]["checks"]
    assert {c["platform"] for c in conformance} == {"linux/amd64", "linux/arm64"}
    assert all(c["passed"] for c in conformance)
    for platform in ("linux/amd64", "linux/arm64"):
        rc, _out, err = docker.run(ws.ref(index), ["--version"], platform=platform, entrypoint="/usr/bin/tini")
        assert rc == 0, err


def test_factory_verify_accepts_the_right_key_and_refuses_another(ws, seeded, runner, tmp_path):
    ws.add_manifest(manifest_on(seeded["busybox"], "verified"))
    proc, _ = publish(ws, "verified")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    good = ws.factory("verify", ws.ref("verified-v1"))
    assert good.returncode == 0, good.stdout + good.stderr
    for check in ("signature (index)", "sbom attestation (linux/amd64)", "sbom attestation (linux/arm64)",
                  "hardening conformance", "slsa provenance", "base.digest label"):
        assert any(line.startswith("ok") and check in line for line in good.stdout.splitlines()), check
    subprocess.run([runner.require("cosign"), "generate-key-pair"], cwd=tmp_path, env={"COSIGN_PASSWORD": ""},
                   capture_output=True, check=True)
    bad = ws.factory("verify", ws.ref("verified-v1"), "--key", str(tmp_path / "cosign.pub"))
    assert bad.returncode == 1
    assert "FAILED signature (index)" in bad.stdout and "not verified" in bad.stderr


def test_child_base_digest_is_the_parents_published_index(ws, seeded):
    ws.add_manifest(manifest_on(seeded["noshell"], "parent"))
    child = manifest_on(seeded["noshell"], "child", env={"APP_MODE": "child"})
    del child["upstream"]
    child["parent"] = "parent"
    ws.add_manifest(child)
    proc, _ = publish(ws, "parent", "child")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tags = ws.tags()
    assert ws.labels(tags["child-v1.0.0"])["org.opencontainers.image.base.digest"] == tags["parent-v1.0.0"]


def test_same_inputs_twice_write_no_new_version(ws, seeded):
    ws.add_manifest(manifest_on(seeded["busybox"], "twice"))
    first, _ = publish(ws, "twice")
    assert first.returncode == 0, first.stdout + first.stderr
    before = ws.tags()
    second, report = publish(ws, "twice")
    assert second.returncode == 0, second.stdout + second.stderr
    assert report["images"][0]["status"] == "up-to-date"
    assert ws.tags() == before


# --- failures: each leaves no tag written or moved --------------------------------------------

def test_failing_manifest_test_moves_no_tag(ws, seeded):
    ws.add_manifest(manifest_on(seeded["busybox"], "failing",
                                tests=[{"name": "wrong uid", "run": ["id", "-u"], "expect_stdout": "4242"}]))
    proc, report = publish(ws, "failing")
    assert proc.returncode == 1
    assert "test" in report["images"][0]["step"]
    assert "wrong uid" in proc.stderr
    assert ws.tags() == {}


def test_signing_failure_moves_no_tag(ws, seeded, tmp_path):
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nnot a key\n"
                       "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    bad_key.chmod(0o600)
    ws.add_manifest(manifest_on(seeded["busybox"], "badkey"))
    proc, report = publish(ws, "badkey", env={"COSIGN_KEY": str(bad_key)})
    assert proc.returncode == 1
    assert report["images"][0]["step"] == "sign"
    assert ws.tags() == {}


def test_critical_cve_from_a_recorded_report_moves_no_tag(ws, seeded):
    from tests.integration.conftest import REPO_ROOT

    ws.add_manifest(manifest_on(seeded["busybox"], "vulnerable"))
    recorded = REPO_ROOT / "tests" / "data" / "trivy" / "debian-openssl-critical.json"
    proc, report = publish(ws, "vulnerable", extra=("--scan-report", str(recorded)))
    assert proc.returncode == 1
    assert report["images"][0]["step"] == "gates"
    assert "CRITICAL" in report["images"][0]["error"]
    assert ws.tags() == {}


def test_existing_immutable_tag_is_kept_and_the_next_patch_is_used(ws, seeded, docker, tmp_path):
    ws.add_manifest(manifest_on(seeded["busybox"], "immutable"))
    # Someone already wrote immutable-v1.0.0 at another digest (but no floating tags).
    other = ws.push_dummy(docker, tmp_path / "dummy", "immutable-v1.0.0")
    proc, _report = publish(ws, "immutable")
    # The registry is the source of truth: the next patch is 1.0.1, and 1.0.0 is left alone.
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = ws.tags()
    assert after["immutable-v1.0.0"] == other
    assert after["immutable-v1.0.1"] == after["immutable"] != other


def test_a_race_for_the_immutable_tag_fails_cleanly_without_moving_tags(ws, seeded, docker, tmp_path, monkeypatch):
    """Another publisher writes our version's immutable tag between our version choice and our tag
    write: we must not overwrite it, and must not move any floating tag."""
    from factory.context import RunContext
    from factory.publish import pipeline
    from factory.publish.publisher import Publisher

    ws.add_manifest(manifest_on(seeded["busybox"], "race"))
    assert ws.factory("render").returncode == 0
    ws.commit()
    other = ws.push_dummy(docker, tmp_path / "dummy", "race-scratch")

    class RacedPublisher(Publisher):
        def _write_tags(self, v, existing, version):
            self.target.tag(self.settings.repository, other, f"{v.tag_prefix}-v{version}")  # the other writer
            super()._write_tags(v, existing, version)

    monkeypatch.setattr(pipeline, "Publisher", RacedPublisher)
    report = pipeline.publish(RunContext(ws.root / "factory.yaml"), ["race"])
    result = report.images[0]
    assert (result.status, result.step) == ("failed", "tag")
    assert "refusing to move" in result.error
    assert ws.tags() == {"race-scratch": other, "race-v1.0.0": other}
