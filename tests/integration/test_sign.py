"""Signing, attesting and verifying against the real registry with the real cosign, on a small
2-platform image (no pipeline): what the factory signs, the cosign CLI itself must verify."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import uuid

import pytest
import requests

from factory.build.imagetest import CheckResult
from factory.core import labels
from factory.core.errors import CommandError, VerificationFailed
from factory.oci.registry import Registry
from factory.trust import attest
from factory.trust.sign import Signer, ensure_dev_key
from factory.trust.verify import verify_image

ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])
BASE_DIGEST = "sha256:" + "5" * 64


@dataclasses.dataclass(frozen=True)
class Signed:
    settings: object  # Settings with a private state dir (its own dev key)
    repo: str  # 127.0.0.1:5000/test/...
    tag_ref: str
    index: str
    platforms: dict[str, str]
    conformance: dict

    def ref(self, digest: str) -> str:
        return f"{self.repo}@{digest}"


def push_image(docker, folder, ref: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(
        f"FROM scratch\nCOPY marker /marker\nLABEL org.opencontainers.image.base.digest={BASE_DIGEST}\n")
    (folder / "marker").write_text(uuid.uuid4().hex)
    docker.build(folder, platforms=["linux/amd64", "linux/arm64"],
                 output={"type": "image", "name": ref, "push": "true"})


def index_of(registry: str, repository: str, reference: str) -> tuple[str, dict[str, str]]:
    """(index digest, platform -> manifest digest), read with plain HTTP, not the factory's client."""
    resp = requests.get(f"http://{registry}/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT},
                        timeout=10)
    resp.raise_for_status()
    doc = resp.json()
    platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in doc["manifests"]}
    return resp.headers["Docker-Content-Digest"], platforms


