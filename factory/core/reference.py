"""The one image reference type: ``registry/repository[:tag][@digest]``, parsed in one place.

Docker Hub answers under several names (docker.io, index.docker.io, registry-1.docker.io,
registry.hub.docker.com) and adds ``library/`` to one-component names; every one of them is
normalised here to ``docker.io/library/<name>``, so that the model, policy, registry client, drift
and renderer compare references equal when they name the same image. Registry hosts may be names,
IPv4 or bracketed IPv6 addresses, with a port.

This module imports nothing of the factory but the error tree: the model (``core.model``) parses
its upstream image with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from factory.core.errors import RegistryError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
# Docker Hub answers under several host names; references and the allow-list name it docker.io.
DOCKER_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", DOCKER_HUB_API, "registry.hub.docker.com"})

# The reference grammar (distribution/reference), trimmed to what a client must check.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
_HOST_RE = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?"
                      r"|\[[0-9a-fA-F:]+\](?::[0-9]+)?")


def normalise_registry(host: str) -> str:
    """A registry host as compared: lower case, Docker Hub's aliases as docker.io."""
    host = host.lower()
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def _looks_like_host(first: str) -> bool:
    """The first path component names a host only if it looks like one (dot, port, localhost, IPv6)."""
    return "." in first or ":" in first or first == "localhost" or first.startswith("[")


@dataclass(frozen=True)
class Ref:
    """A parsed image reference: ``registry/repository[:tag][@digest]``, Docker Hub normalised."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        def bad(why: str) -> RegistryError:
            return RegistryError(f"{text!r} is not an image reference: {why}",
                                 hint="expected registry/repository[:tag][@sha256:<64 hex>], "
                                      "e.g. 127.0.0.1:5000/myorg/base:debian-v1.2.3")

        name, _, digest = text.strip().partition("@")
        if digest and not _DIGEST_RE.fullmatch(digest):
            raise bad(f"digest {digest!r} is not sha256:<64 hex> (or sha512:<128 hex>)")
        # A tag is the part after the last ':' that comes after the last '/' (a port comes before it).
        tag = None
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1:]
            if not _TAG_RE.fullmatch(tag):
                raise bad(f"tag {tag!r} must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'")
        first, sep, rest = name.partition("/")
        if sep and _looks_like_host(first):
            registry, repository = first, rest
            if not _HOST_RE.fullmatch(registry):
                raise bad(f"registry host {registry!r} is malformed")
        else:
            registry, repository = DOCKER_HUB, name
        if registry.lower() in DOCKER_HUB_ALIASES:
            registry = DOCKER_HUB
        if registry == DOCKER_HUB and "/" not in repository:
            repository = f"library/{repository}"
        if not _REPOSITORY_RE.fullmatch(repository):
            raise bad(f"repository {repository!r} must be lowercase path components "
                      "of [a-z0-9] separated by '.', '_', '__', '-' or '/'")
        return cls(registry, repository, tag or None, digest or None)

    @property
    def name(self) -> str:
        """registry/repository: the image without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when there is one, else the tag (default latest)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}{tag}{digest}"
