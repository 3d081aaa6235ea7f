"""The registry client: the OCI distribution API over ``requests``.

One ``Registry`` per registry host: one ``requests.Session`` (a connection pool of
``max_connections``), urllib3's ``Retry`` for 429/5xx and connection failures (exponential backoff,
Retry-After honoured), a timeout on every request, and Basic or Bearer auth answered from the
registry's WWW-Authenticate challenge, with bearer tokens cached per scope in the instance.
docs/registry.md says why this is not oras-py.

Images are pushed by digest only (``push_layout``); tags are written separately by ``tag``, which
can refuse to move an existing tag (the immutable-tag guard).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlparse

import requests
import urllib3
from requests.adapters import HTTPAdapter
from typing_extensions import Buffer
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from factory.adapters.tools import Runner
from factory.core import log
from factory.core.errors import (
    CommandError,
    RegistryAuthError,
    RegistryError,
    RegistryUnreachable,
    TagExists,
)
from factory.core.reference import DOCKER_HUB, DOCKER_HUB_API
from factory.oci.layout import (
    ACCEPT_MANIFESTS,
    INDEX_TYPES,
    Descriptor,
    OciLayout,
    platform_string,
    sha256_digest,
)
from factory.oci.rootfs import LayerOpener

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"  # the key `docker login` writes for Docker Hub
RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_RETRY_AFTER = 60.0  # seconds; a registry asking for longer gets this, then we give up eventually

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


_STREAM_CHUNK = 1 << 20


class _BoundedBody(io.RawIOBase):
    """A streamed response body as a raw stream: at most ``limit`` bytes, transport failures typed."""

    def __init__(self, resp: requests.Response, limit: int, url: str) -> None:
        super().__init__()
        self._raw, self._limit, self._url, self._read = resp.raw, limit, url, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._raw.read(min(len(view), self._limit - self._read + 1), decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise RegistryUnreachable(f"blob download broke off: {_reason(e)}", method="GET", url=self._url) from None
        self._read += len(data)
        if self._read > self._limit:
            raise RegistryError(f"blob is longer than the {self._limit} bytes expected", method="GET", url=self._url)
        view[: len(data)] = data
        return len(data)


class _Retry(Retry):
    """urllib3's Retry with Retry-After capped: a registry asking for an hour must not stall a night."""

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        after = super().get_retry_after(response)
        return None if after is None else min(after, MAX_RETRY_AFTER)


