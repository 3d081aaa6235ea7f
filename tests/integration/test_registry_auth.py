"""Auth against real `docker-registry serve` instances: htpasswd (Basic) and token (Bearer) auth,
credentials from a temporary docker config and from a real credential helper run by the runner."""

from __future__ import annotations

import base64
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from factory.adapters.tools import Runner
from factory.core.errors import RegistryAuthError
from factory.oci.layout import OCI_MANIFEST, sha256_digest
from factory.oci.registry import Credentials, Registry, credentials_for
from tests.integration.registry_servers import (
    TokenServer,
    own_registry,
    serve,
    write_htpasswd,
)

USERS = {"alice": "correct horse"}


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory):
    work = tmp_path_factory.mktemp("basic-registry")
    write_htpasswd(work / "htpasswd", USERS)
    auth = f"auth:\n  htpasswd:\n    realm: factory-test\n    path: {work / 'htpasswd'}\n"
    with own_registry(work, auth) as host:
        yield host


@pytest.fixture(scope="module")
def token_setup(tmp_path_factory):
    work = tmp_path_factory.mktemp("token-registry")
    tokens = TokenServer(work, USERS)
    with serve(tokens.handler()) as realm_host, own_registry(work, tokens.registry_auth_yaml(realm_host)) as host:
        yield host, tokens


def docker_config(tmp_path, host: str, user: str, password: str):
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return tmp_path


def push_small_image(r: Registry, repo: str) -> str:
    """Push a config blob, a layer blob and a manifest; returns the manifest digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = f"layer {uuid.uuid4()}".encode()
    for blob in (config, layer):
        r.push_blob(repo, sha256_digest(blob), blob)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_digest(layer),
                    "size": len(layer)}],
    }).encode()
    return r.put_manifest(repo, sha256_digest(manifest), manifest, OCI_MANIFEST)


# --- Basic (htpasswd) -------------------------------------------------------------------------

def test_basic_auth_with_docker_config(basic_registry, tmp_path):
    creds = credentials_for(basic_registry, docker_config(tmp_path, basic_registry, "alice", USERS["alice"]))
    assert creds == Credentials("alice", "correct horse")
    repo = f"test/{uuid.uuid4().hex[:12]}"
    with Registry(basic_registry, insecure=True, auth=creds, timeout=10) as r:
        r.ping()
        digest = push_small_image(r, repo)
        r.tag(repo, digest, "v1", expect_absent=True)
        assert r.list_tags(repo) == ["v1"]
        # The challenge is answered once (ping: 401 then 200); every later request carries the
        # credentials up front. 2 blobs (HEAD, POST, PUT each), manifest PUT, tag (HEAD, GET, PUT,
        # HEAD), tags GET.
        assert r.requests_made == {"GET": 2 + 1 + 1, "HEAD": 2 + 2, "POST": 2, "PUT": 2 + 1 + 1}


def test_basic_auth_without_credentials(basic_registry):
    with Registry(basic_registry, insecure=True, timeout=10) as r, pytest.raises(RegistryAuthError) as err:
        r.ping()
    assert err.value.exit_code == 2 and err.value.status == 401
    assert "wants credentials and none were found" in str(err.value)


def test_basic_auth_wrong_password(basic_registry, tmp_path):
    creds = credentials_for(basic_registry, docker_config(tmp_path, basic_registry, "alice", "wrong-pw"))
    with (Registry(basic_registry, insecure=True, auth=creds, timeout=10) as r,
          pytest.raises(RegistryAuthError) as err):
        r.list_tags("test/anything")
    message = str(err.value)
    assert "credentials refused" in message and "HTTP 401" in message
    assert f"docker login {basic_registry}" in message  # says what to do
    assert "wrong-pw" not in message


def test_credential_helper_through_the_runner(basic_registry, tmp_path):
    """A real docker-credential-* program, found on the runner's path, as `docker login` would use."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-factorytest"
    helper.write_text(f"""#!/bin/sh
[ "$1" = get ] || exit 2
read -r server
if [ "$server" = "{basic_registry}" ]; then
  printf '{{"ServerURL":"%s","Username":"alice","Secret":"{USERS['alice']}"}}' "$server"
else
  echo "credentials not found in native keychain"; exit 1
fi
""")
    helper.chmod(0o755)
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({"credHelpers": {basic_registry: "factorytest"},
                                                        "credsStore": "factorytest"}))
    runner = Runner(extra_path=(bin_dir,))
    creds = credentials_for(basic_registry, config_dir, runner=runner)
    assert creds == Credentials("alice", USERS["alice"])
    with Registry(basic_registry, insecure=True, auth=creds, timeout=10) as r:
        r.ping()
    # The store has nothing for another host: no credentials, not an error.
    assert credentials_for("127.0.0.1:1", config_dir, runner=runner) is None


# --- Bearer (token service) ---------------------------------------------------------------------

def test_bearer_token_per_scope_cached(token_setup):
    host, tokens = token_setup
    repo = f"test/{uuid.uuid4().hex[:12]}"
    tokens.requests.clear()
    with Registry(host, insecure=True, auth=Credentials("alice", USERS["alice"]), timeout=10) as r:
        digest = push_small_image(r, repo)
        r.tag(repo, digest, "v1", expect_absent=True)
        assert r.list_tags(repo) == ["v1"]
        assert r.head_manifest(repo, "v1").digest == digest
    # One token for the push (pull,push also serves the reads), asked with the registry's service.
    assert tokens.requests == [{"service": TokenServer.service, "scope": f"repository:{repo}:pull,push"}]


def test_bearer_tokens_are_per_instance_and_per_repository(token_setup):
    host, tokens = token_setup
    repos = [f"test/{uuid.uuid4().hex[:12]}" for _ in range(2)]
    tokens.requests.clear()
    creds = Credentials("alice", USERS["alice"])
    with Registry(host, insecure=True, auth=creds, timeout=10) as r:
        for repo in repos:
            assert r.list_tags(repo) == []
            assert r.head_manifest(repo, "latest") is None
    with Registry(host, insecure=True, auth=creds, timeout=10) as r:  # no module-level cache
        assert r.list_tags(repos[0]) == []
    assert [q["scope"] for q in tokens.requests] == [f"repository:{repo}:pull" for repo in repos + repos[:1]]


def test_bearer_concurrent_uploads_fetch_one_token(token_setup):
    host, tokens = token_setup
    repo = f"test/{uuid.uuid4().hex[:12]}"
    blobs = [os.urandom(64) for _ in range(8)]
    tokens.requests.clear()
    with Registry(host, insecure=True, auth=Credentials("alice", USERS["alice"]), timeout=10,
                  max_connections=8) as r:
        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(lambda b: r.push_blob(repo, sha256_digest(b), b), blobs))
        assert all(r.blob_exists(repo, sha256_digest(b)) for b in blobs)
    assert len(tokens.requests) == 1


def test_bearer_wrong_password(token_setup):
    host, _ = token_setup
    with (Registry(host, insecure=True, auth=Credentials("alice", "nope"), timeout=10) as r,
          pytest.raises(RegistryAuthError) as err):
        r.list_tags("test/x")
    assert err.value.exit_code == 2 and err.value.status == 401
    assert "token service refused the credentials" in str(err.value)
    assert "nope" not in str(err.value)


def test_bearer_anonymous_is_refused_clearly(token_setup):
    host, _ = token_setup
    with (Registry(host, insecure=True, timeout=10) as r,
          pytest.raises(RegistryAuthError, match="token service refused")):
        r.ping()
