"""Signing and verification with cosign: the one place that runs it.

Everything is signed by digest, never by tag (a tag can move between resolving and signing).
Key material: a key file or KMS URI (``signing.key`` / COSIGN_KEY), the generated dev key pair,
or keyless OIDC signing in real CI. COSIGN_PASSWORD travels in the environment, never in argv
or logs; cosign's stdin is never the terminal, so a missing password fails instead of prompting.

The argv of every cosign call is built by a pure method (``sign_argv`` ...) so that it is
unit-tested without running anything; the methods that run it add only the environment.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from factory.adapters.tools import Runner
from factory.core import log
from factory.core.errors import (
    CommandError,
    ConfigError,
    EnvironmentProblem,
    UsageError,
    VerificationFailed,
)
from factory.core.labels import CYCLONEDX
from factory.core.reference import Ref
from factory.spec.config import Settings

# cosign (go-containerregistry) does not retry the registry's /v2/ ping: one 503 or 429 from a busy
# registry fails a whole signature. Its commands are safe to repeat (signing a digest again adds a
# signature; verifying only reads), so a failure that reads as a registry's transient answer is tried
# again. Only whether to try again depends on these words; the last failure is reported as it was.
_TRANSIENT = re.compile(r"\b(?:429|50[0234])\b|TOOMANYREQUESTS|UNAVAILABLE|Service Unavailable|Too Many Requests"
                        r"|connection refused|connection reset|i/o timeout|unexpected EOF", re.IGNORECASE)
MAX_BACKOFF = 30.0  # seconds, as the registry client

KEY_HINT = ("check the signing key (signing.key in factory.yaml or COSIGN_KEY; `factory keygen` makes the "
            "dev key) and COSIGN_PASSWORD")


@dataclass(frozen=True)
class KeylessIdentity:
    """Who must have signed, for keyless (Fulcio certificate) verification: the CI workflow identity
    (e.g. https://github.com/myorg/base-images/.github/workflows/release.yml@refs/heads/main) and the
    OIDC issuer that vouched for it (https://token.actions.githubusercontent.com)."""

    identity: str
    oidc_issuer: str


class Signing(Protocol):
    """What the publish and consume stages need of a signer (``Signer`` runs cosign; tests fake it).
    Every reference is by digest. The verify methods return what verified, and raise
    VerificationFailed when nothing did."""

    def sign(self, ref: str, *, recursive: bool = True) -> None: ...

    def attest(self, ref: str, predicate: dict[str, Any] | Path, predicate_type: str, *,
               replace: bool = False) -> None: ...

    def verify(self, ref: str, *, public_key: Path | str | None = None,
               identity: KeylessIdentity | None = None) -> list[dict[str, Any]]: ...

    def verify_attestation(self, ref: str, predicate_type: str, *, public_key: Path | str | None = None,
                           identity: KeylessIdentity | None = None) -> list[dict[str, Any]]: ...


def is_key_uri(key: str) -> bool:
    """A KMS or hardware key (awskms://, gcpkms://, hashivault://, k8s://, pkcs11:...), not a file."""
    return "://" in key or key.startswith("pkcs11:")


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
        if self.settings.signing.keyless and not self.settings.signing.tlog_upload:
            # A Fulcio certificate lives ten minutes; only the log entry proves the signature was made
            # while it was valid, so a keyless signature without it can never be verified later.
            raise ConfigError("signing.keyless needs signing.tlog_upload: true (keyless signatures are "
                              "verified through the transparency log)")
        flags = [f"--tlog-upload={'true' if self.settings.signing.tlog_upload else 'false'}", "--yes"]
        if not self.settings.signing.keyless:
            flags += ["--key", self.settings.signing_key]
        return flags

    def _verify_flags(self, public_key: Path | str | None, identity: KeylessIdentity | None = None) -> list[str]:
        if identity is not None:
            if public_key is not None:
                raise UsageError("pass either a public key or a keyless identity, not both")
            # Keyless signatures are always checked against the transparency log.
            return ["--certificate-identity", identity.identity, "--certificate-oidc-issuer", identity.oidc_issuer]
        signing = self.settings.signing
        if signing.keyless and public_key is None:
            if signing.certificate_identity_regexp and signing.certificate_oidc_issuer:
                return ["--certificate-identity-regexp", signing.certificate_identity_regexp,
                        "--certificate-oidc-issuer", signing.certificate_oidc_issuer]
            raise UsageError("keyless verification needs --certificate-identity and --certificate-oidc-issuer "
                             "(see docs/verify.md), or signing.certificate_identity_regexp and "
                             "signing.certificate_oidc_issuer in factory.yaml, or pass --key")
        key = public_key or self.public_key
        flags = ["--key", str(key)]
        if not self.settings.signing.tlog_upload:
            flags.append("--insecure-ignore-tlog=true")
        return flags

    @property
    def public_key(self) -> str:
        """What verifies our signatures: the key file's .pub, or the KMS URI itself (cosign derives it)."""
        key = self.settings.signing_key
        return key if is_key_uri(key) else str(Path(key).with_suffix(".pub"))

    def sign_argv(self, ref: str, *, recursive: bool = True) -> list[str]:
        parsed = _require_digest(ref)
        return ["cosign", "sign", *self._signing_flags(), *(["--recursive"] if recursive else []),
                *self._registry_flags(parsed), str(parsed)]

    def attest_argv(self, ref: str, predicate: Path, predicate_type: str, *, replace: bool = False) -> list[str]:
        parsed = _require_digest(ref)
        return ["cosign", "attest", *self._signing_flags(), "--type", predicate_type, "--predicate", str(predicate),
                *(["--replace"] if replace else []), *self._registry_flags(parsed), str(parsed)]

    def verify_argv(self, ref: str, *, public_key: Path | str | None = None,
                    identity: KeylessIdentity | None = None) -> list[str]:
        parsed = _require_digest(ref)
        return ["cosign", "verify", *self._verify_flags(public_key, identity), "--output", "json",
                *self._registry_flags(parsed), str(parsed)]

    def verify_attestation_argv(self, ref: str, predicate_type: str, *, public_key: Path | str | None = None,
                                identity: KeylessIdentity | None = None) -> list[str]:
        parsed = _require_digest(ref)
        return ["cosign", "verify-attestation", *self._verify_flags(public_key, identity), "--type", predicate_type,
                "--output", "json", *self._registry_flags(parsed), str(parsed)]

    # --- running -------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        # The dev key has an empty password; a real key's password comes from the environment.
        if self.settings.signing_key == str(self.settings.dev_key):
            return {"COSIGN_PASSWORD": ""}
        return {"COSIGN_PASSWORD": os.environ.get("COSIGN_PASSWORD", "")}

    def _check_signing_key(self) -> None:
        """A missing key file is one clear error before cosign runs, not cosign's "open ...: no such file"."""
        key = self.settings.signing_key
        if not self.settings.signing.keyless and not is_key_uri(key) and not Path(key).is_file():
            raise EnvironmentProblem(f"signing key {key} not found", hint=KEY_HINT)

    def _run_signing(self, argv: list[str], step: str) -> None:
        self._check_signing_key()
        proc = self._run_cosign(argv, step=step, env=self._env(), timeout=300)
        if proc.returncode != 0:
            error = CommandError(argv, proc.returncode, proc.stderr or str(proc.stdout)[-2000:], step=step)
            if _TRANSIENT.search(proc.stderr or ""):
                error.hint = (f"the registry kept failing (tried {1 + self.settings.registry_client.retries} "
                              "times): check its health, then run again; nothing was tagged")
            elif proc.returncode > 0:  # cosign said no (a key or password problem, most often), not a crash
                error.hint = KEY_HINT
            raise error

    def _run_cosign(self, argv: list[str], *, step: str, timeout: float,
                    env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run cosign; when it fails on a registry's transient answer, run it again with the registry
        client's bounded backoff (see _TRANSIENT). Returns the last attempt, failed or not."""
        retry = self.settings.registry_client
        delay = retry.backoff_seconds
        for attempt in range(1, retry.retries + 2):
            proc = self.runner.run(argv, step=step, env=env, input="", timeout=timeout, check=False)
            if proc.returncode <= 0 or attempt > retry.retries or not _TRANSIENT.search(proc.stderr or ""):
                return proc
            self.log.warning("cosign met a transient registry error; trying again", step=step, attempt=attempt,
                             wait_seconds=delay, error=_last_line(proc.stderr))
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)
        return proc

    def sign(self, ref: str, *, recursive: bool = True) -> None:
        """Sign ``ref`` (by digest); ``recursive`` also signs each platform manifest of an index."""
        self.log.info("sign", ref=ref, recursive=recursive)
        self._run_signing(self.sign_argv(ref, recursive=recursive), "sign")

    def attest(self, ref: str, predicate: dict[str, Any] | Path, predicate_type: str, *,
               replace: bool = False) -> None:
        """Attach ``predicate`` (a JSON file or a dict) as a signed in-toto attestation of that type.
        ``replace``: instead of the attestations of that type already there (cosign --replace), for a
        record that only its newest copy matters (each rescan), so that nightly runs do not pile them up."""
        self.log.info("attest", ref=ref, type=predicate_type)
        with tempfile.TemporaryDirectory() as tmp:
            path = predicate if isinstance(predicate, Path) else Path(tmp) / "predicate.json"
            if not isinstance(predicate, Path):
                path.write_text(json.dumps(predicate, sort_keys=True))
            self._run_signing(self.attest_argv(ref, path, predicate_type, replace=replace), "attest")

    def _check_public_key(self, public_key: Path | str | None, identity: KeylessIdentity | None) -> None:
        key = str(public_key or (None if identity or self.settings.signing.keyless else self.public_key) or "")
        if key and not is_key_uri(key) and not Path(key).is_file():
            raise EnvironmentProblem(f"public key {key} not found",
                                     hint="pass the signer's public key with --key (the dev key's is "
                                          f"{self.settings.dev_key.with_suffix('.pub')})")

    def verify(self, ref: str, *, public_key: Path | str | None = None,
               identity: KeylessIdentity | None = None) -> list[dict[str, Any]]:
        """The verified signature payloads of ``ref``; raises VerificationFailed when none verifies."""
        self._check_public_key(public_key, identity)
        proc = self._run_cosign(self.verify_argv(ref, public_key=public_key, identity=identity), step="verify",
                                timeout=120)
        if proc.returncode != 0:
            raise VerificationFailed(f"signature of {ref} does not verify: {_last_line(proc.stderr)}")
        return _json_lines(proc.stdout)

    def verify_attestation(self, ref: str, predicate_type: str, *, public_key: Path | str | None = None,
                           identity: KeylessIdentity | None = None) -> list[dict[str, Any]]:
        """The verified in-toto statements (payloads decoded) of that predicate type; raises
        VerificationFailed when there is none."""
        self._check_public_key(public_key, identity)
        argv = self.verify_attestation_argv(ref, predicate_type, public_key=public_key, identity=identity)
        proc = self._run_cosign(argv, step="verify-attestation", timeout=120)
        if proc.returncode != 0:
            raise VerificationFailed(f"no verified {predicate_type} attestation on {ref}: {_last_line(proc.stderr)}")
        statements = [json.loads(base64.b64decode(env["payload"])) for env in _json_lines(proc.stdout)]
        if not statements:  # cosign exited 0 yet printed nothing: never read that as "verified"
            raise VerificationFailed(f"no verified {predicate_type} attestation on {ref}: cosign printed none")
        return statements


def ensure_dev_key(settings: Settings, runner: Runner) -> tuple[Path, Path]:
    """The dev key pair under <state>/keys (empty password; key 0600, .pub 0644), made once.

    An existing private key is never replaced: images signed with it must keep verifying. A lost
    .pub is derived again from the key; a .pub without its key is an error, not a reason to make a
    new pair. Files are made in a temporary folder and hard-linked into place, and a link never
    replaces a name that exists, so two runs starting at once end with one key pair.
    """
    key = settings.dev_key
    pub = key.with_suffix(".pub")
    if not key.exists() and pub.exists():
        raise EnvironmentProblem(f"{pub} exists without its private key {key}",
                                 hint="restore the private key, or remove the .pub to generate a new pair "
                                      "(images signed with the old key then no longer verify with the new one)")
    key.parent.mkdir(parents=True, exist_ok=True)
    key.parent.chmod(0o700)
    with tempfile.TemporaryDirectory(dir=key.parent) as tmp:
        made_key, made_pub = Path(tmp) / "cosign.key", Path(tmp) / "cosign.pub"
        if not key.exists():
            runner.run(["cosign", "generate-key-pair"], step="keygen", cwd=Path(tmp), env={"COSIGN_PASSWORD": ""},
                       input="", timeout=60)
            made_key.chmod(0o600)
            if _link_if_absent(made_key, key):
                log.get("sign").info("generated dev signing key", key=str(key), public_key=str(pub))
            else:
                made_pub.unlink()  # another run made the key first: its .pub is the one that matches
        if not pub.exists():
            if not made_pub.exists():
                runner.run(["cosign", "public-key", "--key", str(key), "--outfile", str(made_pub)], step="keygen",
                           env={"COSIGN_PASSWORD": ""}, input="", timeout=60)
            made_pub.chmod(0o644)
            _link_if_absent(made_pub, pub)
    if key.stat().st_mode & 0o077:
        log.get("sign").warning("dev signing key was readable by others: made it 0600", key=str(key))
        key.chmod(0o600)
    return key, pub


def _link_if_absent(src: Path, dest: Path) -> bool:
    try:
        os.link(src, dest)
    except FileExistsError:
        return False
    return True


def _json_lines(text: str) -> list[dict[str, Any]]:
    """cosign prints a JSON array (verify) or one JSON object per line (verify-attestation)."""
    text = text.strip()
    if text.startswith("["):
        payloads: list[dict[str, Any]] = json.loads(text)
        return payloads
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def verified_sbom(signer: Signing, ref: str, public_key: Path | str | None = None) -> Mapping[str, Any]:
    """The CycloneDX document of the newest verified SBOM attestation on ``ref`` (by digest).
    Raises ``VerificationFailed`` when none verifies."""
    statements = signer.verify_attestation(ref, CYCLONEDX, public_key=public_key)
    document: Mapping[str, Any] = statements[-1].get("predicate") or {}
    return document