class Registry:
    """A client for one registry host. Thread-safe: ``push_layout`` uploads from a thread pool."""

    def __init__(self, host: str, *, insecure: bool = False, timeout: float = 30, retries: int = 5,
                 backoff: float = 0.5, auth: Credentials | None = None, max_connections: int = 8) -> None:
        self.host = api_host(host)
        self.base = f"{'http' if insecure else 'https'}://{self.host}"
        self.timeout = timeout
        self.retries = retries
        self.auth = auth
        self.max_connections = max_connections
        self.requests_made: Counter[str] = Counter()
        self._log = log.get("registry")
        self._count_lock = threading.Lock()
        self._token_lock = threading.RLock()
        self._challenge: Challenge | None = None  # learnt from the first 401
        self._tokens: dict[str, str] = {}  # scope -> bearer token
        self.session = requests.Session()
        retry = _Retry(
            total=retries, backoff_factor=backoff, backoff_max=30,
            status_forcelist=RETRY_STATUSES, respect_retry_after_header=True,
            # Distribution writes are idempotent by digest (a retried blob or manifest PUT stores
            # the same content), so retrying them is safe.
            allowed_methods=frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"}),
            raise_on_status=False,  # hand back the last 5xx so the error says what the registry said
        )
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max_connections, max_retries=retry)
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
        self._request("GET", "/v2/", scope="", ok=(200,))

    def head_manifest(self, repo: str, reference: str) -> Descriptor | None:
        resp = self._request("HEAD", f"/v2/{repo}/manifests/{reference}", scope=repository_scope(repo, push=False),
                             headers={"Accept": ", ".join(ACCEPT_MANIFESTS)}, ok=(200, 404))
        if resp.status_code == 404:
            return None
        digest = resp.headers.get("Docker-Content-Digest")
        if not digest:  # the header is optional in the spec; the body tells for sure
            _, _, digest = self.get_manifest(repo, reference)
        return Descriptor(media_type=_content_type(resp), digest=digest,
                          size=int(resp.headers.get("Content-Length", 0)))

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """(raw bytes, media type, digest), the digest checked against the bytes."""
        url = f"/v2/{repo}/manifests/{reference}"
        resp = self._request("GET", url, scope=repository_scope(repo, push=False),
                             headers={"Accept": ", ".join(ACCEPT_MANIFESTS)})
        raw = resp.content
        digest = sha256_digest(raw)
        claimed = reference if reference.startswith("sha256:") else resp.headers.get("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise RegistryError(f"manifest digest mismatch: got {digest}, expected {claimed}",
                                method="GET", url=self.base + url)
        return raw, _content_type(resp), digest

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> str:
        """PUT a manifest or index by tag or digest; returns its digest."""
        url = f"/v2/{repo}/manifests/{reference}"
        digest = sha256_digest(raw)
        if reference.startswith("sha256:") and reference != digest:
            raise RegistryError(f"refusing to PUT a manifest under {reference}: its digest is {digest}",
                                method="PUT", url=self.base + url)
        resp = self._request("PUT", url, scope=repository_scope(repo, push=True), data=raw,
                             headers={"Content-Type": media_type}, ok=(201,))
        stored = resp.headers.get("Docker-Content-Digest", digest)
        if stored != digest:
            raise RegistryError(f"registry stored the manifest as {stored}, expected {digest}",
                                method="PUT", url=self.base + url)
        return digest

    def delete_manifest(self, repo: str, digest: str) -> None:
        if not digest.startswith("sha256:"):
            raise RegistryError(f"delete_manifest needs a digest, not {digest!r}")
        self._request("DELETE", f"/v2/{repo}/manifests/{digest}", scope=repository_scope(repo, push=True),
                      ok=(202,))

    def blob_exists(self, repo: str, digest: str) -> bool:
        return self._has_blob(repo, digest, repository_scope(repo, push=False))

    def _has_blob(self, repo: str, digest: str, scope: str) -> bool:
        resp = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=scope, ok=(200, 404))
        return resp.status_code == 200

    def get_blob(self, repo: str, digest: str) -> bytes:
        url = f"/v2/{repo}/blobs/{digest}"
        data = self._request("GET", url, scope=repository_scope(repo, push=False)).content
        if sha256_digest(data) != digest:
            raise RegistryError(f"blob content does not match {digest}", method="GET", url=self.base + url)
        return data

    @contextmanager
    def open_blob(self, repo: str, digest: str, *, max_bytes: int) -> Iterator[BinaryIO]:
        """One blob as a stream, read as it arrives and never more than ``max_bytes`` (a larger Content-Length
        is refused before reading). The reader checks the digest of what it read (``factory.oci.rootfs``
        does, to the end of every layer)."""
        url = f"/v2/{repo}/blobs/{digest}"
        resp = self._request("GET", url, scope=repository_scope(repo, push=False), stream=True)
        with resp:
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise RegistryError(f"blob {digest} is {declared} bytes, more than the {max_bytes} expected",
                                    method="GET", url=self.base + url)
            yield io.BufferedReader(_BoundedBody(resp, max_bytes, self.base + url), _STREAM_CHUNK)

    def layer_opener(self, repo: str) -> LayerOpener:
        """``factory.oci.rootfs``'s opener for the layers of an image in ``repo``: each blob bounded by the
        size its descriptor gives."""
        return lambda layer: self.open_blob(repo, layer.digest, max_bytes=layer.size)

    def push_blob(self, repo: str, digest: str, data_or_path: bytes | Path) -> bool:
        """Upload one blob (monolithic POST + PUT); False when the registry already had it."""
        scope = repository_scope(repo, push=True)  # asked for the HEAD too: one token for the whole upload
        if self._has_blob(repo, digest, scope):
            return False
        started = self._request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, ok=(202,))
        location = started.headers.get("Location")
        if not location:
            raise RegistryError("upload started without a Location header", method="POST",
                                url=f"{self.base}/v2/{repo}/blobs/uploads/", status=started.status_code)
        upload_url = urljoin(started.url, location)
        if isinstance(data_or_path, (bytes, bytearray)):
            self._put_upload(upload_url, digest, scope, bytes(data_or_path), len(data_or_path))
        else:
            path = Path(data_or_path)
            with path.open("rb") as f:  # streamed; urllib3 rewinds the file on a retry
                self._put_upload(upload_url, digest, scope, f, path.stat().st_size)
        return True

    def list_tags(self, repo: str, *, page_size: int | None = None) -> list[str]:
        """Every tag of ``repo``, following Link pagination; [] when the repository does not exist."""
        return self._paginate(f"{self.base}/v2/{repo}/tags/list", "tags",
                              scope=repository_scope(repo, push=False), page_size=page_size)

    def catalog(self, *, page_size: int | None = None) -> list[str]:
        """Every repository in the registry (where the registry allows listing them)."""
        return self._paginate(f"{self.base}/v2/_catalog", "repositories", scope="registry:catalog:*",
                              page_size=page_size)

    def _paginate(self, url: str, key: str, *, scope: str, page_size: int | None) -> list[str]:
        next_url: str | None = url
        params = {"n": str(page_size)} if page_size else None
        items: list[str] = []
        while next_url:
            resp = self._request("GET", next_url, scope=scope, params=params, ok=(200, 404))
            if resp.status_code == 404:
                if "NAME_UNKNOWN" in _error_codes(resp):  # no such repository yet: no tags
                    return []
                raise self._error(resp)
            items.extend(resp.json().get(key) or [])
            # The next link carries its own query (n and last); do not add ours again.
            next_url, params = next_page_url(resp.url, resp.headers.get("Link")), None
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

    def image_config(self, repo: str, reference: str, platform: str | None = None) -> dict[str, Any]:
        """The image config of ``reference``: of ``platform``'s image when it is an index (the first
        real platform when none is given; BuildKit's attestation entries are skipped)."""
        raw, media_type, _ = self.get_manifest(repo, reference)
        doc = json.loads(raw)
        if media_type in INDEX_TYPES or "manifests" in doc:
            children = [Descriptor.from_json(d) for d in doc.get("manifests", [])]
            images = [d for d in children if d.platform and not d.is_attestation
                      and (platform is None or platform_string(d.platform) == platform)]
            if not images:
                raise RegistryError(f"{repo}@{reference} has no image for {platform or 'any platform'}")
            doc = json.loads(self.get_manifest(repo, images[0].digest)[0])
        config: dict[str, Any] = json.loads(self.get_blob(repo, doc["config"]["digest"]))
        return config

    def platforms(self, repo: str, reference: str) -> list[str]:
        """The platforms an image provides: its index's image entries (BuildKit's attestation entries
        skipped), or for a single-platform manifest the platform its config names."""
        raw, media_type, _ = self.get_manifest(repo, reference)
        doc = json.loads(raw)
        if media_type in INDEX_TYPES or "manifests" in doc:
            children = [Descriptor.from_json(d) for d in doc.get("manifests", [])]
            return sorted({platform_string(d.platform) for d in children if d.platform and not d.is_attestation})
        config = json.loads(self.get_blob(repo, doc["config"]["digest"]))
        return [platform_string(config)]

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

    # --- transport ------------------------------------------------------------------------------

    def _put_upload(self, url: str, digest: str, scope: str, body: bytes | BinaryIO, size: int) -> None:
        resp = self._request("PUT", url, scope=scope, params={"digest": digest}, data=body,
                             headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                             ok=(201,))
        stored = resp.headers.get("Docker-Content-Digest", digest)
        if stored != digest:
            raise RegistryError(f"registry stored the blob as {stored}, expected {digest}",
                                method="PUT", url=url.split("?")[0])

    def _request(self, method: str, url: str, *, scope: str, ok: Iterable[int] = (200,),
                 headers: Mapping[str, str] | None = None, **kwargs: Any) -> requests.Response:
        """One API call: auth from the cached challenge, one re-try after a 401, typed errors."""
        url = url if url.startswith("http") else self.base + url
        # Credentials go only to the registry itself, never to a host a Location header names.
        sent = self._auth_header(scope) if urlparse(url).netloc == self.host else {}
        resp = self._send(method, url, {**(headers or {}), **sent}, kwargs)
        if resp.status_code == 401:
            self._answer_challenge(resp, scope, sent.get("Authorization"))
            _rewind(kwargs.get("data"))
            resp = self._send(method, url, {**(headers or {}), **self._auth_header(scope)}, kwargs)
            if resp.status_code == 401:
                raise self._error(resp, "credentials refused", auth=True)
        if resp.status_code not in tuple(ok):
            raise self._error(resp)
        return resp

    def _send(self, method: str, url: str, headers: Mapping[str, str], kwargs: dict[str, Any]) -> requests.Response:
        try:
            resp = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as e:
            raise RegistryUnreachable(f"registry not reachable (after {self.retries} retries): {_reason(e)}",
                                      method=method, url=url.split("?")[0],
                                      hint="check the registry address and that it is running") from None
        attempts = self._count(method, resp)
        self._log.debug("http", method=method, url=url.split("?")[0], status=resp.status_code,
                        attempts=attempts)
        return resp

    def _count(self, method: str, resp: requests.Response) -> int:
        """Count what went on the wire, urllib3's retries included (they are in the Retry history)."""
        history = getattr(getattr(resp.raw, "retries", None), "history", None) or ()
        attempts = 1 + len(history)
        with self._count_lock:
            self.requests_made[method] += attempts
        return attempts

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

    def _answer_challenge(self, resp: requests.Response, scope: str, sent: str | None) -> None:
        """A 401: learn the challenge (first time) or refresh an expired token for this scope."""
        header = resp.headers.get("WWW-Authenticate", "")
        challenge = parse_challenge(header)
        if challenge.scheme not in ("basic", "bearer"):
            raise self._error(resp, f"unsupported authentication challenge {header!r}", auth=True)
        if challenge.scheme == "basic" and not self.auth:
            raise self._error(resp, "the registry wants credentials and none were found", auth=True)
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
        """A bearer token from the challenge's realm (the distribution token protocol)."""
        params = {"service": challenge.params["service"]} if "service" in challenge.params else {}
        if scope:
            params["scope"] = scope
        basic = (self.auth.username, self.auth.password) if self.auth else None
        try:
            resp = self.session.get(challenge.realm, params=params, auth=basic, timeout=self.timeout)
        except requests.RequestException as e:
            raise RegistryUnreachable(f"token service not reachable: {_reason(e)}", method="GET",
                                      url=challenge.realm) from None
        self._count("GET", resp)
        if resp.status_code != 200:
            raise self._error(resp, "the token service refused the credentials", auth=True)
        try:
            body = resp.json()
        except ValueError:
            body = {}
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryAuthError("the token service answered without a token", method="GET",
                                    url=challenge.realm)
        return str(token)

    def _error(self, resp: requests.Response, message: str = "", *, auth: bool = False) -> RegistryError:
        errors = _registry_errors(resp)
        code = errors[0].get("code", "") if errors else ""
        detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors)
        status = resp.status_code
        text = message or f"HTTP {status}"
        if message:
            text += f" (HTTP {status})"
        if detail:
            text += f": {detail}"
        if status in RETRY_STATUSES:
            text += f" (after {self.retries} retries with backoff)"
        cls = RegistryAuthError if auth or status in (401, 403) else RegistryError
        hint = ("check the credentials in the docker config (docker login " + self.host + ")"
                if cls is RegistryAuthError else None)
        return cls(text, method=resp.request.method or "", url=(resp.url or "").split("?")[0], status=status,
                   code=code, detail=detail, hint=hint)


