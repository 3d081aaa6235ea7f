"""Pure parts of the registry client: references, auth challenges, pagination links, docker config."""

from __future__ import annotations

import base64
import json

import pytest

from factory.core.errors import RegistryAuthError
from factory.oci.registry import (
    Credentials,
    Registry,
    api_host,
    auth_from_config,
    credentials_for,
    helper_for,
    next_page_url,
    parse_challenge,
    repository_scope,
)

D = "sha256:" + "ab" * 32


def test_docker_hub_api_host():
    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("127.0.0.1:5000") == "127.0.0.1:5000"
    assert Registry("docker.io").base == "https://registry-1.docker.io"
    assert Registry("127.0.0.1:5000", insecure=True).base == "http://127.0.0.1:5000"


# --- WWW-Authenticate ---------------------------------------------------------------------------

def test_parse_bearer_challenge_with_comma_in_scope():
    c = parse_challenge('Bearer realm="https://auth.example.com/token",service="registry.example.com",'
                        'scope="repository:myorg/base:pull,push"')
    assert c.scheme == "bearer"
    assert c.realm == "https://auth.example.com/token"
    assert c.params == {"realm": "https://auth.example.com/token", "service": "registry.example.com",
                        "scope": "repository:myorg/base:pull,push"}


def test_parse_challenge_with_error_and_spaces():
    c = parse_challenge('Bearer realm="https://ghcr.io/token", service="ghcr.io", '
                        'scope="repository:o/i:pull", error="insufficient_scope"')
    assert c.params["scope"] == "repository:o/i:pull"
    assert c.params["error"] == "insufficient_scope"


def test_parse_basic_challenge():
    c = parse_challenge('Basic realm="test-realm"')
    assert (c.scheme, c.realm) == ("basic", "test-realm")


def test_parse_challenge_unquoted_and_escaped_values():
    c = parse_challenge(r'bearer realm=https://a/token,service="say \"hi\""')
    assert c.scheme == "bearer"
    assert c.realm == "https://a/token"
    assert c.params["service"] == 'say "hi"'


def test_parse_challenge_without_params():
    c = parse_challenge("Negotiate")
    assert (c.scheme, dict(c.params)) == ("negotiate", {})


def test_repository_scope():
    assert repository_scope("myorg/base", push=False) == "repository:myorg/base:pull"
    assert repository_scope("myorg/base", push=True) == "repository:myorg/base:pull,push"


# --- Link pagination ----------------------------------------------------------------------------

def test_next_page_relative_link():
    url = "http://127.0.0.1:5000/v2/myorg/base/tags/list?n=2"
    link = '</v2/myorg/base/tags/list?last=b&n=2>; rel="next"'
    assert next_page_url(url, link) == "http://127.0.0.1:5000/v2/myorg/base/tags/list?last=b&n=2"


def test_next_page_absolute_link_and_other_rels():
    link = ('<https://other.example/prev>; rel="prev", '
            '<https://reg.example/v2/x/tags/list?last=z&n=100>; rel="next"')
    assert next_page_url("https://reg.example/v2/x/tags/list", link) == \
        "https://reg.example/v2/x/tags/list?last=z&n=100"


@pytest.mark.parametrize("link", [None, "", '<https://a/prev>; rel="prev"'])
def test_no_next_page(link):
    assert next_page_url("https://reg.example/v2/x/tags/list", link) is None


# --- docker config ------------------------------------------------------------------------------

def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_auth_from_config_base64():
    config = {"auths": {"127.0.0.1:5000": {"auth": _b64("alice:s3:cr:et")}}}
    assert auth_from_config("127.0.0.1:5000", config) == Credentials("alice", "s3:cr:et")
    assert auth_from_config("127.0.0.1:5001", config) is None


def test_auth_from_config_keys_with_scheme_and_path():
    config = {"auths": {"https://reg.example.com/v1/": {"auth": _b64("bob:pw")}}}
    assert auth_from_config("reg.example.com", config) == Credentials("bob", "pw")


def test_auth_from_config_docker_hub_key():
    config = {"auths": {"https://index.docker.io/v1/": {"auth": _b64("hub:pw")}}}
    assert auth_from_config("docker.io", config) == Credentials("hub", "pw")
    assert auth_from_config("registry-1.docker.io", config) == Credentials("hub", "pw")


def test_auth_from_config_username_password_fields():
    config = {"auths": {"reg.example.com": {"username": "u", "password": "p"}}}
    assert auth_from_config("reg.example.com", config) == Credentials("u", "p")


def test_auth_from_config_empty_entry_means_none():
    # `docker login` with a credsStore leaves an empty marker entry under auths.
    assert auth_from_config("reg.example.com", {"auths": {"reg.example.com": {}}}) is None


def test_auth_from_config_bad_base64():
    with pytest.raises(RegistryAuthError, match="not base64"):
        auth_from_config("r.io", {"auths": {"r.io": {"auth": "%%%"}}})


def test_identity_tokens_are_refused_clearly():
    with pytest.raises(RegistryAuthError, match="identity token"):
        auth_from_config("r.io", {"auths": {"r.io": {"identitytoken": "abc"}}})


def test_helper_for_prefers_cred_helpers_over_store():
    config = {"credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud", "https://ecr.example": "ecr-login"}}
    assert helper_for("gcr.io", config) == "gcloud"
    assert helper_for("ecr.example", config) == "ecr-login"
    assert helper_for("127.0.0.1:5000", config) == "desktop"
    assert helper_for("127.0.0.1:5000", {"auths": {}}) is None


def test_helper_for_docker_hub():
    assert helper_for("docker.io", {"credHelpers": {"https://index.docker.io/v1/": "pass"}}) == "pass"


def test_credentials_for_reads_the_given_config_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": _b64("a:b")}}}))
    assert credentials_for("127.0.0.1:5000", tmp_path) == Credentials("a", "b")
    assert credentials_for("127.0.0.1:5999", tmp_path) is None


def test_credentials_for_honours_docker_config_env(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"r.io": {"auth": _b64("env:pw")}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert credentials_for("r.io") == Credentials("env", "pw")


def test_credentials_for_missing_config(tmp_path):
    assert credentials_for("r.io", tmp_path / "nowhere") is None


def test_credentials_for_broken_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(RegistryAuthError, match="cannot read docker config"):
        credentials_for("r.io", tmp_path)


def test_password_never_in_repr():
    assert "hunter2" not in repr(Credentials("alice", "hunter2"))
