"""The registry client against a registry that misbehaves (tests/unit/misbehaving_registry.py: 127.0.0.1,
threads of this process): one case per misbehaviour of issue 15, each with its outcome and a bound on
its wall time. The client runs with small budgets (``LIMITS``) so that the time-outs come in seconds."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import BinaryIO

import pytest

from factory.core.errors import (
    ConfigError,
    EnvironmentProblem,
    FactoryError,
    RegistryAuthError,
    RegistryError,
    RegistryUnreachable,
)
from factory.oci.registry import Credentials, Registry, ping
from factory.oci.wire import Limits
from factory.ops import drift
from factory.spec import config, manifest
from tests.unit.catalog_fakes import settings as make_settings
from tests.unit.misbehaving_registry import (
    Request,
    answer,
    digest,
    free_closed_port,
    json_answer,
    serve,
    until,
)

LIMITS = Limits(connect_timeout=1, read_timeout=1, operation_seconds=1.5, max_pages=50, max_entries=1000,
                max_retry_after=60)
BOUND = 10.0  # seconds: no case may take longer than this (the hangs took minutes or forever)
OCI = "application/vnd.oci.image.manifest.v1+json"
CONFIG = json.dumps({"os": "linux", "architecture": "amd64", "config": {"Labels": {"a": "b"}}}).encode()
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": digest(CONFIG), "size": len(CONFIG)},
                       "layers": []}).encode()
OTHER = "sha256:" + "e" * 64


def client(host: str, **kw) -> Registry:
    return Registry(host, insecure=True, retries=kw.pop("retries", 1), backoff=0.01, limits=kw.pop("limits", LIMITS),
                    **kw)


def outcome(call: Callable[[], object]) -> tuple[FactoryError | None, float]:
    """(the factory error raised, or None; seconds taken). Anything but a FactoryError fails the test."""
    started = time.monotonic()
    try:
        call()
    except FactoryError as e:
        return e, time.monotonic() - started
    return None, time.monotonic() - started


def manifest_server(body: bytes, headers: dict[str, str] | None = None) -> Callable[[Request, BinaryIO], None]:
    def behaviour(req: Request, out: BinaryIO) -> None:
        answer(out, 200, {"Content-Type": OCI, "Docker-Content-Digest": digest(body), **(headers or {})},
               b"" if req.method == "HEAD" else body)
    return behaviour


# --- hangs -----------------------------------------------------------------------------------------

def test_an_endless_chunked_manifest_is_cut_at_the_manifest_limit():
    def endless(req: Request, out: BinaryIO) -> None:
        out.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + OCI.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"[" * 65536
        more = until(12)
        while more():
            out.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    with serve(endless) as s, client(s.host) as r:
        error, took = outcome(lambda: r.get_manifest("x/y", "latest"))
    assert isinstance(error, RegistryError) and "longer than the 4194304 bytes allowed" in str(error)
    assert took < BOUND


@pytest.mark.parametrize("where", ["body", "headers"])
def test_one_byte_every_5_seconds_times_out_within_the_budget(where):
    def trickle(req: Request, out: BinaryIO) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: " + OCI.encode() + b"\r\n\r\n"
        if where == "body":
            out.write(head)
            out.flush()
        more = until(12)
        for byte in (head if where == "headers" else b"{" * 1000):
            if not more():
                return
            out.write(bytes([byte]))
            out.flush()
            time.sleep(5)

    # A read timeout longer than the pause between bytes: only the operation's budget can stop this.
    with serve(trickle) as s, client(s.host, limits=Limits(**{**LIMITS.__dict__, "read_timeout": 10})) as r:
        error, took = outcome(lambda: r.get_manifest("x/y", "latest"))
    assert isinstance(error, RegistryUnreachable) and "timed out" in str(error), (error, took)
    assert "fetch manifest x/y:latest at 127.0.0.1" in str(error) and error.exit_code == 2
    assert took < LIMITS.operation_seconds + 2.5, took  # the timer cut it, not the 5 s pause nor the read timeout


def test_an_endless_rel_next_stops_at_the_page_limit():
    def pages(req: Request, out: BinaryIO) -> None:
        n = int(req.path.rpartition("last=t")[2]) if "last=t" in req.path else 0
        json_answer(out, {"name": "x/y", "tags": [f"t{n}"]},
                    headers={"Link": f'</v2/x/y/tags/list?n=1&last=t{n + 1}>; rel="next"'})

    with serve(pages) as s, client(s.host, limits=Limits(**{**LIMITS.__dict__, "operation_seconds": 8})) as r:
        error, took = outcome(lambda: r.list_tags("x/y"))
        assert len(s.requests) == LIMITS.max_pages
    assert isinstance(error, RegistryError) and "more than 50 pages of tags" in str(error)
    assert took < BOUND


@pytest.mark.parametrize(("link", "words"), [
    ('<http://elsewhere.example/v2/x/y/tags/list?last=a>; rel="next"', "on another host: refused"),
    ('</v2/x/y/tags/list>; rel="next"', "go round in a loop"),
])
def test_pagination_never_leaves_the_registry_nor_goes_round(link, words):
    def page(req: Request, out: BinaryIO) -> None:
        json_answer(out, {"tags": ["a"]}, headers={"Link": link})

    with serve(page) as s, client(s.host) as r:
        error, took = outcome(lambda: r.list_tags("x/y"))
    assert isinstance(error, RegistryError) and words in str(error) and took < BOUND


def test_retry_after_999999_gives_up_at_once_instead_of_waiting():
    def throttled(req: Request, out: BinaryIO) -> None:
        json_answer(out, {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}, 429,
                    {"Retry-After": "999999"})

    with serve(throttled) as s, client(s.host, retries=5) as r:
        error, took = outcome(lambda: r.get_manifest("x/y", "latest"))
        assert len(s.requests) == 1
    assert isinstance(error, RegistryError) and error.status == 429
    assert "asked to wait 999999 s" in str(error) and "TOOMANYREQUESTS: slow down" in str(error)
    assert took < 2


def test_retries_never_sleep_past_the_budget():
    with serve(lambda req, out: answer(out, 503, {"Retry-After": "1"})) as s, client(s.host, retries=20) as r:
        error, took = outcome(lambda: r.get_manifest("x/y", "latest"))
    assert isinstance(error, RegistryError) and error.status == 503
    assert took < LIMITS.operation_seconds + 0.5 and len(s.requests) == 2  # slept 1 s once, then out of budget


def test_a_closed_port_with_many_retries_stays_within_the_budget():
    r = Registry(f"127.0.0.1:{free_closed_port()}", insecure=True, retries=20, backoff=60, limits=LIMITS)
    error, took = outcome(r.ping)
    assert isinstance(error, RegistryUnreachable) and "not reachable" in str(error)
    assert took < LIMITS.operation_seconds + 0.5


# --- crashes ---------------------------------------------------------------------------------------

def test_a_short_body_is_a_broken_answer():
    def short(req: Request, out: BinaryIO) -> None:
        answer(out, 200, {"Content-Type": OCI, "Content-Length": "100"}, b'{"schemaVersion": 2')

    with serve(short) as s, client(s.host) as r:
        error, took = outcome(lambda: r.get_manifest("x/y", "latest"))
    assert isinstance(error, RegistryUnreachable) and "broke off" in str(error) and took < BOUND


@pytest.mark.parametrize(("body", "words"), [
    (b'{"schemaVersion": 2,', "not valid JSON"),
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b"[]", "the manifest is a list, expected a JSON object"),
    (b'{"manifests": {"a": 1}}', "manifests is an object, expected a list"),
    (b'{"config": [], "layers": []}', "config is a list, expected a JSON object"),
    (b'{"config": {"digest": 5, "size": 1}}', "config.digest is not a digest"),
    (b'{"manifests": [{"digest": "sha256:' + b"a" * 64 + b'", "size": 1, "platform": "linux"}]}',
     "manifests[0].platform is a string"),
    (b"[" * 100_000 + b"]" * 100_000, "nests deeper than 64 levels"),
    (b'{"schemaVersion": 2, "n": ' + b"9" * 5000 + b"}", "not valid JSON"),
])
def test_a_manifest_that_is_not_a_manifest_is_refused(body, words):
    with serve(manifest_server(body)) as s, client(s.host) as r:
        error, took = outcome(lambda: r.get_manifest("x/y", "latest"))
    assert isinstance(error, RegistryError) and words in str(error), error
    assert took < BOUND


def test_an_image_config_of_the_wrong_shape_is_refused():
    config_blob = json.dumps({"config": ["not", "an", "object"]}).encode()
    body = MANIFEST.replace(digest(CONFIG).encode(), digest(config_blob).encode())

    def registry(req: Request, out: BinaryIO) -> None:
        if "/blobs/" in req.path:
            answer(out, 200, {}, config_blob)
        else:
            manifest_server(body)(req, out)

    with serve(registry) as s, client(s.host) as r:
        error, _ = outcome(lambda: r.labels("x/y", "latest"))
    assert isinstance(error, RegistryError) and "config is a list, expected a JSON object" in str(error)


def test_a_redirect_loop_is_refused():
    def loop(req: Request, out: BinaryIO) -> None:
        answer(out, 302, {"Location": "/b" if req.path.startswith("/a") or "manifests" in req.path else "/a"})

    with serve(loop) as s, client(s.host) as r:
        error, took = outcome(lambda: r.get_manifest("x/y", "latest"))
        assert len(s.requests) == 3  # manifests -> /a -> /b -> /a: stopped before asking again
    assert isinstance(error, RegistryError) and "redirect loop" in str(error) and took < BOUND


def test_redirects_are_bounded():
    with serve(lambda req, out: answer(out, 307, {"Location": f"/hop{req.path}x"})) as s, client(s.host) as r:
        error, _ = outcome(lambda: r.get_manifest("x/y", "latest"))
    assert isinstance(error, RegistryError) and "more than 5 redirects" in str(error)


@pytest.mark.parametrize(("location", "words"), [
    ("file:///etc/passwd", "a redirect to a file: URL"),
    ("gopher://127.0.0.1/x", "a redirect to a gopher: URL"),
    ("", "a redirect without a Location header"),
])
def test_a_redirect_out_of_http_is_refused(location, words):
    with serve(lambda req, out: answer(out, 302, {"Location": location} if location else {})) as s, \
            client(s.host) as r:
        error, _ = outcome(lambda: r.get_blob("x/y", OTHER))
    assert isinstance(error, RegistryError) and words in str(error)
    assert "/etc/passwd" not in str(error)


def test_a_token_endpoint_answering_a_list_is_an_auth_error():
    def registry(req: Request, out: BinaryIO) -> None:
        if req.path.startswith("/token"):
            json_answer(out, ["not", "a", "token"])
        else:
            answer(out, 401, {"WWW-Authenticate": f'Bearer realm="http://{req.host}/token",service="t"'})

    with serve(registry) as s, client(s.host) as r:
        error, _ = outcome(r.ping)
    assert isinstance(error, RegistryAuthError) and error.exit_code == 2
    assert "answer is a list, expected a JSON object" in str(error)


@pytest.mark.parametrize("method", ["head", "get"])
def test_a_content_length_that_is_not_a_number_is_refused(method):
    with serve(manifest_server(MANIFEST, {"Content-Length": "12abc"})) as s, client(s.host) as r:
        call = r.head_manifest if method == "head" else r.get_manifest
        error, _ = outcome(lambda: call("x/y", "latest"))
    assert isinstance(error, RegistryError) and "Content-Length header is not a number" in str(error)


def test_a_content_length_past_the_limit_is_refused_before_reading():
    with serve(manifest_server(MANIFEST, {"Content-Length": str(10 << 30)})) as s, client(s.host) as r:
        error, took = outcome(lambda: r.get_manifest("x/y", "latest"))
    assert isinstance(error, RegistryError) and "declares 10737418240 bytes" in str(error) and took < BOUND


def test_a_wrong_docker_content_digest_is_a_mismatch():
    with serve(manifest_server(MANIFEST, {"Docker-Content-Digest": OTHER})) as s, client(s.host) as r:
        error, _ = outcome(lambda: r.get_manifest("x/y", "latest"))
    assert isinstance(error, RegistryError) and f"expected {OTHER}" in str(error)


def test_a_port_of_99999_is_a_clear_error():
    error, _ = outcome(lambda: Registry("127.0.0.1:99999", insecure=True).ping())
    assert isinstance(error, RegistryError) and "127.0.0.1:99999" in str(error)
    assert ping("127.0.0.1:99999", insecure=True, timeout=0.5) is not None  # doctor's probe says so, no crash


# --- blobs: digests on every path ------------------------------------------------------------------

def test_a_streamed_blob_is_checked_against_its_digest_at_the_end():
    with serve(lambda req, out: answer(out, 200, {}, b"not what was asked")) as s, client(s.host) as r:
        def read_all():
            with r.open_blob("x/y", OTHER, max_bytes=1000) as f:
                f.read()
        error, _ = outcome(read_all)
    assert isinstance(error, RegistryError) and f"does not match {OTHER}" in str(error)


def test_a_streamed_blob_longer_than_declared_is_cut():
    body = b"x" * 5000
    with serve(lambda req, out: answer(out, 200, {}, body, length=False)) as s, client(s.host) as r:
        def read_all():
            with r.open_blob("x/y", digest(body), max_bytes=1000) as f:
                f.read()
        error, _ = outcome(read_all)
    assert isinstance(error, RegistryError) and "longer than the 1000 bytes expected" in str(error)


def test_a_streamed_blob_that_trickles_times_out():
    def trickle(req: Request, out: BinaryIO) -> None:
        out.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        more = until(12)
        while more():
            out.write(b"x")
            out.flush()
            time.sleep(0.5)

    with serve(trickle) as s, client(s.host) as r:
        def read_all():
            with r.open_blob("x/y", OTHER, max_bytes=100) as f:
                f.read()
        error, took = outcome(read_all)
    assert isinstance(error, RegistryUnreachable) and "timed out" in str(error) and took < BOUND


def test_a_good_blob_streams_through():
    with serve(lambda req, out: answer(out, 200, {}, CONFIG)) as s, client(s.host) as r, \
            r.open_blob("x/y", digest(CONFIG), max_bytes=len(CONFIG)) as f:
        assert f.read() == CONFIG


# --- secrets ---------------------------------------------------------------------------------------

def test_a_registry_echoing_our_credentials_does_not_get_them_printed():
    def echo(req: Request, out: BinaryIO) -> None:
        sent = req.headers.get("authorization")
        if not sent:
            answer(out, 401, {"WWW-Authenticate": 'Basic realm="r"'})
        else:
            json_answer(out, {"errors": [{"code": "DENIED", "message": f"bad: {sent}"}]}, 403)

    with serve(echo) as s, client(s.host, auth=Credentials("robot", "hunter2-secret")) as r:
        error, _ = outcome(lambda: r.get_manifest("x/y", "latest"))
    assert isinstance(error, RegistryAuthError) and "DENIED: bad: Basic ***" in str(error)
    assert "hunter2" not in str(error) and "cm9ib3Q6aHVudGVyMi1zZWNyZXQ=" not in str(error)


def test_factory_registry_with_a_password_is_refused_without_echoing_it(tmp_path):
    (tmp_path / "factory.yaml").write_text("")
    with pytest.raises(ConfigError) as e:
        config.load(tmp_path / "factory.yaml", environ={"FACTORY_REGISTRY": "robot:s3cr3t-pw@registry.example"})
    assert "s3cr3t" not in str(e.value) and "FACTORY_REGISTRY" in str(e.value)
    error, _ = outcome(lambda: Registry("robot:s3cr3t-pw@registry.example"))
    assert isinstance(error, RegistryError) and "s3cr3t" not in str(error)


# --- drift: only verified digests are written ------------------------------------------------------

PINNED = "sha256:" + "1" * 64


def drift_world(tmp_path, host: str):
    text = f"""\
