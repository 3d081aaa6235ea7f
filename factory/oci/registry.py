"""The registry client: the OCI distribution API over ``requests``.

One ``Registry`` per registry host: one ``requests.Session`` (a connection pool of
``max_connections``), bounded retries for 429/5xx and connection failures (exponential backoff,
Retry-After honoured up to a cap), and Basic or Bearer auth answered from the registry's
WWW-Authenticate challenge, with bearer tokens cached per scope in the instance.
docs/registry.md says why this is not oras-py.

The registry may not be ours (an upstream's): each public method is one operation under one time
budget, every body is read bounded, every JSON document is checked for depth and shape, every body
is checked against its digest, and whatever comes back raises the factory's own errors only
(``factory.oci.wire``, ``factory.oci.documents``; docs/reliability.md, "Hostile registries").

Images are pushed by digest only (``push_layout``); tags are written separately by ``tag``, which
can refuse to move an existing tag (the immutable-tag guard).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import io
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
from typing_extensions import Buffer

from factory.adapters.tools import Runner
from factory.core import log
from factory.core.errors import (
    CommandError,
    FactoryError,
    RegistryAuthError,
    RegistryError,
    RegistryUnreachable,
    TagExists,
)
from factory.core.reference import DOCKER_HUB, DOCKER_HUB_API
from factory.oci import documents, wire
from factory.oci.layout import (
    ACCEPT_MANIFESTS,
    INDEX_TYPES,
    Descriptor,
    OciLayout,
    platform_string,
    sha256_digest,
)
from factory.oci.rootfs import LayerOpener
from factory.oci.wire import (
    TRANSIENT_ERRORS,
    TRANSPORT_ERRORS,
    Budget,
    Limits,
    WatchedAdapter,
    clean,
    content_length,
    current_budget,
    read_body,
    reason,
    retry_after,
    shown_url,
)

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"  # the key `docker login` writes for Docker Hub
RETRY_STATUSES = (429, 500, 502, 503, 504)

# --- pure protocol helpers (unit-tested) -----------------------------------------------------

@dataclass(frozen=True)
class Challenge:
    """A parsed WWW-Authenticate header: ``Bearer realm="...",service="...",scope="..."``."""

    scheme: str  # lower case: "bearer" or "basic"
    params: Mapping[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


_AUTH_PARAM_RE = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): re.sub(r"\\(.)", r"\1", m.group(2)) if m.group(2) is not None
              else m.group(3) for m in _AUTH_PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), params)


def next_page_url(current_url: str, link_header: str | None) -> str | None:
    """The rel="next" target of a Link header, resolved against the current URL, or None."""
    if not link_header:
        return None
    for link in requests.utils.parse_header_links(link_header):
        if link.get("rel") == "next" and link.get("url"):
            return urljoin(current_url, link["url"])
    return None


def repository_scope(repo: str, *, push: bool) -> str:
    return f"repository:{repo}:{'pull,push' if push else 'pull'}"


def api_host(registry: str) -> str:
    """The host that serves the API: Docker Hub's name differs from its API host."""
    return DOCKER_HUB_API if registry in (DOCKER_HUB, "index.docker.io") else registry


# --- credentials ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # never printed, never logged


def docker_config_path(docker_config_dir: Path | None = None) -> Path:
    base = docker_config_dir or os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker"
    return Path(base) / "config.json"


def _config_keys(host: str) -> list[str]:
    """The keys `docker login` may have written for ``host`` (with or without scheme and path)."""
    if host in (DOCKER_HUB, "index.docker.io", DOCKER_HUB_API):
        return [DOCKER_HUB_AUTH_KEY, "index.docker.io", DOCKER_HUB, DOCKER_HUB_API]
    return [host, f"https://{host}", f"http://{host}"]


def _strip_key(key: str) -> str:
    return key.split("://", 1)[-1].split("/", 1)[0]


def helper_for(host: str, config: Mapping[str, Any]) -> str | None:
    """The credential helper the Docker CLI would ask for ``host``: credHelpers, else credsStore."""
    helpers = {_strip_key(k): v for k, v in (config.get("credHelpers") or {}).items()}
    for key in _config_keys(host):
        if _strip_key(key) in helpers:
            return str(helpers[_strip_key(key)])
    store = config.get("credsStore")
    return str(store) if store else None


def auth_from_config(host: str, config: Mapping[str, Any]) -> Credentials | None:
    """Inline credentials from ``auths`` (``auth`` base64 of user:password, or the two fields)."""
    auths = {_strip_key(k): v for k, v in (config.get("auths") or {}).items()}
    for key in _config_keys(host):
        entry = auths.get(_strip_key(key))
        if not entry:
            continue
        if entry.get("identitytoken"):
            raise RegistryAuthError(
                f"docker config for {host} holds an OAuth identity token, which the factory does not "
                "support", hint="log in with a username and password or access token")
        if entry.get("auth"):
            try:
                user, colon, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                colon = ""
            if not colon:
                raise RegistryAuthError(f"docker config: auths[{key!r}].auth is not base64 "
                                        "of user:password")
            return Credentials(user, password)
        if entry.get("username"):
            return Credentials(entry["username"], entry.get("password", ""))
    return None


# The credential-helper protocol's way of saying "nothing stored" (docker-credential-helpers).
_HELPER_NOT_FOUND = "credentials not found in native keychain"


