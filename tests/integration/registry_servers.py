"""Real servers for the registry client's integration tests, all on 127.0.0.1 and all bounded.

- ``own_registry``: a private `docker-registry serve` (Debian's distribution) on a free port, with
  fresh storage and optional htpasswd or token auth.
- ``TokenServer``: a tiny token service for distribution's ``auth: token`` (the protocol Docker Hub,
  GHCR, Harbor ... speak): checks Basic credentials and signs JWTs that the real registry verifies.
- ``FaultProxy``: forwards to a real registry, answering 503/429 to the first N requests (or sleeping),
  to exercise retries and timeouts; or, by method and path, dropping connections (a stopped registry).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import bcrypt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_htpasswd(path: Path, users: dict[str, str]) -> None:
    # distribution's htpasswd backend accepts bcrypt only; rounds=4 keeps the tests fast.
    path.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                            for u, p in users.items()))


@contextlib.contextmanager
def own_registry(workdir: Path, auth_yaml: str = "") -> Iterator[str]:
    """Start `docker-registry serve` on a free port with fresh storage; yields host:port."""
    port = free_port()
    config = workdir / "registry.yml"
    config.write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {workdir / "data"}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: {uuid.uuid4().hex}
{auth_yaml}""")
    logfile = (workdir / "registry.log").open("w")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=logfile, stderr=subprocess.STDOUT)
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited {proc.returncode}: "
                                   f"{(workdir / 'registry.log').read_text()}")
            try:
                requests.get(f"http://{host}/v2/", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("docker-registry did not start in 20s") from None
                time.sleep(0.1)
        yield host
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logfile.close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A client that timed out and hung up (the timeout tests do that on purpose) is not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run a stdlib HTTP server in a thread on a free port; yields host:port."""
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues registry bearer tokens (ES256 JWTs with an x5c header) to users with the right password."""

    service = "factory-test-registry"
    issuer = "factory-test-issuer"

    def __init__(self, workdir: Path, users: dict[str, str], token_seconds: int = 300) -> None:
        self.users = users
        self.token_seconds = token_seconds
        self.requests: list[dict[str, str]] = []  # the query of each token request, for assertions
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "factory test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(hours=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.bundle = workdir / "token-root.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def registry_auth_yaml(self, realm_host: str) -> str:
        return f"""auth:
  token:
    realm: http://{realm_host}/token
    service: {self.service}
    issuer: {self.issuer}
    rootcertbundle: {self.bundle}
"""

    def sign(self, subject: str, access: list[dict]) -> str:
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "iat": now, "nbf": now - 1,
                  "exp": now + self.token_seconds, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                outer.requests.append(query)
                user = outer._check(self.headers.get("Authorization", ""))
                if user is None:
                    self._answer(401, {"details": "bad credentials"})
                    return
                access = []
                for scope in filter(None, query.get("scope", "").split(" ")):
                    kind, name, actions = scope.split(":")  # e.g. repository:test/x:pull,push
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
                self._answer(200, {"token": outer.sign(user, access), "expires_in": outer.token_seconds})

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _check(self, authorization: str) -> str | None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user if self.users.get(user) == password else None


DROP = "drop"  # a fault action: close the connection without answering, as a stopped registry does


class FaultProxy:
    """Forwards every request to ``upstream`` except the ones ``fault`` answers itself.

    ``fault(method, n)`` sees the method and the 1-based number of requests so far and returns None
    (forward) or (status, headers) to answer with, or a float to sleep before forwarding, or DROP.
    ``rule(method, path, n)``, when given instead, also sees the path (e.g. a manifest PUT by tag).
    Rules run one at a time (under the proxy's lock): a rule that waits holds up this proxy's other
    requests, which is what the two-machine tests want (each machine has a proxy of its own).
    """

    def __init__(self, upstream: str, fault: Callable[[str, int], tuple[int, dict] | float | str | None] | None = None,
                 *, rule: Callable[[str, str, int], tuple[int, dict] | float | str | None] | None = None) -> None:
        self.upstream = upstream
        self.rule = rule or (lambda method, path, n: fault(method, n))
        self.seen: list[tuple[str, str, int]] = []  # (method, path, status answered)
        self._lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with outer._lock:
                    n = len(outer.seen) + 1
                    action = outer.rule(self.command, self.path, n)
                    outer.seen.append((self.command, self.path, 0))
                if action == DROP:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(action, tuple):
                    status, headers = action
                    self._reply(n, status, {**headers, "Content-Type": "application/json"},
                                json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "injected"}]}).encode(),
                                head=self.command == "HEAD")
                    return
                if isinstance(action, float):
                    time.sleep(action)
                conn = http.client.HTTPConnection(outer.upstream, timeout=30)
                try:
                    # Host stays the proxy's, so that the registry's Location headers point back here.
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    headers = {k: v for k, v in resp.getheaders()
                               if k.lower() not in ("content-length", "transfer-encoding", "connection")}
                    self._reply(n, resp.status, headers, data, head=self.command == "HEAD",
                                length=resp.getheader("Content-Length"))
                finally:
                    conn.close()

            def _reply(self, n: int, status: int, headers: dict, data: bytes, *, head: bool = False,
                       length: str | None = None) -> None:
                with outer._lock:
                    method, path, _ = outer.seen[n - 1]
                    outer.seen[n - 1] = (method, path, status)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", length if head and length is not None else str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        return Handler
