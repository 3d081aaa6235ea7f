"""Faults during a publish, against a private registry behind a fault-injecting proxy: the registry
goes away before or during the tag writes, or the process is killed. Nothing unsigned is ever
reachable by a tag, and a re-run completes with exactly one version."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.registry_servers import DROP, FaultProxy, own_registry, serve
from tests.integration.test_publish import cosign
from tests.integration.workspace import Workspace, factory_environment, manifest_on

TAG_PUT = re.compile(r"^/v2/.+/manifests/(?!sha256:)")


class RegistryGoesAway:
    """A FaultProxy rule: forward everything until the first PUT of a manifest by a tag matching
    ``tag_pattern``; from then on give ``answer`` (503, or DROP: the connection closed unanswered, as
    a stopped registry's) until ``back()``."""

    def __init__(self, tag_pattern: str, answer) -> None:
        self.pattern = re.compile(tag_pattern)
        self.answer = answer
        self.down = False
        self.spent = False  # the registry goes away once

    def __call__(self, method: str, path: str, n: int):
        if not self.spent and method == "PUT" and TAG_PUT.match(path) and self.pattern.search(path):
            self.down = True
        return self.answer if self.down else None

    def back(self) -> None:
        self.down, self.spent = False, True


@pytest.fixture
def private(tmp_path, settings, seeded_debian):
    """A workspace publishing to a private registry behind a fault proxy."""

    def make(tag_pattern: str, answer):
        fault = RegistryGoesAway(tag_pattern, answer)
        (tmp_path / "reg").mkdir()
        with (own_registry(tmp_path / "reg") as registry,
              serve(FaultProxy(registry, rule=fault).handler()) as host):
            ws = Workspace.create(tmp_path / "repo", registry=host, state_dir=settings.state_dir,
                                  extra_config={"helper_image": seeded_debian.ref,
                                                "insecure_registries": [host, settings.registry],
                                                # gives up after ~1 s, not the default ~15 s
                                                "registry_client": {"retries": 3, "backoff_seconds": 0.1}})
            yield ws, fault

    return make


@pytest.mark.parametrize(("tag_pattern", "answer", "tags_left"), [
    (r"-v\d+\.\d+\.\d+$", DROP, set()),                  # stopped before the first tag: nothing tagged
    (r"-v\d+\.\d+$", (503, {}), {"down-v1.0.0"}),       # failing after the immutable tag, before the floating
], ids=["stopped-before-the-first-tag", "503-after-the-immutable-tag"])
def test_registry_gone_during_tagging_then_back(private, seeded, runner, settings, tag_pattern, answer, tags_left):
    gen = private(tag_pattern, answer)
    ws, fault = next(gen)
    try:
        ws.add_manifest(manifest_on(seeded["busybox"], "down"))
        assert ws.factory("render").returncode == 0
        ws.commit()
        start = time.monotonic()
        failed = ws.factory("publish", "down")
        assert failed.returncode == 1
        assert "failed at tag" in failed.stderr, failed.stderr
        # the registry's own answer, or that it did not answer at all
        assert ("registry not reachable (after 3 retries)" if answer == DROP else "HTTP 503") in failed.stderr
        assert time.monotonic() - start < 120  # bounded retries, not a hang
        fault.back()
        tags = ws.tags()
        assert set(tags) == tags_left
        for digest in tags.values():  # whatever a tag reaches is signed and attested
            assert cosign(runner, settings, "verify", ws.ref(digest)).returncode == 0
            assert cosign(runner, settings, "verify-attestation", "--type", "slsaprovenance1",
                          ws.ref(digest)).returncode == 0

        again = ws.factory("publish", "down")
        assert again.returncode == 0, again.stdout + again.stderr
        tags = ws.tags()
        assert {t for t in tags if re.fullmatch(r"down-v\d+\.\d+\.\d+", t)} == {"down-v1.0.0"}
        assert tags["down"] == tags["down-v1"] == tags["down-v1.0"] == tags["down-v1.0.0"]
        assert cosign(runner, settings, "verify", ws.ref(tags["down-v1.0.0"])).returncode == 0
    finally:
        gen.close()


@pytest.mark.parametrize("kill_at", [
    '"event": "buildx build"',  # while buildx builds (its process group goes too, as a cancelled CI job's)
    '"step": "sign"',  # after the push, while it signs: an unsigned image is in the registry, untagged
], ids=["building", "signing"])
def test_sigkill_mid_publish_then_a_rerun_recovers(tmp_path, settings, seeded, seeded_debian, kill_at):
    ws = Workspace.create(tmp_path / "repo", registry=settings.registry, state_dir=settings.state_dir,
                          extra_config={"helper_image": seeded_debian.ref})
    ws.add_manifest(manifest_on(seeded["busybox"], "killed", env={"RUN_ID": str(time.time_ns())}))  # no cache hit
    assert ws.factory("render").returncode == 0
    ws.commit()
    proc = subprocess.Popen([sys.executable, "-m", "factory", "--config", str(ws.root / "factory.yaml"),
                             "--log-format", "json", "publish", "killed"], cwd=ws.root, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env=factory_environment(),
                            start_new_session=True)
    deadline = time.monotonic() + 300
    seen = False
    for line in proc.stderr:
        if kill_at in line:
            seen = True
            break
        if time.monotonic() > deadline:
            break
    os.killpg(proc.pid, signal.SIGKILL)  # the factory and every tool it started
    proc.wait(30)
    proc.stderr.close()
    assert seen, f"the publish never logged {kill_at}"
    assert ws.tags() == {}

    # No clean-up: the lock died with the process, and nothing left behind stops the next run, which
    # must not wait for the lock (the timeout makes a stuck lock a failure, not a 15-minute wait).
    again = ws.factory("publish", "killed", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    tags = ws.tags()
    assert set(tags) == {"killed-v1.0.0", "killed-v1.0", "killed-v1", "killed"} and len(set(tags.values())) == 1
