"""Secrets never reach logs, reports or rendered files: a real publish to a registry that needs a
password (docker config), signed with a password-protected cosign key, with debug logs on."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess

from tests.integration.registry_servers import own_registry, write_htpasswd
from tests.integration.workspace import Workspace, manifest_on

PASSWORD = "s3cret-registry-Passw0rd"
COSIGN_PASSWORD = "cosign-Key-Passphrase-42"
TOKEN = "ghp_fakeTokenThatMustNeverBeLogged0123"


def test_no_secret_in_any_output(tmp_path, settings, seeded, seeded_debian, runner):
    reg_dir = tmp_path / "reg"
    reg_dir.mkdir()
    write_htpasswd(reg_dir / "htpasswd", {"ci": PASSWORD})
    auth_yaml = f"auth:\n  htpasswd:\n    realm: factory-test\n    path: {reg_dir / 'htpasswd'}\n"
    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run([runner.require("cosign"), "generate-key-pair"], cwd=keys, check=True, capture_output=True,
                   env={"COSIGN_PASSWORD": COSIGN_PASSWORD})
    with own_registry(reg_dir, auth_yaml) as host:
        docker_config = tmp_path / "docker"
        docker_config.mkdir()
        basic = base64.b64encode(f"ci:{PASSWORD}".encode()).decode()
        (docker_config / "config.json").write_text(json.dumps({"auths": {host: {"auth": basic}}}))
        ws = Workspace.create(tmp_path / "repo", registry=host, state_dir=settings.state_dir,
                              extra_config={"helper_image": seeded_debian.ref,
                                            "insecure_registries": [host, settings.registry]})
        ws.add_manifest(manifest_on(seeded["busybox"], "secret", variants={"debug": {}}))
        env = {"DOCKER_CONFIG": str(docker_config), "COSIGN_KEY": str(keys / "cosign.key"),
               "COSIGN_PASSWORD": COSIGN_PASSWORD, "GITHUB_TOKEN": TOKEN, "REGISTRY_PASSWORD": PASSWORD}
        render = ws.factory("-v", "render", env=env)
        ws.commit()
        report = ws.root / "report.json"
        published = ws.factory("-v", "publish", "secret", "--report", str(report), env=env)
        assert published.returncode == 0, published.stdout + published.stderr
        verified = ws.factory("-v", "verify", ws.ref("secret-v1"), "--key", str(keys / "cosign.pub"), env=env)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        # What was published for everyone to read: the attestations' payloads (provenance holds the
        # build args and the invocation), read back with the cosign CLI.
        index = json.loads(report.read_text())["images"][0]["prod"]["index_digest"]
        attested = {}
        for kind in ("slsaprovenance1", "https://base-image-factory.dev/attestations/hardening-conformance/v1"):
            out = subprocess.run([runner.require("cosign"), "verify-attestation", "--type", kind, "--key",
                                  str(keys / "cosign.pub"), "--insecure-ignore-tlog=true", "--allow-http-registry",
                                  "--allow-insecure-registry", ws.ref(index)],
                                 capture_output=True, text=True, timeout=120, env={**os.environ, **env})
            assert out.returncode == 0, out.stderr
            attested[kind] = "".join(base64.b64decode(json.loads(line)["payload"]).decode()
                                     for line in out.stdout.splitlines() if line.startswith("{"))

    outputs = {"render": render.stdout + render.stderr, "publish": published.stdout + published.stderr,
               "verify": verified.stdout + verified.stderr, "report": report.read_text(), **attested}
    outputs |= {str(p): p.read_text(errors="replace") for p in (ws.root / "images").rglob("*") if p.is_file()}
    assert "debug" in outputs["publish"]  # -v really produced debug logs
    assert '"argv"' in outputs["publish"]  # the commands run were logged (and nothing of their environment)
    forms = [basic]
    for secret in (PASSWORD, COSIGN_PASSWORD, TOKEN):
        forms += [secret, base64.b64encode(secret.encode()).decode(),
                  base64.urlsafe_b64encode(secret.encode()).decode()]
    for form in forms:
        leaked = [name for name, text in outputs.items() if form in text]
        assert not leaked, f"secret found in {leaked}"


def test_the_dev_key_is_private(settings):
    mode = stat.S_IMODE(settings.dev_key.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert stat.S_IMODE(settings.dev_key.parent.stat().st_mode) == 0o700
