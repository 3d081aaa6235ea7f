import dataclasses
from pathlib import Path

import pytest
import structlog

from factory.adapters.tools import Runner
from factory.core.errors import ConfigError, EnvironmentProblem, UsageError
from factory.spec import config
from factory.trust.sign import KeylessIdentity, Signer, ensure_dev_key, is_key_uri

DIGEST = "sha256:" + "a" * 64


@pytest.fixture(autouse=True)
def _fresh_logging():
    # An earlier CLI test may have pointed logging at a captured stream pytest has since closed.
    structlog.reset_defaults()


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
    assert attest[attest.index("--type") + 1] == "cyclonedx" and \
        attest[attest.index("--predicate") + 1] == "/tmp/p.json"
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


def test_attesting_by_tag_is_refused(tmp_path):
    with pytest.raises(UsageError, match="by tag"):
        signer(tmp_path).attest_argv("127.0.0.1:5000/myorg/base:python-v1", Path("/tmp/p.json"), "cyclonedx")


def test_keyless_without_the_transparency_log_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="tlog_upload"):
        signer(tmp_path, keyless=True, tlog_upload=False).sign_argv(f"ghcr.io/myorg/base@{DIGEST}")


def test_keyless_verify_uses_the_certificate_identity_and_the_log(tmp_path):
    who = KeylessIdentity("https://github.com/myorg/base/.github/workflows/release.yml@refs/heads/main",
                          "https://token.actions.githubusercontent.com")
    argv = signer(tmp_path, keyless=True, tlog_upload=True).verify_attestation_argv(
        f"ghcr.io/myorg/base@{DIGEST}", "cyclonedx", identity=who)
    assert argv[argv.index("--certificate-identity") + 1] == who.identity
    assert argv[argv.index("--certificate-oidc-issuer") + 1] == who.oidc_issuer
    assert "--key" not in argv and "--insecure-ignore-tlog=true" not in argv


def test_keyless_verify_without_an_identity_is_refused(tmp_path):
    with pytest.raises(UsageError, match="certificate-identity"):
        signer(tmp_path, keyless=True, tlog_upload=True).verify_argv(f"ghcr.io/myorg/base@{DIGEST}")


def test_a_key_and_an_identity_together_are_refused(tmp_path):
    with pytest.raises(UsageError, match="either"):
        signer(tmp_path).verify_argv(f"ghcr.io/myorg/base@{DIGEST}", public_key=Path("k.pub"),
                                     identity=KeylessIdentity("me", "https://issuer"))


def test_explicit_public_key_wins_and_tlog_follows_config(tmp_path):
    s = signer(tmp_path, tlog_upload=True)
    argv = s.verify_argv(f"ghcr.io/myorg/base@{DIGEST}", public_key=Path("/keys/team.pub"))
    assert argv[argv.index("--key") + 1] == "/keys/team.pub"
    assert "--insecure-ignore-tlog=true" not in argv


def test_pkcs11_key_is_a_uri_not_a_file(tmp_path):
    assert is_key_uri("pkcs11:token=ci;slot-id=0") and is_key_uri("gcpkms://projects/p/keys/k")
    assert not is_key_uri("/var/lib/factory/keys/cosign.key")
    s = signer(tmp_path, key="pkcs11:token=ci;slot-id=0")
    argv = s.verify_argv(f"ghcr.io/myorg/base@{DIGEST}")
    assert argv[argv.index("--key") + 1] == "pkcs11:token=ci;slot-id=0"


def test_dev_key_password_is_empty_even_when_another_is_set(tmp_path, monkeypatch):
    monkeypatch.setenv("COSIGN_PASSWORD", "for-another-key")
    assert signer(tmp_path)._env() == {"COSIGN_PASSWORD": ""}
    assert signer(tmp_path, key=str(tmp_path / "team.key"))._env() == {"COSIGN_PASSWORD": "for-another-key"}


def test_a_missing_key_file_is_one_clear_error_before_cosign_runs(tmp_path):
    s = signer(tmp_path, key=str(tmp_path / "absent.key"))
    with pytest.raises(EnvironmentProblem, match=r"absent\.key not found") as e:
        s.sign(f"127.0.0.1:5000/myorg/base@{DIGEST}")  # the unit-test guard would refuse a process
    assert "factory keygen" in str(e.value)


def test_a_missing_public_key_file_is_one_clear_error(tmp_path):
    s = signer(tmp_path)
    with pytest.raises(EnvironmentProblem, match=r"public key .*absent\.pub not found"):
        s.verify(f"127.0.0.1:5000/myorg/base@{DIGEST}", public_key=tmp_path / "absent.pub")


