"""The one image reference parser: Docker Hub's aliases and library/, IPv6 hosts, the grammar's limits."""

from __future__ import annotations

import pytest

from factory.core.errors import RegistryError
from factory.core.model import Upstream
from factory.core.reference import Ref, normalise_registry

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, registry, repository, tag, digest", [
    ("debian", "docker.io", "library/debian", None, None),
    ("debian:12-slim", "docker.io", "library/debian", "12-slim", None),
    ("docker.io/debian:12", "docker.io", "library/debian", "12", None),
    ("index.docker.io/library/debian", "docker.io", "library/debian", None, None),
    ("registry-1.docker.io/bitnami/redis:7", "docker.io", "bitnami/redis", "7", None),
    ("myorg/base:debian-v1.2.3", "docker.io", "myorg/base", "debian-v1.2.3", None),
    ("127.0.0.1:5000/myorg/base:tag", "127.0.0.1:5000", "myorg/base", "tag", None),
    ("127.0.0.1:5000/myorg/base", "127.0.0.1:5000", "myorg/base", None, None),
    ("localhost/base:1", "localhost", "base", "1", None),
    ("localhost:5000/a/b/c", "localhost:5000", "a/b/c", None, None),
    ("ghcr.io/org/img@" + D, "ghcr.io", "org/img", None, D),
    ("ghcr.io/org/img:1.0@" + D, "ghcr.io", "org/img", "1.0", D),
    ("127.0.0.1:5000/x@" + D, "127.0.0.1:5000", "x", None, D),
    ("gcr.io/distroless/static-debian12:nonroot", "gcr.io", "distroless/static-debian12", "nonroot", None),
    ("[::1]:5000/img:v1", "[::1]:5000", "img", "v1", None),
    ("reg.example.com/a__b/c-d.e:_x", "reg.example.com", "a__b/c-d.e", "_x", None),
    ("registry.hub.docker.com/library/debian:12", "docker.io", "library/debian", "12", None),
    ("index.docker.io/debian", "docker.io", "library/debian", None, None),
    ("Index.Docker.IO/bitnami/redis", "docker.io", "bitnami/redis", None, None),
    ("library/debian", "docker.io", "library/debian", None, None),
    ("[2001:db8::1]/org/img@" + D, "[2001:db8::1]", "org/img", None, D),
    ("[fe80::1]:443/img", "[fe80::1]:443", "img", None, None),
    ("localhost:5000/img:1", "localhost:5000", "img", "1", None),
    ("my-registry.local:8080/team/app:v2", "my-registry.local:8080", "team/app", "v2", None),
])
def test_ref_parse(text, registry, repository, tag, digest):
    ref = Ref.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


@pytest.mark.parametrize("text, why", [
    ("", "repository"),
    ("Debian", "lowercase"),
    ("127.0.0.1:5000/My/Base", "lowercase"),
    ("img:", "repository"),                     # empty tag: the name 'img:' is not a repository
    ("img:-bad", "tag"),
    ("img:" + "t" * 129, "tag"),
    ("img@sha256:abc", "digest"),
    ("img@md5:" + "a" * 32, "digest"),
    ("127.0.0.1:5000/", "repository"),
    ("a//b", "repository"),
    ("reg.example.com:/img", "host"),
    ("img:tag@" + D.upper(), "digest"),
])
def test_ref_parse_rejects(text, why):
    with pytest.raises(RegistryError) as err:
        Ref.parse(text)
    assert why in str(err.value)
    assert "expected registry/repository" in str(err.value)


@pytest.mark.parametrize("text", [
    "docker.io/library/debian:12",
    "127.0.0.1:5000/myorg/base:debian-v1.2.3",
    "ghcr.io/org/img:1.0@" + D,
    "ghcr.io/org/img@" + D,
])
def test_ref_str_round_trips(text):
    assert str(Ref.parse(text)) == text
    assert Ref.parse(str(Ref.parse(text))) == Ref.parse(text)


def test_ref_str_is_normalised():
    assert str(Ref.parse("debian:12")) == "docker.io/library/debian:12"


def test_ref_reference_prefers_digest():
    assert Ref.parse("img:1@" + D).reference == D
    assert Ref.parse("img:1").reference == "1"
    assert Ref.parse("img").reference == "latest"



@pytest.mark.parametrize("host, normal", [
    ("docker.io", "docker.io"),
    ("index.docker.io", "docker.io"),
    ("registry-1.docker.io", "docker.io"),
    ("registry.hub.docker.com", "docker.io"),
    ("GHCR.io", "ghcr.io"),
    ("127.0.0.1:5000", "127.0.0.1:5000"),
    ("[::1]:5000", "[::1]:5000"),
])
def test_normalise_registry(host, normal):
    assert normalise_registry(host) == normal


@pytest.mark.parametrize("image, registry, repository", [
    ("debian", "docker.io", "library/debian"),
    ("docker.io/library/debian", "docker.io", "library/debian"),
    ("index.docker.io/debian", "docker.io", "library/debian"),
    ("registry-1.docker.io/bitnami/redis", "docker.io", "bitnami/redis"),
    ("gcr.io/distroless/static-debian12", "gcr.io", "distroless/static-debian12"),
    ("localhost/base", "localhost", "base"),
    ("[::1]:5000/base", "[::1]:5000", "base"),
])
def test_the_model_parses_its_upstream_with_the_same_parser(image, registry, repository):
    up = Upstream(image, "1", D)
    assert (up.registry, up.repository) == (registry, repository) == (Ref.parse(image).registry,
                                                                       Ref.parse(image).repository)
