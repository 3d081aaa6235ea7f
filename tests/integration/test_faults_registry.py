"""The target registry answers 503 and 429 for a while, or for good: a publish through a fault proxy in
front of a private registry. Bounded retries with backoff ride out a bad spell, in the factory's own
client and in cosign (which does not retry the registry's /v2/ ping itself); past the limit the
publish stops with a clear error naming the step, the request and the registry's answer."""

from __future__ import annotations

import collections
import contextlib
import re
import time

import pytest
import requests

from tests.integration.registry_servers import FaultProxy, own_registry, serve
from tests.integration.test_publish import cosign
from tests.integration.workspace import Workspace, manifest_on

RETRIES = 2  # few and fast: the defaults (5, 0.5 s doubling) would make each failing test wait 15 s


@contextlib.contextmanager
def behind_proxy(tmp_path, settings, seeded_debian, rule):
    (tmp_path / "reg").mkdir()
    with own_registry(tmp_path / "reg") as registry:
        proxy = FaultProxy(registry, rule=rule)
        with serve(proxy.handler()) as host:
            ws = Workspace.create(tmp_path / "repo", registry=host, state_dir=settings.state_dir, extra_config={
                "helper_image": seeded_debian.ref, "insecure_registries": [host, settings.registry],
                "registry_client": {"retries": RETRIES, "backoff_seconds": 0.2}})
            yield ws, proxy


class BadSpells:
    """503 to the first 2 requests once the push starts (the factory's client), then 429 with
    Retry-After to the first 2 once cosign starts (its /v2/ ping; the factory never pings)."""

    def __init__(self) -> None:
        self.left = {"push": 2, "cosign": 2}
        self.started: set[str] = set()

    def __call__(self, method: str, path: str, n: int):
        if method == "POST" and "/blobs/uploads/" in path:
            self.started.add("push")
        if method == "GET" and path == "/v2/":
            self.started.add("cosign")
        for phase, answer in (("push", (503, {})), ("cosign", (429, {"Retry-After": "1"}))):
            if phase in self.started and self.left[phase]:
                self.left[phase] -= 1
                return answer
        return None


def statuses(proxy) -> collections.Counter:
    return collections.Counter(status for _, _, status in proxy.seen)


def test_a_bad_spell_of_503_and_429_is_ridden_out(tmp_path, settings, seeded, seeded_debian, runner):
    with behind_proxy(tmp_path, settings, seeded_debian, BadSpells()) as (ws, proxy):
        ws.add_manifest(manifest_on(seeded["busybox"], "flaky"))
        assert ws.factory("render").returncode == 0
        ws.commit()
        proc = ws.factory("publish", "flaky")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (statuses(proxy)[503], statuses(proxy)[429]) == (2, 2)  # the faults were served
        assert proc.stderr.count("cosign met a transient registry error; trying again") == 2
        tags = ws.tags()
        assert set(tags) == {"flaky-v1.0.0", "flaky-v1.0", "flaky-v1", "flaky"} and len(set(tags.values())) == 1
        index = tags["flaky"]
        for args in (("verify",), ("verify-attestation", "--type", "slsaprovenance1")):
            out = cosign(runner, settings, *args, ws.ref(index))
            assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(("name", "rule", "step", "words"), [
    ("down", lambda method, path, n: (503, {}), "fingerprint",
     [re.compile(r"GET http://127\.0\.0\.1:\d+/v2/\S+/tags/list: HTTP 503: UNAVAILABLE: injected "
                 rf"\(after {RETRIES} retries with backoff\)")]),
    ("throttled", lambda method, path, n: (429, {"Retry-After": "0"}) if path == "/v2/" else None, "sign",
     [re.compile(r"`cosign sign .*` exited 1"), re.compile(r"GET http://127\.0\.0\.1:\d+/v2/: UNAVAILABLE"),
      re.compile(rf"the registry kept failing \(tried {1 + RETRIES} times\)")]),
], ids=["503-for-good", "cosign-429-for-good"])
def test_past_the_retry_limit_the_publish_stops_with_a_clear_error(tmp_path, settings, seeded, seeded_debian,
                                                                   name, rule, step, words):
    with behind_proxy(tmp_path, settings, seeded_debian, rule) as (ws, proxy):
        ws.add_manifest(manifest_on(seeded["busybox"], name))
        assert ws.factory("render").returncode == 0
        ws.commit()
        started = time.monotonic()
        proc = ws.factory("publish", name)
        assert time.monotonic() - started < 120  # bounded: a few retries, not a hang
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"{name}: failed at {step}" in proc.stderr
        for pattern in words:
            assert pattern.search(proc.stderr), (pattern.pattern, proc.stderr)
        if step == "sign":  # cosign itself was run 1 + RETRIES times, each stopped at its ping
            assert [p for m, p, _ in proxy.seen if m == "GET" and p == "/v2/"] == ["/v2/"] * (1 + RETRIES)
        else:  # the factory's client sent the request 1 + RETRIES times, then gave up
            assert len(proxy.seen) == 1 + RETRIES
        assert "Traceback" not in proc.stderr
        # Nothing was tagged (read from the registry itself, not through the proxy)
        resp = requests.get(f"http://{proxy.upstream}/v2/{ws.repository}/tags/list", timeout=10)
        assert resp.status_code == 404 or not [t for t in resp.json()["tags"] if not t.startswith("sha256-")]