def _registry_errors(resp: requests.Response) -> list[dict[str, Any]]:
    try:
        errors = resp.json().get("errors")
    except (ValueError, AttributeError):
        return []
    return [e for e in errors or [] if isinstance(e, dict)]


def _error_codes(resp: requests.Response) -> set[str]:
    return {e.get("code", "") for e in _registry_errors(resp)}


def _content_type(resp: requests.Response) -> str:
    return resp.headers.get("Content-Type", "").split(";")[0].strip()


def _rewind(body: Any) -> None:
    if hasattr(body, "seek"):
        body.seek(0)


def _reason(e: Exception) -> str:
    # urllib3 wraps the cause several levels deep; the innermost message says what happened.
    inner: BaseException = e
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    reason = getattr(inner, "reason", None)
    return str(reason or inner)


def ping(host: str, *, insecure: bool = False, timeout: float = 5.0) -> str | None:
    """None when ``host`` speaks the distribution API (/v2/ answers 200 or 401), else the problem.
    Used by `factory doctor`: no credentials, no retries."""
    scheme = "http" if insecure else "https"
    try:
        resp = requests.get(f"{scheme}://{host}/v2/", timeout=timeout)
    except requests.RequestException as e:
        return f"not reachable ({type(e).__name__})"
    if resp.status_code in (200, 401):
        return None
    return f"/v2/ answered HTTP {resp.status_code}"


def platform_digests(registry: Registry, repo: str, reference: str) -> tuple[str, dict[str, str]]:
    """(digest of ``reference``, platform -> manifest digest), BuildKit's attestation entries skipped.
    A single-platform image maps its own platform (read from its config) to its own digest."""
    raw, media_type, digest = registry.get_manifest(repo, reference)
    doc = json.loads(raw)
    if media_type in INDEX_TYPES or "manifests" in doc:
        return digest, {platform_string(d["platform"]): d["digest"] for d in doc.get("manifests", [])
                        if d.get("platform") and d["platform"].get("os") != "unknown"}
    config = json.loads(registry.get_blob(repo, doc["config"]["digest"]))
    return digest, {platform_string(config): digest}
