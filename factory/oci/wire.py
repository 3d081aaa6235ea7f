"""The registry client's guard against a registry that is not ours: time budgets, bounded bodies, safe URLs.

A registry answers slowly, endlessly or not at all; ``requests`` bounds each socket operation (connect,
each read) but not a whole request: a server sending one byte every 5 s, or one header line forever,
never trips a read timeout. So each registry operation runs under a ``Budget``: a wall-clock deadline
covering its retries, redirects, waits and bodies. A timer shuts the operation's socket down at the
deadline, whatever the request is blocked in (connect, headers, body); the connection classes below
attach each socket to the budget of the operation running on their thread.

Every body is read in chunks up to a cap (``read_body``), with the declared Content-Length checked
first. Messages never carry a URL's userinfo or query (a presigned URL's signature) and the
registry's own text is cleaned of control characters and of the client's secrets (``clean``).
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from factory.core.errors import RegistryError, RegistryUnreachable

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """How much of anything one registry may cost us. docs/reliability.md ("Hostile registries") lists them."""

    connect_timeout: float = 10.0  # seconds, each connection (never more than the read timeout)
    read_timeout: float = 30.0  # seconds without a byte (the settings' registry_client.timeout_seconds)
    operation_seconds: float = 300.0  # wall clock for one operation: every retry, redirect, wait and body
    min_rate: float = 1.0 * MiB  # bytes/s a blob transfer is allowed on top of the operation's budget
    max_retry_after: float = 60.0  # seconds: a longer Retry-After is waited this long (if the budget allows)
    max_redirects: int = 5
    max_manifest: int = 4 * MiB  # distribution's own limit for a manifest
    max_page: int = 4 * MiB  # one page of a tag list or the catalog
    max_pages: int = 1000
    max_entries: int = 100_000  # tags (or repositories) over all pages
    max_blob: int = 64 * MiB  # a blob read into memory (get_blob: image configs); streams have their own
    max_token: int = 1 * MiB  # a token service's answer
    max_error_body: int = 64 * 1024  # what is read of an error answer (for the registry's error message)
    max_json_depth: int = 64


# --- the time budget -------------------------------------------------------------------------------

_current = threading.local()  # the budget of the operation running on this thread (read by the connections)


class Budget:
    """The wall-clock deadline of one registry operation, and the timer that enforces it."""

    def __init__(self, what: str, seconds: float) -> None:
        self.what, self.seconds = what, seconds
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def timeouts(self, limits: Limits) -> tuple[float, float]:
        """(connect, read) timeouts for one request: never past the deadline."""
        left = max(self.remaining(), 0.001)
        read = min(limits.read_timeout, left)
        return min(limits.connect_timeout, read), read

    def check(self) -> None:
        if self.expired or self.remaining() <= 0:
            self.expired = True
            raise self.error()

    def error(self) -> RegistryUnreachable:
        return RegistryUnreachable(f"{self.what}: timed out: not done within its time budget of {self.seconds:g} s",
                                   hint="the registry is too slow or does not finish its answers; try again later")

    def attach(self, sock: socket.socket | None) -> None:
        """The socket a request of this operation uses: shut down when the deadline passes."""
        if sock is None:
            return
        with self._lock:
            if self.expired:
                _shutdown(sock)
            elif sock not in self._sockets:
                self._sockets.append(sock)

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    @contextmanager
    def armed(self) -> Iterator[Budget]:
        """The timer runs while this lasts (for a stream: until the stream is closed)."""
        self._timer = threading.Timer(max(self.remaining(), 0), self._fire)
        self._timer.daemon = True
        self._timer.start()
        try:
            yield self
        finally:
            self._timer.cancel()

    @contextmanager
    def current(self) -> Iterator[Budget]:
        """Requests made on this thread while this lasts belong to this operation."""
        outer = getattr(_current, "budget", None)
        _current.budget = self
        try:
            yield self
        finally:
            _current.budget = outer


def current_budget() -> Budget | None:
    budget: Budget | None = getattr(_current, "budget", None)
    return budget


def _shutdown(sock: socket.socket) -> None:
    # shutdown, not close: it wakes a thread blocked in recv on this socket (already closed: none is)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _attach_current(sock: socket.socket | None) -> None:
    budget = current_budget()
    if budget is not None:
        budget.attach(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _attach_current(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_current(self.sock)  # a connection reused from the pool
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _attach_current(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_current(self.sock)
        super().request(*args, **kwargs)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _Pool, "https": _TLSPool}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter with connections whose sockets the running operation's budget can shut down."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager


# --- exceptions ------------------------------------------------------------------------------------

# What the transport may raise besides our own errors: requests' and urllib3's errors, http.client's
# (a header line too long, too many headers), sockets'. A ValueError comes from urllib3's URL and
# header parsing (a port of 99999, a header that is not latin-1).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError,
    OverflowError)  # OverflowError: http.client reading a Content-Length beyond ssize_t
# Worth another try: the connection failed, timed out or broke off.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError, urllib3.exceptions.TimeoutError, http.client.HTTPException, OSError)


def reason(e: BaseException) -> str:
    """The innermost message of a wrapped transport error, without object addresses or URL queries."""
    inner: BaseException = e
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    text = str(getattr(inner, "reason", None) or inner) or type(inner).__name__
    text = re.sub(r"<[\w.]+ object at 0x[0-9a-f]+>:?\s*", "", text)
    text = re.sub(r"\b\w*Connection(?:Pool)?\(host=[^)]*\):\s*", "", text)  # the URL says where
    return re.sub(r"\?\S*", "?...", text)


# --- URLs ------------------------------------------------------------------------------------------

def shown_url(url: str) -> str:
    """A URL as messages and logs show it: no userinfo, no query (a presigned URL's signature)."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "(a malformed URL)"
    return clean(f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path, (), limit=300)


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def redirect_target(current: str, location: str | None) -> str:
    """Where a redirect leads, or ValueError: only http(s), never from https down to http."""
    if not location:
        raise ValueError("a redirect without a Location header")
    target = urljoin(current, location.strip())
    scheme = urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"a redirect to a {scheme or 'relative'}: URL (only http and https are followed)")
    if scheme == "http" and origin(current)[0] == "https":
        raise ValueError("a redirect from https down to plain http")
    return target


