"""`factory prune`'s retention decisions (pure), and its clean refusal when the registry does not
allow deletes (an in-process server answering DELETE as distribution does with deletes disabled)."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from factory.consume import prune
from factory.consume.prune import Candidate
from factory.core.errors import EnvironmentProblem
from factory.core.versioning import Version
from factory.oci.registry import Registry
from factory.spec.config import Retention

NOW = datetime(2026, 12, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=400)


def digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def candidates() -> list[Candidate]:
    versions = [(1, 0, 0), (1, 0, 1), (1, 0, 2), (1, 0, 3), (1, 1, 0), (1, 1, 1), (2, 0, 0), (2, 0, 1), (2, 0, 2)]
    out = []
    for n, v in enumerate(versions):
        floating = ("app-v1.0",) if v == (1, 0, 1) else ()
        created = NOW - timedelta(days=3) if v == (1, 0, 0) else OLD
        out.append(Candidate("app", Version(*v), digest(n + 1), created, floating))
    return out


def kept(decisions) -> dict[str, str]:
    return {d.candidate.tag.removeprefix("app-v"): d.reason for d in decisions if d.keep}


def test_the_policy_keeps_newest_per_major_young_and_floating():
    found = kept(prune.decide(candidates(), Retention(keep_patches=2, keep_days=30), now=NOW))
    assert sorted(found) == ["1.0.0", "1.0.1", "1.1.0", "1.1.1", "2.0.1", "2.0.2"]
    assert found["1.0.0"] == "younger than 30 days"
    assert found["1.0.1"] == "a floating tag points at it: app-v1.0"
    assert found["2.0.2"] == "one of the newest 2 of major 2"


def test_a_retired_image_keeps_only_young_and_floating_versions():
    found = kept(prune.decide(candidates(), Retention(keep_patches=2, keep_days=30), now=NOW, retired=["app"]))
    assert sorted(found) == ["1.0.0", "1.0.1"]


def test_what_a_kept_version_is_built_on_is_kept():
    prod = Candidate("app", Version(1, 0, 0), digest(1), OLD)
    newer = Candidate("app", Version(1, 0, 1), digest(2), OLD)
    debug = Candidate("app-debug", Version(1, 0, 0), digest(3), OLD, ("app-debug-v1",), base_digest=digest(1))
    found = kept(prune.decide([prod, newer, debug], Retention(keep_patches=1, keep_days=0), now=NOW))
    assert found == {"1.0.1": "one of the newest 1 of major 1", "1.0.0": "app-debug-v1.0.0 is built on it",
                     "app-debug-v1.0.0": "one of the newest 1 of major 1"}


def test_a_dry_run_deletes_nothing_and_says_so():
    decisions = prune.decide(candidates(), Retention(keep_patches=2, keep_days=30), now=NOW)
    result = prune.Pruner(Registry("127.0.0.1:9"), "r", Retention()).run(decisions, [], apply=False)
    assert result.deleted == [] and len(result.removed) == 3
    assert "dry run: nothing deleted" in prune.table(result)


# --- a registry that refuses deletes -------------------------------------------------------------

INDEX = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": []}).encode()
INDEX_DIGEST = "sha256:" + hashlib.sha256(INDEX).hexdigest()


class NoDeletes(BaseHTTPRequestHandler):
    """Manifests by digest, no cosign tags, no referrers API, and DELETE refused as distribution does."""

    deletes: ClassVar[list[str]] = []

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if body == INDEX:
            self.send_header("Docker-Content-Digest", INDEX_DIGEST)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.endswith(f"/manifests/{INDEX_DIGEST}"):
            self._send(200, INDEX, "application/vnd.oci.image.index.v1+json")
        else:
            self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')

    do_HEAD = do_GET

    def do_DELETE(self) -> None:
        type(self).deletes.append(self.path)
        self._send(405, b'{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}')


@pytest.fixture
def no_deletes():
    server = ThreadingHTTPServer(("127.0.0.1", 0), NoDeletes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_registry_that_refuses_deletes_stops_the_prune_cleanly(no_deletes):
    gone = Candidate("app", Version(1, 0, 0), INDEX_DIGEST, OLD)
    decisions = [prune.Decision(gone, False, "past the retention policy")]
    pruner = prune.Pruner(Registry(no_deletes, insecure=True, retries=0), "myorg/base", Retention())
    with pytest.raises(EnvironmentProblem) as e:
        pruner.run(decisions, ["app-v1.0.0"], apply=True)
    assert "refuses deletes" in e.value.message and "UNSUPPORTED" in e.value.message
    assert "nothing was deleted" in e.value.message and "storage.delete.enabled" in (e.value.hint or "")
    assert NoDeletes.deletes == [f"/v2/myorg/base/manifests/{INDEX_DIGEST}"]  # one attempt, then stop