apiVersion: factory/v1
name: up
version: "1.0"
description: an upstream on a misbehaving registry
upstream: {{image: {host}/upstream/x, tag: "1.0", digest: "{PINNED}"}}
distro: debian
release: "12"
eol: "2027-03-31"
"""
    s = make_settings(tmp_path, {"up": text})
    path = s.manifests_dir / "up.yaml"
    return manifest.load_all(s), path, path.read_text()


@pytest.mark.parametrize(("headers", "words"), [
    ({"Docker-Content-Digest": "sha256:../../etc/passwd"}, "malformed Docker-Content-Digest"),
    ({"Docker-Content-Digest": "sha256:" + "A" * 64}, "malformed Docker-Content-Digest"),
    ({"Docker-Content-Digest": OTHER}, f"expected {OTHER}"),  # the HEAD's digest, not the bytes'
])
def test_drift_update_never_writes_a_digest_it_did_not_verify(tmp_path, headers, words):
    with serve(manifest_server(MANIFEST, headers)) as s:
        manifests, path, before = drift_world(tmp_path, s.host)
        with pytest.raises(EnvironmentProblem) as e:
            drift.run(manifests, client, update=True)
    assert words in str(e.value) and "up (" in str(e.value)
    assert path.read_text() == before


def test_drift_update_writes_the_digest_of_the_bytes(tmp_path):
    with serve(manifest_server(MANIFEST)) as s:
        manifests, path, before = drift_world(tmp_path, s.host)
        result = drift.run(manifests, client, update=True)
        assert [m for m, p in ((r.method, r.path) for r in s.requests) if "manifests" in p] == ["HEAD", "GET"]
    assert [d.current for d in result.updated] == [digest(MANIFEST)]
    assert path.read_text() == before.replace(PINNED, digest(MANIFEST))


def test_drift_on_a_port_of_99999_is_an_error_not_a_crash(tmp_path):
    manifests, path, before = drift_world(tmp_path, "127.0.0.1:99999")
    with pytest.raises(EnvironmentProblem, match="could not be looked up"):
        drift.run(manifests, client, update=True)
    assert path.read_text() == before


def test_update_manifest_refuses_a_malformed_digest(tmp_path):
    manifests, path, before = drift_world(tmp_path, "127.0.0.1:5000")
    with pytest.raises(FactoryError, match="not sha256"):
        drift.update_manifest(manifests["up"], "sha256:zz\nRUN evil")
    assert path.read_text() == before
