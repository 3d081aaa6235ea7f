"""Hypothesis drives the registry client against an in-process server (tests/unit/misbehaving_registry.py)
answering random status codes, headers and bodies: whatever comes back, every public operation returns
or raises the factory's own error, within its time budget, and what it returns holds (a digest is the
digest of the bytes, a manifest parses, drift's digest is sha256:<64 hex>)."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import BinaryIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory.core.errors import FactoryError
from factory.oci.registry import Registry, platform_digests
from factory.oci.wire import Limits
from factory.ops import drift
from tests.unit.misbehaving_registry import Request, digest, serve

LIMITS = Limits(connect_timeout=0.5, read_timeout=0.5, operation_seconds=1.0, max_pages=5, max_entries=50,
                max_retry_after=0.05, max_manifest=64 * 1024, max_page=64 * 1024, max_blob=64 * 1024)
SHA = "sha256:" + "a" * 64
OCI = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


# --- what the server answers -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
descriptors = st.fixed_dictionaries({}, optional={
    "mediaType": st.sampled_from([OCI, INDEX, "x"]) | json_values,
    "digest": st.sampled_from([SHA, "sha256:zz", "md5:1"]) | json_values,
    "size": st.integers(-5, 2**60) | json_values,
    "platform": st.fixed_dictionaries({}, optional={"os": st.sampled_from(["linux", "unknown"]) | json_values,
                                                    "architecture": st.just("amd64") | json_values}) | json_values,
    "annotations": st.dictionaries(st.text(max_size=5), st.text(max_size=5) | json_values, max_size=2) | json_values,
})
documents = st.fixed_dictionaries({}, optional={
    "schemaVersion": st.just(2) | json_values,
    "mediaType": st.sampled_from([OCI, INDEX]) | json_values,
    "config": descriptors | json_values,
    "layers": st.lists(descriptors, max_size=3) | json_values,
    "manifests": st.lists(descriptors, max_size=3) | json_values,
    "tags": st.lists(st.text(max_size=8), max_size=5) | json_values,
    "repositories": st.lists(st.text(max_size=8), max_size=5) | json_values,
    "token": st.text(max_size=30) | json_values,
    "access_token": st.text(max_size=30) | json_values,
    "errors": st.lists(st.fixed_dictionaries({}, optional={"code": json_values, "message": json_values}),
                       max_size=2) | json_values,
    "os": st.just("linux") | json_values,
    "architecture": st.just("amd64") | json_values,
})
bodies = st.one_of(
    st.binary(max_size=300),
    documents.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from([b"", b"{", b"\xff\xfe", b"[" * 100_000]),
)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=40)
MAYBE = {
    "Content-Type": st.sampled_from([OCI, INDEX, "application/json", "text/html", "", f"{INDEX}; charset=utf-8"]),
    "Content-Length": st.sampled_from(["abc", "-1", "1, 2", "", " 5", "99999999999999999999"])
                      | st.integers(0, 10**9).map(str),
    "Docker-Content-Digest": st.sampled_from(["MATCH", SHA, "sha256:../x", "sha256:" + "A" * 64]) | header_text,
    "Link": st.sampled_from(['</v2/x/y/tags/list?last=a>; rel="next"', '<http://elsewhere.example/x>; rel="next"',
                             "<>; rel=next", '<file:///etc/passwd>; rel="next"']) | header_text,
    "Location": st.sampled_from(["/v2/x/y/manifests/latest", "file:///etc/passwd", "http://127.0.0.1:1/x", "//h",
                                 "/v2/x/y/blobs/uploads/u", "http://[::1"]) | header_text,
    "Retry-After": st.sampled_from(["0", "1", "999999", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "1e9"]) | header_text,
    "WWW-Authenticate": st.sampled_from(['Bearer realm="http://HOST/token",service="s"', 'Basic realm="x"',
                                         "Negotiate", 'Bearer realm="file:///etc/passwd"', "Bearer",
                                         'Bearer realm="http://HOST/token",scope="repository:x/y:pull"'])
                        | header_text,
    "Transfer-Encoding": st.just("chunked"),
    "Content-Encoding": st.sampled_from(["gzip", "deflate", "br", "identity"]),
}
answers = st.fixed_dictionaries({
    # 200 half the time: the paths that parse a body are where most can go wrong
    "status": st.just(200) | st.just(200) | st.sampled_from([201, 202, 204, 301, 302, 307, 308, 400, 401, 403, 404,
                                                              429, 500, 503]) | st.integers(100, 599),
    "headers": st.dictionaries(st.sampled_from(sorted(MAYBE)), st.none(), max_size=5).flatmap(
        lambda keys: st.fixed_dictionaries({k: MAYBE[k] for k in keys})),
    "body": bodies,
})


class Script:
    """The answers of the current example, given in turn to the requests it makes."""

    def __init__(self) -> None:
        self.answers: list[dict] = []
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self, req: Request, out: BinaryIO) -> None:
        with self.lock:
            spec = self.answers[self.n % len(self.answers)] if self.answers else {"status": 404, "headers": {},
                                                                                 "body": b""}
            self.n += 1
        body = spec["body"]
        head = [f"HTTP/1.1 {spec['status']} X"]
        for k, v in spec["headers"].items():
            head.append(f"{k}: {digest(body) if v == 'MATCH' else v.replace('HOST', req.host)}")
        if "Content-Length" not in spec["headers"]:
            head.append(f"Content-Length: {len(body)}")
        head.append("Connection: close")
        out.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (b"" if req.method == "HEAD" else body))
        out.flush()


@pytest.fixture(scope="module")
def server():
    script = Script()
    with serve(script) as s:
        yield s, script


def _drift(r: Registry) -> object:
    found = drift.current_digest(r, "x/y", "latest", SHA)
    assert found is None or re.fullmatch(r"sha256:[0-9a-f]{64}", found)
    return found


def _manifest(r: Registry) -> object:
    raw, _, found = r.get_manifest("x/y", "latest")
    assert digest(raw) == found and isinstance(json.loads(raw), dict)
    return found


def _stream(r: Registry) -> bytes:
    with r.open_blob("x/y", SHA, max_bytes=1000) as f:
        return f.read()


OPERATIONS = {
    "ping": lambda r: r.ping(),
    "head_manifest": lambda r: r.head_manifest("x/y", "latest"),
    "get_manifest": _manifest,
    "get_blob": lambda r: r.get_blob("x/y", SHA),
    "open_blob": _stream,
    "blob_exists": lambda r: r.blob_exists("x/y", SHA),
    "list_tags": lambda r: r.list_tags("x/y", page_size=2),
    "catalog": lambda r: r.catalog(),
    "platforms": lambda r: r.platforms("x/y", "latest"),
    "labels": lambda r: r.labels("x/y", "latest"),
    "platform_digests": lambda r: platform_digests(r, "x/y", "latest"),
    "put_manifest": lambda r: r.put_manifest("x/y", "latest", b"{}", OCI),
    "push_blob": lambda r: r.push_blob("x/y", digest(b"blob"), b"blob"),
    "tag": lambda r: r.tag("x/y", digest(b"{}"), "v1", expect_absent=True),
    "delete_manifest": lambda r: r.delete_manifest("x/y", SHA),
    "drift": _drift,
}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(operation=st.sampled_from(sorted(OPERATIONS)), script=st.lists(answers, min_size=1, max_size=4))
def test_whatever_the_registry_answers_only_factory_errors_come_out(server, operation, script):
    s, state = server
    state.answers, state.n = script, 0
    started = time.monotonic()
    with Registry(s.host, insecure=True, retries=1, backoff=0.001, limits=LIMITS) as r:
        try:
            OPERATIONS[operation](r)
        except FactoryError as e:
            assert str(e)  # a message, and nothing else escapes: any other exception fails the test
    # one operation's budget, and a little for the nested reads of labels/platforms that share it
    assert time.monotonic() - started < LIMITS.operation_seconds + 1.5
