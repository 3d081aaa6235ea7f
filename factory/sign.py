"""Signing and verification with cosign: the one place that runs it.

Everything is signed by digest, never by tag (a tag can move between resolving and signing).
Key material: a key file or KMS URI (``signing.key`` / COSIGN_KEY), the generated dev key pair,
or keyless OIDC signing in real CI. COSIGN_PASSWORD travels in the environment, never in argv
or logs.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path

from factory import log
from factory.config import Settings
from factory.errors import FactoryError, UsageError
from factory.registry import Ref
from factory.tools import Runner


class VerificationFailed(FactoryError):
    """A signature or attestation did not verify."""


def _require_digest(ref: str) -> Ref:
    parsed = Ref.parse(ref)
    if not parsed.digest:
        raise UsageError(f"refusing to sign or verify {ref!r} by tag: resolve it to a digest first "
                         "(a tag can move between resolving and signing)")
    return parsed


class Signer:
    def __init__(self, settings: Settings, runner: Runner) -> None:
        self.settings = settings
        self.runner = runner
        self.log = log.get("sign")

    # --- argv (pure, unit-tested) ----------------------------------------------------------------

    def _registry_flags(self, ref: Ref) -> list[str]:
        if self.settings.registry_is_insecure(ref.registry):
            return ["--allow-http-registry", "--allow-insecure-registry"]
        return []

    def _signing_flags(self) -> list[str]:
        flags = [f"--tlog-upload={'true' if self.settings.signing.tlog_upload else 'false'}", "--yes"]
        if not self.settings.signing.keyless:
            flags += ["--key", self.settings.signing_key]
        return flags

    def _verify_flags(self, public_key: Path | str | None) -> list[str]:
        if self.settings.signing.keyless and public_key is None:
            raise UsageError("keyless verification needs --certificate-identity and --certificate-oidc-issuer: "
                             "use the cosign CLI as docs/verify.md shows, or pass --key")
        key = public_key or self.public_key
        flags = ["--key", str(key)]
        if not self.settings.signing.tlog_upload:
            flags.append("--insecure-ignore-tlog=true")
        return flags

    @property
    def public_key(self) -> str:
        """What verifies our signatures: the key file's .pub, or the KMS URI itself (cosign derives it)."""
        key = self.settings.signing_key
        return key if "://" in key else str(Path(key).with_suffix(".pub"))

    def sign_argv(self, ref: str, *, recursive: bool = True) -> list[str]:
        parsed = _require_digest(ref)
        return ["cosign", "sign", *self._signing_flags(), *(["--recursive"] if recursive else []),
                *self._registry_flags(parsed), str(parsed)]

    def attest_argv(self, ref: str, predicate: Path, predicate_type: str) -> list[str]:
        parsed = _require_digest(ref)
        return ["cosign", "attest", *self._signing_flags(), "--type", predicate_type, "--predicate", str(predicate),
                *self._registry_flags(parsed), str(parsed)]

    def verify_argv(self, ref: str, *, public_key: Path | None = None) -> list[str]:
        parsed = _require_digest(ref)
        return ["cosign", "verify", *self._verify_flags(public_key), "--output", "json",
                *self._registry_flags(parsed), str(parsed)]

    def verify_attestation_argv(self, ref: str, predicate_type: str, *, public_key: Path | None = None) -> list[str]:
        parsed = _require_digest(ref)
        return ["cosign", "verify-attestation", *self._verify_flags(public_key), "--type", predicate_type,
                "--output", "json", *self._registry_flags(parsed), str(parsed)]

    # --- running -------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        # The dev key has an empty password; a real key's password comes from the environment.
        return {"COSIGN_PASSWORD": os.environ.get("COSIGN_PASSWORD", "")}

    def sign(self, ref: str, *, recursive: bool = True) -> None:
        self.log.info("sign", ref=ref, recursive=recursive)
        self.runner.run(self.sign_argv(ref, recursive=recursive), step="sign", env=self._env(), timeout=300)

    def attest(self, ref: str, predicate: dict | Path, predicate_type: str) -> None:
        self.log.info("attest", ref=ref, type=predicate_type)
        with tempfile.TemporaryDirectory() as tmp:
            path = predicate if isinstance(predicate, Path) else Path(tmp) / "predicate.json"
            if not isinstance(predicate, Path):
                path.write_text(json.dumps(predicate, sort_keys=True))
            self.runner.run(self.attest_argv(ref, path, predicate_type), step="attest", env=self._env(),
                            timeout=300)

    def verify(self, ref: str, *, public_key: Path | None = None) -> list[dict]:
        proc = self.runner.run(self.verify_argv(ref, public_key=public_key), step="verify", check=False,
                               timeout=120)
        if proc.returncode != 0:
            raise VerificationFailed(f"signature of {ref} does not verify: {_last_line(proc.stderr)}")
        return _json_lines(proc.stdout)

    def verify_attestation(self, ref: str, predicate_type: str, *, public_key: Path | None = None) -> list[dict]:
        """The verified in-toto statements (payloads decoded) of that predicate type."""
        proc = self.runner.run(self.verify_attestation_argv(ref, predicate_type, public_key=public_key),
                               step="verify-attestation", check=False, timeout=120)
        if proc.returncode != 0:
            raise VerificationFailed(f"no verified {predicate_type} attestation on {ref}: {_last_line(proc.stderr)}")
        return [json.loads(base64.b64decode(env["payload"])) for env in _json_lines(proc.stdout)]


def ensure_dev_key(settings: Settings, runner: Runner) -> tuple[Path, Path]:
    """The dev key pair under <state>/keys (empty password, 0600), made once; never overwritten."""
    key = settings.dev_key
    pub = key.with_suffix(".pub")
    if key.exists() and pub.exists():
        return key, pub
    key.parent.mkdir(parents=True, exist_ok=True)
    key.parent.chmod(0o700)
    with tempfile.TemporaryDirectory(dir=key.parent) as tmp:
        runner.run(["cosign", "generate-key-pair"], step="keygen", cwd=Path(tmp), env={"COSIGN_PASSWORD": ""},
                   timeout=60)
        made_key, made_pub = Path(tmp) / "cosign.key", Path(tmp) / "cosign.pub"
        made_key.chmod(0o600)
        made_pub.chmod(0o644)
        os.replace(made_key, key)
        os.replace(made_pub, pub)
    log.get("sign").info("generated dev signing key", key=str(key), public_key=str(pub))
    return key, pub


def _json_lines(text: str) -> list[dict]:
    """cosign prints a JSON array (verify) or one JSON object per line (verify-attestation)."""
    text = text.strip()
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"