def credentials_for(host: str, docker_config_dir: Path | None = None, *,
                    runner: Runner | None = None) -> Credentials | None:
    """Credentials for ``host`` as the Docker CLI finds them: a credential helper (credHelpers, then
    credsStore) run through the one runner, else inline ``auths``; None when there are none."""
    path = docker_config_path(docker_config_dir)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as e:
        raise RegistryAuthError(f"{path}: cannot read docker config: {e}") from None
    helper = helper_for(host, config)
    if helper:
        creds = _from_helper(helper, host, runner or Runner())
        if creds:
            return creds
    return auth_from_config(host, config)


def _from_helper(helper: str, host: str, runner: Runner) -> Credentials | None:
    server = DOCKER_HUB_AUTH_KEY if host in (DOCKER_HUB, DOCKER_HUB_API) else host
    proc = runner.run([f"docker-credential-{helper}", "get"], input=server, step="credentials",
                      timeout=60, check=False)
    if proc.returncode != 0:
        if proc.stdout.strip() == _HELPER_NOT_FOUND:
            return None
        raise CommandError([f"docker-credential-{helper}", "get"], proc.returncode,
                           proc.stderr or proc.stdout, step="credentials")
    try:
        payload = json.loads(proc.stdout)
        username, secret = payload["Username"], payload["Secret"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise RegistryAuthError(f"docker-credential-{helper} get: answer is not "
                                '{"Username": ..., "Secret": ...}') from None
    if username == "<token>":
        raise RegistryAuthError(f"docker-credential-{helper} returned an OAuth identity token for "
                                f"{host}, which the factory does not support")
    return Credentials(username, secret)


# --- the client -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PushResult:
    index_digest: str
    manifests: Mapping[str, str]  # platform -> manifest digest
    blobs_uploaded: int
    blobs_skipped: int
    bytes: int  # bytes uploaded (skipped blobs not counted)


@dataclass(frozen=True)
class Reply:
    """One answer, its body read (bounded), or for a stream the open response."""

    method: str
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    response: requests.Response | None = None

    @property
    def shown(self) -> str:
        return shown_url(self.url)


_STREAM_CHUNK = 1 << 20
_REDIRECTS = (301, 302, 303, 307, 308)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = documents.SHA256


class _BoundedBody(io.RawIOBase):
    """A streamed blob as a raw stream: at most ``limit`` bytes, its digest checked at the end, reads
    bounded by the operation's budget, transport failures typed."""

    def __init__(self, resp: requests.Response, limit: int, url: str, digest: str, budget: Budget) -> None:
        super().__init__()
        self._raw, self._limit, self._url, self._read = resp.raw, limit, url, 0
        self._digest, self._budget, self._sha256, self._checked = digest, budget, hashlib.sha256(), False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer).cast("B")
        self._budget.check()
        try:
            data = self._raw.read(min(len(view), self._limit - self._read + 1), decode_content=True)
        except TRANSPORT_ERRORS as e:
            raise wire.transport_error(e, self._budget, method="GET", url=self._url, secrets=(),
                                       doing="blob download broke off") from None
        if self._budget.expired:
            raise self._budget.error()
        self._read += len(data)
        if self._read > self._limit:
            raise RegistryError(f"blob is longer than the {self._limit} bytes expected", method="GET", url=self._url)
        self._sha256.update(data)
        if not data and not self._checked:
            self._checked = True
            if "sha256:" + self._sha256.hexdigest() != self._digest:
                raise RegistryError(f"blob content does not match {self._digest}", method="GET", url=self._url)
        view[: len(data)] = data
        return len(data)


