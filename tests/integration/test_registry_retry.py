"""Retries, backoff and timeouts, through a fault-injecting proxy in front of the real registry."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from factory.core.errors import RegistryError, RegistryUnreachable
from factory.oci.layout import sha256_digest
from factory.oci.registry import Registry
from tests.integration.registry_servers import FaultProxy, serve

UPSTREAM = "127.0.0.1:5000"


def registry(host: str, **kw) -> Registry:
    opts = dict(insecure=True, timeout=10, retries=5, backoff=0.01)
    return Registry(host, **(opts | kw))


def first(n: int, status: int = 503, headers: dict | None = None):
    return lambda method, i: (status, headers or {}) if i <= n else None


def test_recovers_from_503s(tmp_path):
    proxy = FaultProxy(UPSTREAM, first(3))
    with serve(proxy.handler()) as host, registry(host) as r:
        r.ping()
        assert r.requests_made["GET"] == 4  # urllib3's retries are counted too
    assert [status for _, _, status in proxy.seen] == [503, 503, 503, 200]


def test_honours_retry_after_on_429(tmp_path):
    proxy = FaultProxy(UPSTREAM, first(1, 429, {"Retry-After": "1"}))
    with serve(proxy.handler()) as host, registry(host) as r:
        start = time.monotonic()
        assert r.list_tags(f"test/{uuid.uuid4().hex[:12]}") == []
        waited = time.monotonic() - start
    assert waited >= 1.0  # the registry's Retry-After, not the 0.01s backoff
    assert [status for _, _, status in proxy.seen] == [429, 404]


def test_gives_up_after_the_limit(tmp_path):
    proxy = FaultProxy(UPSTREAM, lambda method, i: (503, {}))
    with serve(proxy.handler()) as host, registry(host, retries=2) as r, pytest.raises(RegistryError) as err:
        r.get_manifest("test/x", "latest")
    assert len(proxy.seen) == 3  # the request and 2 retries
    assert err.value.status == 503 and err.value.exit_code == 1
    message = str(err.value)
    assert "HTTP 503" in message and "UNAVAILABLE: injected" in message
    assert "after 2 retries" in message and "/v2/test/x/manifests/latest" in message


def test_upload_retried_with_the_whole_body(tmp_path):
    """A 503 on the upload's POST and on its streamed PUT: the file is rewound and sent again."""
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(3 * 1024 * 1024))
    digest = sha256_digest(blob.read_bytes())
    failed: set[str] = set()

    def fail_first_post_and_put(method: str, i: int):
        if method in ("POST", "PUT") and method not in failed:
            failed.add(method)
            return 503, {}
        return None

    proxy = FaultProxy(UPSTREAM, fail_first_post_and_put)
    repo = f"test/{uuid.uuid4().hex[:12]}"
    with serve(proxy.handler()) as host, registry(host) as r:
        assert r.push_blob(repo, digest, blob) is True
        assert r.requests_made["POST"] == 2 and r.requests_made["PUT"] == 2
    with registry(UPSTREAM) as direct:
        assert direct.get_blob(repo, digest) == blob.read_bytes()


def test_read_timeout_is_retried(tmp_path):
    proxy = FaultProxy(UPSTREAM, lambda method, i: 1.5 if i == 1 else None)
    with serve(proxy.handler()) as host, registry(host, timeout=0.5, retries=2) as r:
        r.ping()
    assert len(proxy.seen) == 2


def test_timeouts_past_the_limit_are_unreachable(tmp_path):
    proxy = FaultProxy(UPSTREAM, lambda method, i: 1.0)
    with serve(proxy.handler()) as host, registry(host, timeout=0.3, retries=1) as r:
        start = time.monotonic()
        with pytest.raises(RegistryUnreachable) as err:
            r.ping()
        assert time.monotonic() - start < 5
    assert err.value.exit_code == 2
    assert "not reachable" in str(err.value) and "timed out" in str(err.value).lower()