# --- headers and bodies ----------------------------------------------------------------------------

def content_length(headers: Mapping[str, str]) -> int | None:
    """The declared body length, None when not declared; ValueError when it is not a plain number."""
    text = headers.get("Content-Length")
    if text is None:
        return None
    if not re.fullmatch(r"[0-9]{1,15}", text.strip()):
        raise ValueError(f"the Content-Length header is not a number of bytes ({len(text)} characters)")
    return int(text)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a Retry-After header asks for (a number or an HTTP date), None when absent or unreadable."""
    text = (headers.get("Retry-After") or "").strip()
    if re.fullmatch(r"[0-9]{1,12}", text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    try:
        return max(when.timestamp() - time.time(), 0.0)
    except (OverflowError, OSError, ValueError):
        return None


def read_body(resp: requests.Response, cap: int, budget: Budget, *, strict: bool) -> bytes:
    """At most ``cap`` bytes of a streamed body, in chunks. ``strict``: more than ``cap`` (declared or
    sent) is an error; otherwise what is past the cap is dropped with the connection."""
    try:
        declared = content_length(resp.headers)
    except ValueError:
        if strict:
            raise
        declared = None
    if strict and declared is not None and declared > cap:
        raise ValueError(f"the answer declares {declared} bytes, more than the {cap} allowed")
    chunks: list[bytes] = []
    got = 0
    while got <= cap:
        budget.check()
        data = resp.raw.read(min(64 * 1024, cap + 1 - got), decode_content=True)
        if budget.expired:  # the timer shut the socket: what came is cut short
            raise budget.error()
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        got += len(data)
    resp.close()  # past the cap: the rest is never read
    if strict:
        raise ValueError(f"the answer is longer than the {cap} bytes allowed")
    return b"".join(chunks)[:cap]


# --- text the registry wrote -----------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean(text: str, secrets: Iterable[str], *, limit: int = 300) -> str:
    """Text from a registry (or holding what it sent) fit for a message: the client's secrets replaced,
    control and bidi characters dropped, at most ``limit`` characters."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _CONTROL.sub("", text)
    return text if len(text) <= limit else text[:limit] + "..."


def transport_error(e: BaseException, budget: Budget, *, method: str, url: str, secrets: Iterable[str],
                    doing: str = "not reachable") -> RegistryError:
    """The factory's error for a transport failure: the budget's when it ran out, else ``doing``.
    A socket timeout at the deadline (the last read timeout is what was left of the budget) is the
    budget running out too, whichever of the two fired first."""
    if budget.expired or budget.remaining() < 0.1:
        budget.expired = True
        return budget.error()
    return RegistryUnreachable(f"{doing}: {clean(reason(e), secrets)}", method=method, url=shown_url(url),
                               hint="check the registry address and that it is running")