def test_a_public_key_without_its_private_key_is_not_replaced(tmp_path):
    s = signer(tmp_path)
    settings = dataclasses.replace(s.settings, state_dir=tmp_path / "state")
    settings.dev_key.parent.mkdir(parents=True)
    pub = settings.dev_key.with_suffix(".pub")
    pub.write_text("old public key")
    with pytest.raises(EnvironmentProblem, match="without its private key"):
        ensure_dev_key(settings, Runner())
    assert pub.read_text() == "old public key"


class ScriptedRunner(Runner):
    """Answers each cosign run with the next (exit code, stderr); records the argv."""

    def __init__(self, *answers: tuple[int, str]) -> None:
        super().__init__()
        object.__setattr__(self, "answers", list(answers))
        object.__setattr__(self, "calls", [])

    def run(self, argv, **kwargs):
        import subprocess

        self.calls.append(list(argv))
        code, stderr = self.answers.pop(0)
        return subprocess.CompletedProcess(argv, code, "", stderr)


def retrying_signer(tmp_path, runner: Runner) -> Signer:
    key = tmp_path / "org.key"
    key.write_text("key")
    (tmp_path / "factory.yaml").write_text(f"signing: {{key: {key}}}\n"
                                           "registry_client: {retries: 2, backoff_seconds: 0}\n")
    return Signer(config.load(tmp_path / "factory.yaml", environ={}), runner)


def test_a_transient_registry_error_in_cosign_is_tried_again(tmp_path):
    runner = ScriptedRunner((1, "GET http://r/v2/: unexpected status code 503 Service Unavailable"),
                            (1, "HEAD http://r/v2/x/manifests/sha256-a.sig: TOOMANYREQUESTS"), (0, ""))
    retrying_signer(tmp_path, runner).sign(f"ghcr.io/myorg/base@{DIGEST}")
    assert len(runner.calls) == 3


def test_cosign_retries_are_bounded_and_say_the_registry_kept_failing(tmp_path):
    from factory.core.errors import CommandError

    runner = ScriptedRunner(*[(1, "dial tcp 10.0.0.1:443: connect: connection refused")] * 3)
    with pytest.raises(CommandError) as failed:
        retrying_signer(tmp_path, runner).sign(f"ghcr.io/myorg/base@{DIGEST}")
    assert len(runner.calls) == 3 and "connection refused" in str(failed.value)
    assert "the registry kept failing (tried 3 times)" in failed.value.hint


@pytest.mark.parametrize("answer", [(1, "Error: decrypt: encrypted: decryption failed"), (-11, "SIGSEGV 503")],
                         ids=["wrong-password", "crash"])
def test_a_key_problem_or_a_crash_is_not_tried_again(tmp_path, answer):
    from factory.core.errors import CommandError

    runner = ScriptedRunner(answer)
    with pytest.raises(CommandError):
        retrying_signer(tmp_path, runner).sign(f"ghcr.io/myorg/base@{DIGEST}")
    assert len(runner.calls) == 1


def test_keyless_verify_takes_the_identity_from_the_settings(tmp_path):
    regexp = r"^https://github\.com/myorg/base/\.github/workflows/(release|nightly)\.yml@refs/heads/main$"
    s = signer(tmp_path, keyless=True, tlog_upload=True, certificate_identity_regexp=regexp,
               certificate_oidc_issuer="https://token.actions.githubusercontent.com")
    argv = s.verify_attestation_argv(f"ghcr.io/myorg/base@{DIGEST}", "cyclonedx")
    assert argv[argv.index("--certificate-identity-regexp") + 1] == regexp
    assert argv[argv.index("--certificate-oidc-issuer") + 1] == "https://token.actions.githubusercontent.com"
    assert "--key" not in argv and "--insecure-ignore-tlog=true" not in argv


def test_keyless_identity_settings_come_from_factory_yaml_and_the_environment(tmp_path):
    cfg = tmp_path / "factory.yaml"
    cfg.write_text("signing: {keyless: true, tlog_upload: true, certificate_oidc_issuer: 'https://issuer.example'}\n")
    s = config.load(cfg, environ={"FACTORY_CERTIFICATE_IDENTITY_REGEXP": "^https://ci.example/.+$"})
    assert (s.signing.certificate_identity_regexp, s.signing.certificate_oidc_issuer) == (
        "^https://ci.example/.+$", "https://issuer.example")
    cfg.write_text("signing: {certificate_oidc_issuer: 'not a url'}\n")
    with pytest.raises(ConfigError, match="certificate_oidc_issuer"):
        config.load(cfg, environ={})
