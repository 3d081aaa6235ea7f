"""A registry that misbehaves on purpose: a raw HTTP/1.1 server on 127.0.0.1, in threads of the test process.

``serve(behaviour)`` runs it on a free port and yields host:port. ``behaviour(request, out)`` sees the
parsed request and writes whatever it likes to ``out`` (a socket file): a well-formed answer through
``answer(...)``, or bytes no registry should send. Every connection is closed after one answer, and
every handler is bounded in time (``HANDLER_SECONDS``): a behaviour that sends forever stops when the
client hangs up or when that time is up, so no test can leave a thread behind for long.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from typing import BinaryIO

HANDLER_SECONDS = 15.0


@dataclass
class Request:
    method: str
    path: str  # with the query
    headers: dict[str, str]  # names in lower case
    body: bytes = b""
    host: str = ""  # host:port of this server, for absolute URLs in answers


Behaviour = Callable[[Request, BinaryIO], None]


@dataclass
class Server:
    host: str
    requests: list[Request] = field(default_factory=list)


def digest(data: bytes) -> str:
    return "sha256:" + sha256(data).hexdigest()


def answer(out: BinaryIO, status: int, headers: dict[str, str] | None = None, body: bytes = b"", *,
           length: bool = True) -> None:
    """A complete answer; ``length`` False leaves Content-Length out (the body then ends at close)."""
    head = [f"HTTP/1.1 {status} X"]
    given = {k.lower() for k in (headers or {})}
    for k, v in (headers or {}).items():
        head.append(f"{k}: {v}")
    if length and "content-length" not in given:
        head.append(f"Content-Length: {len(body)}")
    head.append("Connection: close")
    out.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    out.flush()


def json_answer(out: BinaryIO, doc: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(doc).encode()
    answer(out, status, {"Content-Type": "application/json", **(headers or {})}, body)


def until(seconds: float) -> Callable[[], bool]:
    """A predicate that holds for ``seconds`` (and never longer than the handler's bound)."""
    stop = time.monotonic() + min(seconds, HANDLER_SECONDS)
    return lambda: time.monotonic() < stop


class _Handler(socketserver.StreamRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        self.connection.settimeout(HANDLER_SECONDS)
        try:
            request = self._read()
        except (OSError, ValueError):
            return
        if request is None:
            return
        self.server.record(request)
        with contextlib.suppress(OSError):  # the client hung up (as the tests make it do)
            self.server.behaviour(request, self.wfile)  # type: ignore[arg-type]

    def _read(self) -> Request | None:
        line = self.rfile.readline(65537).decode("latin-1").strip()
        if not line:
            return None
        method, path, _ = line.split(" ", 2)
        headers: dict[str, str] = {}
        for _ in range(200):
            raw = self.rfile.readline(65537).decode("latin-1")
            if raw in ("\r\n", "\n", ""):
                break
            name, _, value = raw.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        body = self.rfile.read(min(length, 64 << 20)) if length else b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = _read_chunked(self.rfile)
        return Request(method, path, headers, body, host=self.server.host)


def _read_chunked(f: BinaryIO) -> bytes:
    parts = []
    while True:
        size = int(f.readline(100).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            f.readline(100)
            return b"".join(parts)
        parts.append(f.read(size))
        f.readline(100)


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour: Behaviour, record: Callable[[Request], None]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour
        self.record = record
        self.host = f"127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a behaviour that broke off on purpose is not news


@contextlib.contextmanager
def serve(behaviour: Behaviour) -> Iterator[Server]:
    lock = threading.Lock()
    server = Server("")

    def record(request: Request) -> None:
        with lock:
            server.requests.append(request)

    tcp = _TCPServer(behaviour, record)
    server.host = tcp.host
    thread = threading.Thread(target=tcp.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        tcp.shutdown()
        tcp.server_close()
        thread.join(5)


def free_closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
