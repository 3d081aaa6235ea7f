import dataclasses
from pathlib import Path

import pytest

from factory import config
from factory.errors import UsageError
from factory.sign import Signer
from factory.tools import Runner

DIGEST = "sha256:" + "a" * 64


def signer(tmp_path, **signing) -> Signer:
    cfg = tmp_path / "factory.yaml"
    cfg.write_text("")
    s = config.load(cfg, environ={})
    s = dataclasses.replace(s, signing=dataclasses.replace(s.signing, **signing))
    return Signer(s, Runner())


def test_signing_by_tag_is_refused(tmp_path):
    with pytest.raises(UsageError, match="by tag"):
        signer(tmp_path).sign_argv("127.0.0.1:5000/myorg/base:python-v1")


def test_sign_argv_local_registry_dev_key(tmp_path):
    argv = signer(tmp_path).sign_argv(f"127.0.0.1:5000/myorg/base@{DIGEST}")
    assert argv[:2] == ["cosign", "sign"]
    assert "--recursive" in argv and "--tlog-upload=false" in argv and "--yes" in argv
    assert argv[argv.index("--key") + 1] == "/var/lib/factory/keys/cosign.key"
    assert {"--allow-http-registry", "--allow-insecure-registry"} <= set(argv)
    assert argv[-1] == f"127.0.0.1:5000/myorg/base@{DIGEST}"


def test_insecure_flags_only_for_insecure_registries(tmp_path):
    argv = signer(tmp_path).sign_argv(f"ghcr.io/myorg/base@{DIGEST}")
    assert "--allow-http-registry" not in argv and "--allow-insecure-registry" not in argv


def test_keyless_passes_no_key_and_uploads_to_the_log(tmp_path):
    argv = signer(tmp_path, keyless=True, tlog_upload=True).sign_argv(f"ghcr.io/myorg/base@{DIGEST}")
    assert "--key" not in argv and "--tlog-upload=true" in argv


def test_attest_and_verify_argv(tmp_path):
    s = signer(tmp_path)
    ref = f"127.0.0.1:5000/myorg/base@{DIGEST}"
    attest = s.attest_argv(ref, Path("/tmp/p.json"), "cyclonedx")
    assert attest[attest.index("--type") + 1] == "cyclonedx" and attest[attest.index("--predicate") + 1] == "/tmp/p.json"
    verify = s.verify_attestation_argv(ref, "slsaprovenance1")
    assert "--insecure-ignore-tlog=true" in verify
    assert verify[verify.index("--key") + 1] == "/var/lib/factory/keys/cosign.pub"


def test_kms_key_is_passed_through(tmp_path):
    s = signer(tmp_path, key="awskms:///alias/base-images")
    argv = s.sign_argv(f"ghcr.io/myorg/base@{DIGEST}")
    assert argv[argv.index("--key") + 1] == "awskms:///alias/base-images"


def test_kms_key_verifies_with_the_uri_itself(tmp_path):
    s = signer(tmp_path, key="awskms:///alias/base-images")
    argv = s.verify_argv(f"ghcr.io/myorg/base@{DIGEST}")
    assert argv[argv.index("--key") + 1] == "awskms:///alias/base-images"