def cosign(runner, pub, *args: str) -> subprocess.CompletedProcess:
    """The cosign CLI itself, as an app team would run it."""
    return subprocess.run([runner.require("cosign"), *args, "--key", str(pub), "--insecure-ignore-tlog=true",
                           "--allow-http-registry", "--allow-insecure-registry"],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def keyed(settings, tmp_path_factory):
    """Settings whose state dir (and so dev key) belongs to this module alone."""
    return dataclasses.replace(settings, state_dir=tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def signed(keyed, runner, docker, tmp_path_factory) -> Signed:
    ensure_dev_key(keyed, runner)
    repository = f"test/sign-{uuid.uuid4().hex[:10]}"
    repo = f"{keyed.registry}/{repository}"
    push_image(docker, tmp_path_factory.mktemp("ctx"), f"{repo}:v1")
    index, platforms = index_of(keyed.registry, repository, "v1")
    signer = Signer(keyed, runner)
    signer.sign(f"{repo}@{index}", recursive=True)
    for platform, digest in sorted(platforms.items()):
        sbom = {"bomFormat": "CycloneDX", "specVersion": "1.5", "metadata": {"component": {"name": platform}},
                "components": []}
        signer.attest(f"{repo}@{digest}", sbom, "cyclonedx")
    conformance = attest.conformance_predicate(
        image="signtest", version="1.0.0",
        platform_results={p: [CheckResult("config-user", p, d, True, "USER 1001:1001"),
                              CheckResult("no-setuid", p, d, True, "none")] for p, d in platforms.items()},
        policy_rules=["POL-001", "POL-004"], waivers=[], factory_version="test")
    signer.attest(f"{repo}@{index}", conformance, labels.CONFORMANCE_PREDICATE_TYPE)
    return Signed(keyed, repo, f"{repo}:v1", index, platforms, conformance)


def test_dev_key_pair_is_private_and_made_once(keyed, runner, signed):
    key, pub = ensure_dev_key(keyed, runner)
    assert key == keyed.dev_key and pub == keyed.dev_key.with_suffix(".pub")
    assert key.stat().st_mode & 0o777 == 0o600
    assert pub.stat().st_mode & 0o777 in (0o600, 0o644)
    assert key.parent.stat().st_mode & 0o777 == 0o700
    before = (key.read_bytes(), pub.read_bytes(), key.stat().st_ino)
    assert ensure_dev_key(keyed, runner) == (key, pub)
    assert (key.read_bytes(), pub.read_bytes(), key.stat().st_ino) == before


def test_a_lost_public_key_is_derived_again_from_the_private_key(keyed, runner, signed):
    pub = keyed.dev_key.with_suffix(".pub")
    original = pub.read_bytes()
    pub.unlink()
    ensure_dev_key(keyed, runner)
    assert pub.read_bytes() == original


def test_the_cosign_cli_verifies_the_index_and_every_platform(signed, runner):
    pub = signed.settings.dev_key.with_suffix(".pub")
    for digest in [signed.index, *signed.platforms.values()]:
        out = cosign(runner, pub, "verify", signed.ref(digest))
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)[0]["critical"]["image"]["docker-manifest-digest"] == digest


def test_the_cosign_cli_verifies_an_sbom_on_every_platform(signed, runner):
    pub = signed.settings.dev_key.with_suffix(".pub")
    for platform, digest in signed.platforms.items():
        out = cosign(runner, pub, "verify-attestation", "--type", "cyclonedx", signed.ref(digest))
        assert out.returncode == 0, out.stderr
        statement = json.loads(base64.b64decode(json.loads(out.stdout.splitlines()[0])["payload"]))
        assert statement["predicateType"] == labels.CYCLONEDX_PREDICATE_TYPE
        assert statement["subject"][0]["digest"]["sha256"] == digest.removeprefix("sha256:")
        assert statement["predicate"]["metadata"]["component"]["name"] == platform


def test_the_cosign_cli_verifies_the_conformance_attestation(signed, runner):
    pub = signed.settings.dev_key.with_suffix(".pub")
    out = cosign(runner, pub, "verify-attestation", "--type", labels.CONFORMANCE_PREDICATE_TYPE,
                 signed.ref(signed.index))
    assert out.returncode == 0, out.stderr
    statement = json.loads(base64.b64decode(json.loads(out.stdout.splitlines()[0])["payload"]))
    assert statement["predicateType"] == labels.CONFORMANCE_PREDICATE_TYPE
    assert statement["predicate"] == signed.conformance
    # The SBOMs were attached to the platform manifests, not to the index.
    assert cosign(runner, pub, "verify-attestation", "--type", "cyclonedx", signed.ref(signed.index)).returncode != 0


def test_the_signer_reads_back_decoded_statements(signed, runner):
    signer = Signer(signed.settings, runner)
    statements = signer.verify_attestation(signed.ref(signed.index), labels.CONFORMANCE_PREDICATE_TYPE)
    assert [s["predicate"] for s in statements] == [signed.conformance]
    assert signer.verify(signed.ref(signed.index))[0]["critical"]["image"]["docker-manifest-digest"] == signed.index


def test_verify_image_by_tag_checks_everything(signed, runner):
    with Registry(signed.settings.registry, insecure=True) as registry:
        report = verify_image(signed.tag_ref, Signer(signed.settings, runner), lambda host: registry, {})
    assert report.index_digest == signed.index and report.platforms == signed.platforms
    by_check = {f.check: f for f in report.findings}
    assert set(by_check) == {"signature (index)", "signature (linux/amd64)", "signature (linux/arm64)",
                             "sbom attestation (linux/amd64)", "sbom attestation (linux/arm64)",
                             "hardening conformance", "slsa provenance", "vulnerability scan", "base.digest label"}
    # No provenance was attested here: verify must say so, and the rest must pass.
    assert not by_check["slsa provenance"].ok
    assert [f.check for f in report.findings if not f.ok] == ["slsa provenance"]
    assert by_check["base.digest label"].detail == BASE_DIGEST
    assert by_check["hardening conformance"].detail == "passed: 4 checks on linux/amd64, linux/arm64"


def test_a_wrong_public_key_fails_verification(signed, runner, tmp_path):
    subprocess.run([runner.require("cosign"), "generate-key-pair"], cwd=tmp_path, env={"COSIGN_PASSWORD": ""},
                   capture_output=True, check=True, timeout=60)
    other = tmp_path / "cosign.pub"
    assert cosign(runner, other, "verify", signed.ref(signed.index)).returncode != 0
    signer = Signer(signed.settings, runner)
    with pytest.raises(VerificationFailed, match="does not verify"):
        signer.verify(signed.ref(signed.index), public_key=other)
    with Registry(signed.settings.registry, insecure=True) as registry:
        report = verify_image(signed.tag_ref, signer, lambda host: registry, {}, public_key=other)
    assert not report.ok
    failed = {f.check for f in report.findings if not f.ok}
    assert {"signature (index)", "sbom attestation (linux/amd64)", "hardening conformance"} <= failed


def test_an_unsigned_image_does_not_verify(keyed, runner, docker, tmp_path):
    repository = f"test/unsigned-{uuid.uuid4().hex[:10]}"
    push_image(docker, tmp_path / "ctx", f"{keyed.registry}/{repository}:v1")
    with Registry(keyed.registry, insecure=True) as registry:
        report = verify_image(f"{keyed.registry}/{repository}:v1", Signer(keyed, runner), lambda host: registry, {})
    assert not report.ok
    # Said, never passed as if scanned: no scan record verifies (the finding only fails on a blocking CVE).
    assert {f.check for f in report.findings if f.ok} == {"base.digest label", "vulnerability scan"}
    scan_finding = next(f for f in report.findings if f.check == "vulnerability scan")
    assert scan_finding.detail == "NOT scanned: no verified scan record"


def test_a_garbage_private_key_makes_signing_fail_naming_the_step(signed, runner, tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nnot a key\n"
                   "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    bad.chmod(0o600)
    settings = dataclasses.replace(signed.settings,
                                   signing=dataclasses.replace(signed.settings.signing, key=str(bad)))
    with pytest.raises(CommandError) as e:
        Signer(settings, runner).sign(signed.ref(signed.index))
    assert e.value.step == "sign" and e.value.returncode != 0
    assert str(e.value).startswith("sign: `cosign sign")
    assert "COSIGN_PASSWORD" in str(e.value)  # the hint says what to check
    with pytest.raises(CommandError) as e:
        Signer(settings, runner).attest(signed.ref(signed.index), {"x": 1}, "custom")
    assert e.value.step == "attest"