class Registry:
    """A client for one registry host. Thread-safe: ``push_layout`` uploads from a thread pool.

    Every public method is one operation under one time budget (``Limits.operation_seconds``, plus
    ``Limits.min_rate`` for each byte of a blob transfer): its retries, redirects, waits and bodies.
    Whatever the registry answers, a method returns or raises a ``RegistryError``."""

    def __init__(self, host: str, *, insecure: bool = False, timeout: float = 30, retries: int = 5,
                 backoff: float = 0.5, auth: Credentials | None = None, max_connections: int = 8,
                 limits: Limits | None = None) -> None:
        self.host = api_host(host)
        self.base = f"{'http' if insecure else 'https'}://{self.host}"
        _check_host(self.host)
        self.timeout = timeout
        self.retries = max(0, min(int(retries), 20))
        self.backoff = max(0.0, min(float(backoff), 60.0))
        self.auth = auth
        self.max_connections = max_connections
        self.limits = limits or Limits(read_timeout=timeout, connect_timeout=min(10.0, timeout))
        self.requests_made: Counter[str] = Counter()
        self._log = log.get("registry")
        self._count_lock = threading.Lock()
        self._token_lock = threading.RLock()
        self._challenge: Challenge | None = None  # learnt from the first 401
        self._tokens: dict[str, str] = {}  # scope -> bearer token
        self.session = requests.Session()
        # No urllib3 retries: the loop in _send retries within the operation's budget.
        adapter = WatchedAdapter(pool_connections=1, pool_maxsize=max_connections, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the API ------------------------------------------------------------------------------

    def ping(self) -> None:
        """Check that the registry answers /v2/ and accepts our credentials (if it asks for any)."""
        with self._operation("ping"):
            self._request("GET", "/v2/", scope="", ok=(200,))

    def head_manifest(self, repo: str, reference: str) -> Descriptor | None:
        """The descriptor ``reference`` names, None when absent. The digest is the registry's
        Docker-Content-Digest header (checked for form), or when it sends none, that of the bytes."""
        with self._operation(f"look up manifest {repo}:{reference}"):
            url = self._manifest_url(repo, reference)
            reply = self._request("HEAD", url, scope=repository_scope(repo, push=False),
                                  headers={"Accept": ", ".join(ACCEPT_MANIFESTS)}, ok=(200, 404))
            if reply.status == 404:
                return None
            size = self._checked(reply, lambda: content_length(reply.headers)) or 0
            digest = self._header_digest(reply)
            if digest is None:  # the header is optional in the spec; the body tells for sure
                _, _, digest = self.get_manifest(repo, reference)
            return Descriptor(media_type=_content_type(reply), digest=digest, size=size)

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """(raw bytes, media type, digest), the digest checked against the bytes and the document
        against the shape of a manifest or an index (so callers may ``json.loads`` it)."""
        with self._operation(f"fetch manifest {repo}:{reference}"):
            url = self._manifest_url(repo, reference)
            reply = self._request("GET", url, scope=repository_scope(repo, push=False),
                                  headers={"Accept": ", ".join(ACCEPT_MANIFESTS)}, body=self.limits.max_manifest)
            digest = sha256_digest(reply.body)
            header = self._header_digest(reply)
            for claimed in (reference if reference.startswith("sha256:") else None, header):
                if claimed and claimed != digest:
                    raise RegistryError(f"manifest digest mismatch: got {digest}, expected {claimed}",
                                        method="GET", url=reply.shown)
            media_type = _content_type(reply)
            self._checked(reply, lambda: documents.manifest(reply.body, media_type,
                                                              max_depth=self.limits.max_json_depth))
            return reply.body, media_type, digest

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> str:
        """PUT a manifest or index by tag or digest; returns its digest."""
        with self._operation(f"write manifest {repo}:{reference}"):
            url = self._manifest_url(repo, reference)
            digest = sha256_digest(raw)
            if reference.startswith("sha256:") and reference != digest:
                raise RegistryError(f"refusing to PUT a manifest under {reference}: its digest is {digest}",
                                    method="PUT", url=self.base + url)
            reply = self._request("PUT", url, scope=repository_scope(repo, push=True), data=raw,
                                  headers={"Content-Type": media_type}, ok=(201,))
            stored = self._header_digest(reply) or digest
            if stored != digest:
                raise RegistryError(f"registry stored the manifest as {stored}, expected {digest}",
                                    method="PUT", url=reply.shown)
            return digest

    def delete_manifest(self, repo: str, digest: str) -> None:
        if not _DIGEST.fullmatch(digest):
            raise RegistryError(f"delete_manifest needs a sha256 digest, not {clean(digest, ())!r}")
        with self._operation(f"delete manifest {repo}@{digest}"):
            self._request("DELETE", f"/v2/{repo}/manifests/{digest}", scope=repository_scope(repo, push=True),
                          ok=(202,))

    def referrers(self, repo: str, digest: str) -> list[Descriptor]:
        """The OCI 1.1 referrers of ``digest``; none where the registry has no referrers API (404)."""
        with self._operation(f"list referrers of {repo}@{digest}"):
            reply = self._request("GET", f"/v2/{repo}/referrers/{digest}", scope=repository_scope(repo, push=False),
                                  headers={"Accept": "application/vnd.oci.image.index.v1+json"}, ok=(200, 404),
                                  body=self.limits.max_manifest)
            if reply.status == 404:
                return []
            doc = self._checked(reply, lambda: json.loads(reply.body))
            return [Descriptor.from_json(d) for d in (doc.get("manifests") or [])]

    def blob_exists(self, repo: str, digest: str) -> bool:
        with self._operation(f"look up blob {repo}@{digest}"):
            return self._has_blob(repo, digest, repository_scope(repo, push=False))

    def _has_blob(self, repo: str, digest: str, scope: str) -> bool:
        reply = self._request("HEAD", self._blob_url(repo, digest), scope=scope, ok=(200, 404))
        return reply.status == 200

    def get_blob(self, repo: str, digest: str, *, max_bytes: int | None = None) -> bytes:
        """A blob read into memory (at most ``max_bytes``, default ``Limits.max_blob``), its digest checked."""
        cap = self.limits.max_blob if max_bytes is None else max_bytes
        with self._operation(f"fetch blob {repo}@{digest}", transfer=cap):
            url = self._blob_url(repo, digest)
            reply = self._request("GET", url, scope=repository_scope(repo, push=False), body=cap)
            if sha256_digest(reply.body) != digest:
                raise RegistryError(f"blob content does not match {digest}", method="GET", url=reply.shown)
            return reply.body

    @contextmanager
    def open_blob(self, repo: str, digest: str, *, max_bytes: int) -> Iterator[BinaryIO]:
        """One blob as a stream, read as it arrives and never more than ``max_bytes`` (a larger Content-Length
        is refused before reading). The stream checks the digest when it reaches the end (and
        ``factory.oci.rootfs`` reads every layer to its end); the whole download is one operation,
        its budget counting ``max_bytes`` at ``Limits.min_rate``."""
        url = self._blob_url(repo, digest)
        budget = self._budget(f"download blob {repo}@{digest}", transfer=max_bytes)
        with budget.armed():
            with budget.current(), self._mapped(budget):
                reply = self._request("GET", url, scope=repository_scope(repo, push=False), stream=True)
            assert reply.response is not None  # a stream was asked for
            with reply.response:
                declared = self._checked(reply, lambda: content_length(reply.headers))
                if declared is not None and declared > max_bytes:
                    raise RegistryError(f"blob {digest} is {declared} bytes, more than the {max_bytes} expected",
                                        method="GET", url=reply.shown)
                body = _BoundedBody(reply.response, max_bytes, reply.shown, digest, budget)
                yield io.BufferedReader(body, _STREAM_CHUNK)

    def layer_opener(self, repo: str) -> LayerOpener:
        """``factory.oci.rootfs``'s opener for the layers of an image in ``repo``: each blob bounded by the
        size its descriptor gives."""
        return lambda layer: self.open_blob(repo, layer.digest, max_bytes=layer.size)

    def push_blob(self, repo: str, digest: str, data_or_path: bytes | Path) -> bool:
        """Upload one blob (monolithic POST + PUT); False when the registry already had it."""
        size = len(data_or_path) if isinstance(data_or_path, (bytes, bytearray)) else Path(data_or_path).stat().st_size
        with self._operation(f"upload blob {repo}@{digest}", transfer=size):
            scope = repository_scope(repo, push=True)  # asked for the HEAD too: one token for the whole upload
            if self._has_blob(repo, digest, scope):
                return False
            started = self._request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, ok=(202,))
            location = started.headers.get("Location")
            if not location:
                raise RegistryError("upload started without a Location header", method="POST",
                                    url=started.shown, status=started.status)
            upload_url = urljoin(started.url, location)  # elsewhere: sent there without our credentials
            if isinstance(data_or_path, (bytes, bytearray)):
                self._put_upload(upload_url, digest, scope, bytes(data_or_path), size)
            else:
                with Path(data_or_path).open("rb") as f:  # streamed; rewound for a retry
                    self._put_upload(upload_url, digest, scope, f, size)
            return True

    def list_tags(self, repo: str, *, page_size: int | None = None) -> list[str]:
        """Every tag of ``repo``, following Link pagination; [] when the repository does not exist."""
        with self._operation(f"list tags of {repo}"):
            return self._paginate(f"{self.base}/v2/{repo}/tags/list", "tags",
                                  scope=repository_scope(repo, push=False), page_size=page_size)

    def catalog(self, *, page_size: int | None = None) -> list[str]:
        """Every repository in the registry (where the registry allows listing them)."""
        with self._operation("list repositories"):
            return self._paginate(f"{self.base}/v2/_catalog", "repositories", scope="registry:catalog:*",
                                  page_size=page_size)

    def _paginate(self, url: str, key: str, *, scope: str, page_size: int | None) -> list[str]:
        """Link rel=next pages, bounded in pages and entries, never leaving the registry nor going round."""
        next_url: str | None = url
        params = {"n": str(page_size)} if page_size else None
        items: list[str] = []
        seen: set[str] = set()
        while next_url:
            if len(seen) >= self.limits.max_pages:
                raise RegistryError(f"more than {self.limits.max_pages} pages of {key}: stopped",
                                    method="GET", url=shown_url(next_url))
            reply = self._request("GET", next_url, scope=scope, params=params, ok=(200, 404),
                                  body=self.limits.max_page)
            if reply.status == 404:
                if "NAME_UNKNOWN" in {e["code"] for e in documents.registry_errors(reply.body)}:
                    return []  # no such repository yet: no tags
                raise self._error(reply)
            seen.add(reply.url)
            items.extend(self._checked(reply, functools.partial(documents.names, reply.body, key)))
            if len(items) > self.limits.max_entries:
                raise RegistryError(f"more than {self.limits.max_entries} {key}: stopped", method="GET",
                                    url=reply.shown)
            # The next link carries its own query (n and last); do not add ours again.
            next_url, params = next_page_url(reply.url, reply.headers.get("Link")), None
            if next_url and wire.origin(next_url) != wire.origin(self.base):
                raise RegistryError(f"the next page of {key} is on another host: refused", method="GET",
                                    url=reply.shown)
            if next_url in seen:
                raise RegistryError(f"the pages of {key} go round in a loop: stopped", method="GET", url=reply.shown)
        return items

    def tag(self, repo: str, digest: str, tag: str, *, expect_absent: bool = False) -> bool:
        """Point ``tag`` at the manifest ``digest`` already in ``repo``.

        With ``expect_absent`` the tag is immutable: raise TagExists when it points elsewhere
        (re-tagging the same digest is a no-op, so a re-run after a failure completes).
        Returns whether the tag was written (False: it already pointed there).
        The registry API has no conditional PUT, so this is compare-then-write: callers serialise
        their own writers (the publish lock), and the tag is read back to catch a concurrent one.
        The manifest is fetched first, so that nothing but the write itself falls between the
        compare and the write (docs/reliability.md says what this does and does not guarantee).
        """
        with self._operation(f"tag {repo}:{tag}"):
            raw, media_type, _ = self.get_manifest(repo, digest)
            current = self.head_manifest(repo, tag)
            if current and current.digest == digest:
                return False
            if current and expect_absent:
                raise TagExists(f"tag {tag} already points at {current.digest}; refusing to move it to {digest}",
                                url=f"{self.base}/v2/{repo}/manifests/{tag}",
                                hint="immutable tags are never moved: publish a new version instead")
            self.put_manifest(repo, tag, raw, media_type)
            after = self.head_manifest(repo, tag)
            if after is None or after.digest != digest:
                raise RegistryError(f"tag {tag} was changed by someone else while being written "
                                    f"(now {after.digest if after else 'absent'}, wrote {digest})",
                                    url=f"{self.base}/v2/{repo}/manifests/{tag}")
            return True

    def config_of(self, repo: str, manifest_raw: bytes) -> dict[str, Any]:
        """The image config a (checked) image manifest names, its shape checked."""
        doc = documents.manifest(manifest_raw, "", max_depth=self.limits.max_json_depth)
        raw = self.get_blob(repo, doc["config"]["digest"])
        try:
            return documents.image_config(raw, max_depth=self.limits.max_json_depth)
        except ValueError as e:
            raise RegistryError(f"image config {doc['config']['digest']}: {e}", url=self.base) from None

    def image_config(self, repo: str, reference: str, platform: str | None = None) -> dict[str, Any]:
        """The image config of ``reference``: of ``platform``'s image when it is an index (the first
        real platform when none is given; BuildKit's attestation entries are skipped)."""
        with self._operation(f"read image config of {repo}:{reference}"):
            raw, media_type, _ = self.get_manifest(repo, reference)
            doc = json.loads(raw)  # checked by get_manifest
            if media_type in INDEX_TYPES or "manifests" in doc:
                children = [Descriptor.from_json(d) for d in doc["manifests"]]
                images = [d for d in children if d.platform and not d.is_attestation
                          and (platform is None or platform_string(d.platform) == platform)]
                if not images:
                    raise RegistryError(f"{repo}@{reference} has no image for {platform or 'any platform'}")
                raw = self.get_manifest(repo, images[0].digest)[0]
            return self.config_of(repo, raw)

    def platforms(self, repo: str, reference: str) -> list[str]:
        """The platforms an image provides: its index's image entries (BuildKit's attestation entries
        skipped), or for a single-platform manifest the platform its config names."""
        with self._operation(f"read platforms of {repo}:{reference}"):
            raw, media_type, _ = self.get_manifest(repo, reference)
            doc = json.loads(raw)  # checked by get_manifest
            if media_type in INDEX_TYPES or "manifests" in doc:
                children = [Descriptor.from_json(d) for d in doc["manifests"]]
                return sorted({platform_string(d.platform) for d in children if d.platform and not d.is_attestation})
            return [platform_string(self.config_of(repo, raw))]

    def labels(self, repo: str, reference: str) -> dict[str, str]:
        """The image's labels (every platform of a factory image carries the same ones)."""
        return (self.image_config(repo, reference).get("config") or {}).get("Labels") or {}

    def push_layout(self, layout: OciLayout, repo: str) -> PushResult:
        """Push the layout's image by digest: blobs (skipping existing ones, bounded concurrency),
        then every manifest, then the index. No tag. Checks the registry's digest of the index."""
        blobs = layout.blobs()
        self._log.info("push blobs", repo=repo, blobs=len(blobs), index=layout.index.digest)
        with ThreadPoolExecutor(max_workers=self.max_connections, thread_name_prefix="push") as pool:
            uploaded = list(pool.map(lambda d: self.push_blob(repo, d.digest, layout.blob(d.digest)), blobs))
        for desc, raw in layout.walk():  # children first: a registry rejects an index with unknown children
            self.put_manifest(repo, desc.digest, raw, desc.media_type)
        found = self.head_manifest(repo, layout.index.digest)
        if found is None or found.digest != layout.index.digest:
            raise RegistryError(f"after the push the registry reports {found.digest if found else 'nothing'} "
                                f"for the index, expected {layout.index.digest}")
        result = PushResult(
            index_digest=layout.index.digest,
            manifests=layout.manifests,
            blobs_uploaded=sum(uploaded),
            blobs_skipped=len(uploaded) - sum(uploaded),
            bytes=sum(d.size for d, up in zip(blobs, uploaded, strict=True) if up),
        )
        self._log.info("pushed", repo=repo, index=result.index_digest, uploaded=result.blobs_uploaded,
                       skipped=result.blobs_skipped, bytes=result.bytes)
        return result

    # --- checks on what the registry sent --------------------------------------------------------

    def _manifest_url(self, repo: str, reference: str) -> str:
        if not (_TAG.fullmatch(reference) or _DIGEST.fullmatch(reference)):
            raise RegistryError(f"{clean(reference, ())!r} is neither a tag nor a sha256 digest",
                                url=f"{self.base}/v2/{repo}/manifests/")
        return f"/v2/{repo}/manifests/{reference}"

    def _blob_url(self, repo: str, digest: str) -> str:
        if not _DIGEST.fullmatch(digest):
            raise RegistryError(f"blob digest {clean(digest, ())!r} is not sha256:<64 hex>",
                                url=f"{self.base}/v2/{repo}/blobs/")
        return f"/v2/{repo}/blobs/{digest}"

    def _header_digest(self, reply: Reply) -> str | None:
        """The Docker-Content-Digest header, None when absent; an error when it is not sha256:<64 hex>
        (its value is never used, shown or written then)."""
        value = reply.headers.get("Docker-Content-Digest")
        if value is None:
            return None
        if not _DIGEST.fullmatch(value.strip()):
            raise RegistryError("malformed Docker-Content-Digest header (not sha256:<64 lowercase hex>)",
                                method=reply.method, url=reply.shown, status=reply.status)
        return value.strip()

    def _checked(self, reply: Reply, check: Callable[[], _T]) -> _T:
        """``check()``, its ValueError (a bad document or header) as the error of this request."""
        try:
            return check()
        except ValueError as e:
            raise RegistryError(f"unusable answer: {clean(str(e), self._secrets())}", method=reply.method,
                                url=reply.shown, status=reply.status) from None

    # --- operations and their budgets -------------------------------------------------------------

    def _budget(self, what: str, *, transfer: int = 0) -> Budget:
        return Budget(f"{what} at {self.host}", self.limits.operation_seconds + transfer / self.limits.min_rate)

    @contextmanager
    def _operation(self, what: str, *, transfer: int = 0) -> Iterator[Budget]:
        """One public operation: its budget armed, transport errors typed. An operation called by
        another (``tag`` reads the manifest) runs in the caller's budget."""
        outer = current_budget()
        if outer is not None:
            yield outer
            return
        budget = self._budget(what, transfer=transfer)
        with budget.armed(), budget.current(), self._mapped(budget):
            yield budget

    @contextmanager
    def _mapped(self, budget: Budget) -> Iterator[None]:
        """Any third-party exception left as the factory's error, naming the operation and registry."""
        try:
            yield
        except FactoryError:
            raise
        except _UNEXPECTED as e:
            if budget.expired:
                raise budget.error() from None
            raise RegistryError(f"{budget.what}: {type(e).__name__}: {clean(reason(e), self._secrets())}") from None

    def _secrets(self) -> list[str]:
        with self._token_lock:  # upload threads may be adding tokens
            found = list(self._tokens.values())
        if self.auth:
            found.append(self.auth.password)
            found.append(base64.b64encode(f"{self.auth.username}:{self.auth.password}".encode()).decode())
        return found

    # --- transport ------------------------------------------------------------------------------

    def _put_upload(self, url: str, digest: str, scope: str, body: bytes | BinaryIO, size: int) -> None:
        reply = self._request("PUT", url, scope=scope, params={"digest": digest}, data=body,
                              headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                              ok=(201,))
        stored = self._header_digest(reply) or digest
        if stored != digest:
            raise RegistryError(f"registry stored the blob as {stored}, expected {digest}",
                                method="PUT", url=reply.shown)

    def _request(self, method: str, url: str, *, scope: str, ok: Iterable[int] = (200,),
                 headers: Mapping[str, str] | None = None, body: int = 0, stream: bool = False,
                 data: bytes | BinaryIO | None = None, params: Mapping[str, str] | None = None) -> Reply:
        """One API call: auth from the cached challenge, one re-try after a 401, typed errors. The body
        of an answer in ``ok`` is read up to ``body`` bytes (more is an error); with ``body`` 0 it is
        not wanted and dropped (a stream is handed back unread)."""
        budget = current_budget()
        assert budget is not None, "registry requests run inside an operation"
        url = url if url.startswith("http") else self.base + url
        # Credentials go only to the registry itself, never to a host a Location header names.
        ours = wire.origin(url) == wire.origin(self.base)
        sent = self._auth_header(scope) if ours else {}
        resp = self._send(method, url, {**(headers or {}), **sent}, data, params, budget)
        if resp.status_code == 401 and ours:
            self._answer_challenge(self._error_reply(resp, budget), scope, sent.get("Authorization"))
            _rewind(data)
            resp = self._send(method, url, {**(headers or {}), **self._auth_header(scope)}, data, params, budget)
            if resp.status_code == 401:
                raise self._error(self._error_reply(resp, budget), "credentials refused", auth=True)
        if resp.status_code not in tuple(ok):
            raise self._error(self._error_reply(resp, budget))
        reply = Reply(method, resp.url or url, resp.status_code, resp.headers)
        if stream:
            return dataclasses.replace(reply, response=resp)
        content = self._read(resp, body or self.limits.max_error_body, budget, strict=body > 0)
        return dataclasses.replace(reply, body=content)

    def _error_reply(self, resp: requests.Response, budget: Budget) -> Reply:
        """An answer not in ``ok``: its first bytes, for the registry's error message."""
        content = self._read(resp, self.limits.max_error_body, budget, strict=False)
        return Reply(resp.request.method or "", resp.url, resp.status_code, resp.headers, content)

    def _read(self, resp: requests.Response, cap: int, budget: Budget, *, strict: bool) -> bytes:
        """A body, bounded (``wire.read_body``), its failures typed: too long, broken off, out of time."""
        method = resp.request.method or ""
        with resp:
            try:
                return read_body(resp, cap, budget, strict=strict)
            except ValueError as e:
                raise RegistryError(f"unusable answer: {e}", method=method, url=shown_url(resp.url),
                                    status=resp.status_code) from None
            except TRANSPORT_ERRORS as e:  # broke off, timed out, or a Content-Encoding that does not decode
                raise wire.transport_error(e, budget, method=method, url=resp.url, secrets=self._secrets(),
                                           doing="the answer broke off") from None

    def _send(self, method: str, url: str, headers: Mapping[str, str], data: bytes | BinaryIO | None,
              params: Mapping[str, str] | None, budget: Budget) -> requests.Response:
        """The request with bounded retries: connection failures and 429/5xx are tried again after a
        backoff (or the registry's Retry-After, capped), never past the operation's budget."""
        attempt = 0
        while True:
            attempt += 1
            budget.check()
            try:
                resp = self._follow(method, url, headers, data, params, budget)
            except TRANSIENT_ERRORS as e:
                error = wire.transport_error(e, budget, method=method, url=url, secrets=self._secrets())
                if budget.expired or attempt > self.retries:
                    if not budget.expired:
                        tried = f" (after {self.retries} retries)" if self.retries else ""
                        error = RegistryUnreachable(f"registry not reachable{tried}: "
                                                    f"{clean(reason(e), self._secrets())}", method=method,
                                                    url=shown_url(url), hint=error.hint)
                    raise error from None
                self._pause(self._backoff(attempt), budget, error)
                _rewind(data)
                continue
            if resp.status_code not in RETRY_STATUSES or attempt > self.retries:
                return resp
            asked = retry_after(resp.headers)
            wait = self._backoff(attempt) if asked is None else min(asked, self.limits.max_retry_after)
            if wait >= budget.remaining():
                note = (f"the registry asked to wait {asked:g} s" if asked is not None else
                        f"a backoff of {wait:g} s") + f", past the operation's budget of {budget.seconds:g} s"
                raise self._error(self._error_reply(resp, budget), note=note)
            resp.close()
            time.sleep(wait)
            _rewind(data)

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff * 2.0 ** (attempt - 1), 30.0)

    @staticmethod
    def _pause(wait: float, budget: Budget, error: RegistryError) -> None:
        if wait >= budget.remaining():
            raise error
        time.sleep(wait)

    def _follow(self, method: str, url: str, headers: Mapping[str, str], data: bytes | BinaryIO | None,
                params: Mapping[str, str] | None, budget: Budget) -> requests.Response:
        """One request and its redirects (GET and HEAD only): at most ``max_redirects``, http(s) only,
        no loop; credentials go only to the origin they were meant for, never where a Location leads."""
        home = wire.origin(url)
        seen: set[str] = set()
        for _ in range(self.limits.max_redirects + 1):
            budget.check()
            sent = headers if wire.origin(url) == home else {k: v for k, v in headers.items()
                                                             if k.lower() != "authorization"}
            try:
                resp = self.session.request(method, url, headers=sent, data=data, params=params,
                                            timeout=budget.timeouts(self.limits), allow_redirects=False, stream=True)
            except TRANSIENT_ERRORS:
                raise  # _send retries these
            except TRANSPORT_ERRORS as e:  # requests reads a redirect's body itself: any malformed answer
                raise wire.transport_error(e, budget, method=method, url=url, secrets=self._secrets()) from None
            self._count(method, resp)
            if resp.status_code not in _REDIRECTS or method not in ("GET", "HEAD"):
                return resp
            seen.add(resp.url or url)
            resp.close()
            try:
                url = wire.redirect_target(resp.url or url, resp.headers.get("Location"))
            except ValueError as e:
                raise RegistryError(f"redirect refused: {e}", method=method, url=shown_url(resp.url or url),
                                    status=resp.status_code) from None
            if url in seen:
                raise RegistryError("redirect loop", method=method, url=shown_url(url), status=resp.status_code)
            params = None  # the Location carries its own query
        raise RegistryError(f"more than {self.limits.max_redirects} redirects", method=method, url=shown_url(url))

    def _count(self, method: str, resp: requests.Response) -> None:
        with self._count_lock:
            self.requests_made[method] += 1
        self._log.debug("http", method=method, url=shown_url(resp.url or ""), status=resp.status_code)

    def _auth_header(self, scope: str) -> dict[str, str]:
        """Credentials sent up front once the registry's challenge is known (saves a 401 each)."""
        challenge = self._challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            if not self.auth:
                return {}
            token = base64.b64encode(f"{self.auth.username}:{self.auth.password}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        return {"Authorization": f"Bearer {self._token_for(challenge, scope)}"}

    def _token_for(self, challenge: Challenge, scope: str) -> str:
        with self._token_lock:  # one fetch per scope even when the upload threads all ask at once
            # A pull,push token also grants pull: reuse it instead of fetching a second token.
            token = self._tokens.get(scope)
            if token is None and scope.endswith(":pull"):
                token = self._tokens.get(f"{scope},push")
            if token is None:
                token = self._tokens[scope] = self._fetch_token(challenge, scope)
            return token

    def _answer_challenge(self, reply: Reply, scope: str, sent: str | None) -> None:
        """A 401: learn the challenge (first time) or refresh an expired token for this scope."""
        header = reply.headers.get("WWW-Authenticate", "")
        challenge = parse_challenge(header)
        if challenge.scheme not in ("basic", "bearer"):
            raise self._error(reply, f"unsupported authentication challenge {clean(header, (), limit=80)!r}",
                              auth=True)
        if challenge.scheme == "basic" and not self.auth:
            raise self._error(reply, "the registry wants credentials and none were found", auth=True)
        with self._token_lock:
            self._challenge = challenge
            if challenge.scheme != "bearer":
                return
            cached = self._tokens.get(scope)
            if cached and f"Bearer {cached}" != sent:
                return  # another upload thread got a fresh token while this request was out
            # Our scope is computed for the request (pull, or pull,push); the challenge's serves
            # requests that have none of their own, like /v2/.
            self._tokens[scope] = self._fetch_token(challenge, scope or challenge.params.get("scope", ""))

    def _fetch_token(self, challenge: Challenge, scope: str) -> str:
        """A bearer token from the challenge's realm (the distribution token protocol). The realm is
        http(s), and plain http only when the registry itself is: credentials never go out in clear
        from a TLS registry."""
        realm = challenge.realm
        try:
            scheme = urlsplit(realm).scheme.lower()
        except ValueError:
            scheme = ""
        if scheme not in ("http", "https") or (scheme == "http" and self.base.startswith("https")):
            raise RegistryAuthError(f"the token realm {shown_url(realm)!r} is not an https URL: not asked",
                                    url=self.base)
        budget = current_budget()
        assert budget is not None
        params = {"service": challenge.params["service"]} if "service" in challenge.params else {}
        if scope:
            params["scope"] = scope
        headers = {}
        if self.auth:
            basic = base64.b64encode(f"{self.auth.username}:{self.auth.password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        resp = self._send("GET", realm, headers, None, params, budget)
        if resp.status_code != 200:
            raise self._error(self._error_reply(resp, budget), "the token service refused the credentials",
                              auth=True)
        raw = self._read(resp, self.limits.max_token, budget, strict=True)
        try:
            return documents.token(raw)
        except ValueError as e:
            raise RegistryAuthError(str(e), method="GET", url=shown_url(realm)) from None

    def _error(self, reply: Reply, message: str = "", *, auth: bool = False, note: str = "") -> RegistryError:
        errors = documents.registry_errors(reply.body)
        secrets = self._secrets()
        code = clean(errors[0]["code"], secrets, limit=60) if errors else ""
        detail = clean("; ".join(f"{e['code']}: {e['message']}".strip(": ") for e in errors), secrets)
        status = reply.status
        text = message or f"HTTP {status}"
        if message:
            text += f" (HTTP {status})"
        if detail:
            text += f": {detail}"
        if note:
            text += f" ({note})"
        elif status in RETRY_STATUSES:
            text += f" (after {self.retries} retries with backoff)"
        cls = RegistryAuthError if auth or status in (401, 403) else RegistryError
        hint = ("check the credentials in the docker config (docker login " + self.host + ")"
                if cls is RegistryAuthError else None)
        return cls(text, method=reply.method, url=reply.shown, status=status, code=code, detail=detail, hint=hint)


_T = TypeVar("_T")
_UNEXPECTED: tuple[type[BaseException], ...] = (*TRANSPORT_ERRORS, RecursionError)


def _check_host(host: str) -> None:
    """A registry host[:port] that makes a URL: no userinfo (never echoed), a port that exists."""
    if "@" in host:
        raise RegistryError("a registry host must not carry credentials (user:password@): "
                            f"got '<credentials>@{clean(host.rpartition('@')[2], ())}'",
                            hint="registry credentials come from the docker config (docker login)")
    try:
        parts = urlsplit(f"http://{host}/")
        port = parts.port
    except ValueError as e:
        raise RegistryError(f"registry host {clean(host, ())!r} is not host[:port]: {e}") from None
    if not parts.hostname or parts.path != "/" or port == 0:
        raise RegistryError(f"registry host {clean(host, ())!r} is not host[:port]")


def _content_type(reply: Reply) -> str:
    return reply.headers.get("Content-Type", "").split(";")[0].strip()


def _rewind(body: Any) -> None:
    if hasattr(body, "seek"):
        body.seek(0)


def ping(host: str, *, insecure: bool = False, timeout: float = 5.0) -> str | None:
    """None when ``host`` speaks the distribution API (/v2/ answers 200 or 401), else the problem.
    Used by `factory doctor`: no credentials, no retries, one budget of twice ``timeout``."""
    try:
        with Registry(host, insecure=insecure, retries=0, limits=Limits(
                connect_timeout=timeout, read_timeout=timeout, operation_seconds=2 * timeout)) as r, \
                r._operation("ping"):
            r._request("GET", "/v2/", scope="", ok=(200, 401))
    except RegistryUnreachable as e:
        return f"not reachable ({clean(e.message, (), limit=200)})"
    except RegistryError as e:
        return f"/v2/ answered HTTP {e.status}" if e.status else clean(e.message, (), limit=200)
    return None


def platform_digests(registry: Registry, repo: str, reference: str) -> tuple[str, dict[str, str]]:
    """(digest of ``reference``, platform -> manifest digest), BuildKit's attestation entries skipped.
    A single-platform image maps its own platform (read from its config) to its own digest."""
    raw, media_type, digest = registry.get_manifest(repo, reference)
    doc = json.loads(raw)  # checked by get_manifest
    if media_type in INDEX_TYPES or "manifests" in doc:
        return digest, {platform_string(d["platform"]): d["digest"] for d in doc["manifests"]
                        if d.get("platform") and d["platform"].get("os") != "unknown"}
    config_digest = doc["config"]["digest"]
    try:
        config = documents.image_config(registry.get_blob(repo, config_digest))
    except ValueError as e:
        raise RegistryError(f"{repo}: image config {config_digest}: {e}") from None
    return digest, {platform_string(config): digest}
