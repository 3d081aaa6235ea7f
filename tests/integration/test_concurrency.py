"""Two publishes of the same image at once: the per-image file lock makes one wait, and it then finds
the image up to date. One version, not two."""

from __future__ import annotations

import collections
import contextlib
import json
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import git
import yaml

from tests.integration.registry_servers import FaultProxy, own_registry, serve
from tests.integration.test_publish import (
    cosign,
    ws,  # noqa: F401  (fixture)
)
from tests.integration.workspace import Workspace, factory_environment, manifest_on


def test_two_publishes_at_once_give_one_version(ws, seeded):
    ws.add_manifest(manifest_on(seeded["busybox"], "twin"))
    assert ws.factory("render").returncode == 0
    ws.commit()
    argv = [sys.executable, "-m", "factory", "--config", str(ws.root / "factory.yaml"), "publish", "twin"]
    procs = [subprocess.Popen(argv, cwd=ws.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=factory_environment()) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    statuses = [re.search(r"^twin\s+(\S+)", out, re.M).group(1) for out, _ in outs]
    assert sorted(statuses) == ["published", "up-to-date"]
    # The second one waited for the lock: it started looking only after the first had published.
    (_, published_log), (_, waited_log) = sorted(outs, key=lambda o: re.search(r"^twin\s+(\S+)", o[0], re.M)[1])
    published_at = next(e["timestamp"] for e in json_events(published_log) if e["event"] == "published")
    looked_at = next(e["timestamp"] for e in json_events(waited_log) if e.get("step") == "resolve base")
    assert looked_at >= published_at
    assert {t for t in ws.tags() if re.fullmatch(r"twin-v\d+\.\d+\.\d+", t)} == {"twin-v1.0.0"}


def json_events(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


# --- two machines: no shared lock, one registry ----------------------------------------------------
#
# Machines that do not share a state folder do not share the lock. What stops them from both writing a
# version is the registry-side guard on the immutable tag: read it (absent), write it, read it back.
# The registry API has no conditional write, so both can pass the first read; the read-back then shows
# the last writer's digest, and the other machine fails at the tag step before moving any floating
# tag. Each machine talks to the registry through a proxy of its own, and the proxies make both
# machines meet at the worst moment: both first reads before either write, both writes before either
# read-back.


MEETING_TIMEOUT = 120  # seconds one machine waits for the other; its registry client waits longer


class Choreography:
    """Makes two machines' registry requests meet in a chosen order. Each machine's proxy follows a
    script of steps ``(method, tag, k, action, event)``: at the k-th request of that method for that
    tag's manifest it either sets the event, or waits for it, before forwarding the request."""

    def __init__(self) -> None:
        self.events: dict[str, threading.Event] = collections.defaultdict(threading.Event)
        self.done: list[str] = []  # "set x" / "waited x" / "missed x": what happened, for assertions

    def rule(self, script: list[tuple[str, str, int, str, str]]):
        seen: collections.Counter = collections.Counter()

        def rule(method: str, path: str, n: int):
            for key in {(m, tag) for m, tag, *_ in script if m == method and path.endswith(f"/manifests/{tag}")}:
                seen[key] += 1
                for m, tag, k, action, event in script:
                    if (m, tag) == key and k == seen[key]:
                        self._act(action, event)
            return None

        return rule

    def _act(self, action: str, event: str) -> None:
        if action == "set":
            self.events[event].set()
            self.done.append(f"set {event}")
        elif self.events[event].wait(MEETING_TIMEOUT):
            self.done.append(f"waited {event}")
        else:  # the other machine never got there: the test's assertions say so
            self.done.append(f"missed {event}")


def meet(machine: str, other: str, method: str, tag: str, k: int, name: str) -> list[tuple]:
    """Steps for ``machine``: at its k-th such request, wait until ``other`` is at its own."""
    return [(method, tag, k, "set", f"{machine} {name}"), (method, tag, k, "wait", f"{other} {name}")]


# The guard's compare is the 1st HEAD of the immutable tag, its read-back the 2nd, the last look the 3rd.
MACHINES = (("A", "B"), ("B", "A"))
BOTH_COMPARE_BEFORE_EITHER_WRITES = [meet(m, o, "HEAD", "race-v1.0.0", 1, "compared") for m, o in MACHINES]
BOTH_WRITE_BEFORE_EITHER_READS_BACK = [meet(m, o, "HEAD", "race-v1.0.0", 2, "wrote") for m, o in MACHINES]


@contextlib.contextmanager
def two_machines(tmp_path, scripts: list[list[tuple]]):
    """(choreography, [host of machine A's proxy, host of machine B's]) in front of one private registry."""
    choreography = Choreography()
    (tmp_path / "reg").mkdir()
    with own_registry(tmp_path / "reg") as registry, contextlib.ExitStack() as stack:
        hosts = [stack.enter_context(serve(FaultProxy(registry, rule=choreography.rule(script)).handler()))
                 for script in scripts]
        yield choreography, hosts


def machine_config(settings, seeded_debian, host: str, repository: str, hosts: list[str]) -> dict:
    # Its own state folder (so its own lock folder); the org's signing key and the installed tools.
    return {"registry": host, "repository": repository, "helper_image": seeded_debian.ref,
            "insecure_registries": [*hosts, settings.registry], "signing": {"key": str(settings.dev_key)},
            "tools_path": [str(settings.tools_bin), str(Path(sys.executable).parent)],
            # No retries: a held request waits up to the meeting's timeout, and one request may take at most
            # 300 s in all (config.py MAX_REGISTRY_REQUEST_SECONDS), retries included.
            "registry_client": {"timeout_seconds": MEETING_TIMEOUT + 60, "retries": 0}}


def publish_at_once(*workspaces, env: list[dict] | None = None) -> list[tuple[subprocess.CompletedProcess, dict]]:
    procs = []
    for i, w in enumerate(workspaces):
        argv = [sys.executable, "-m", "factory", "--config", str(w.root / "factory.yaml"), "publish", "race",
                "--report", str(w.root / "report.json")]
        procs.append(subprocess.Popen(argv, cwd=w.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=factory_environment((env or [{}] * 2)[i])))
    outs = [p.communicate(timeout=900) for p in procs]
    return [(subprocess.CompletedProcess(p.args, p.returncode, o, e), json.loads((w.root / "report.json").read_text()))
            for p, (o, e), w in zip(procs, outs, workspaces, strict=True)]


def logs(results) -> list[str]:
    """The end of each machine's log, for a failed assertion's message."""
    return [proc.stderr[-6000:] for proc, _ in results]


def test_two_machines_racing_for_the_immutable_tag_leave_one_version(tmp_path, settings, seeded, seeded_debian,
                                                                      runner):
    """Two commits of the same image (so two digests: the revision label differs) published at once."""
    repository = f"t{uuid.uuid4().hex[:10]}/base"
    scripts = [compare + write for compare, write in zip(BOTH_COMPARE_BEFORE_EITHER_WRITES,
                                                        BOTH_WRITE_BEFORE_EITHER_READS_BACK, strict=True)]
    with two_machines(tmp_path, scripts) as (choreography, hosts):
        machines = []
        for i, host in enumerate(hosts):
            w = Workspace.create(tmp_path / f"machine{i}", registry=host, state_dir=tmp_path / f"state{i}",
                                 extra_config=machine_config(settings, seeded_debian, host, repository, hosts))
            w.repository = repository
            w.add_manifest(manifest_on(seeded["busybox"], "race"))
            assert w.factory("render").returncode == 0
            w.commit(f"machine {i}")
            machines.append(w)
        results = publish_at_once(*machines)
        assert not [d for d in choreography.done if d.startswith("missed")], (choreography.done, logs(results))

        codes = sorted(proc.returncode for proc, _ in results)
        assert codes == [0, 1], logs(results)
        (_won, won_report), (lost, lost_report) = sorted(results, key=lambda r: r[0].returncode)
        lost_image = lost_report["images"][0]
        assert (lost_image["status"], lost_image["step"]) == ("failed", "tag")
        assert "tag race-v1.0.0 was changed by someone else while being written" in lost_image["error"]
        assert "race: failed at tag" in lost.stderr

        winner = won_report["images"][0]["prod"]["index_digest"]
        tags = machines[0].tags()
        assert {t for t in tags if re.fullmatch(r"race-v\d+\.\d+\.\d+", t)} == {"race-v1.0.0"}
        assert set(tags) == {"race-v1.0.0", "race-v1.0", "race-v1", "race"}
        assert set(tags.values()) == {winner}  # the loser moved no floating tag
        out = cosign(runner, settings, "verify", machines[0].ref(winner))
        assert out.returncode == 0, out.stderr


def test_two_machines_publishing_the_same_commit_write_the_same_digest(tmp_path, settings, seeded, seeded_debian):
    """The same commit on two machines builds the same index (reproducible builds): both writes of the
    immutable tag carry the same digest, both runs succeed, and there is one version."""
    repository = f"t{uuid.uuid4().hex[:10]}/base"
    with two_machines(tmp_path, BOTH_COMPARE_BEFORE_EITHER_WRITES) as (choreography, hosts):
        first = Workspace.create(tmp_path / "machine0", registry=hosts[0], state_dir=tmp_path / "state0",
                                 extra_config=machine_config(settings, seeded_debian, hosts[0], repository, hosts))
        first.repository = repository
        first.add_manifest(manifest_on(seeded["busybox"], "race"))
        assert first.factory("render").returncode == 0
        first.commit("one commit")
        clone = Workspace(tmp_path / "machine1", hosts[1], repository, tmp_path / "state1")
        git.Repo.clone_from(first.root, clone.root)
        # The clone's factory.yaml is the first machine's: its own registry view and state come from the
        # environment, so its work tree stays at the same, clean commit.
        env = [{}, {"FACTORY_REGISTRY": hosts[1], "FACTORY_STATE": str(tmp_path / "state1")}]
        assert yaml.safe_load((clone.root / "factory.yaml").read_text())["registry"] == hosts[0]  # env overrides it
        results = publish_at_once(first, clone, env=env)
        assert not [d for d in choreography.done if d.startswith("missed")], (choreography.done, logs(results))
        for proc, _ in results:
            assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
        digests = {report["images"][0]["prod"]["index_digest"] for _, report in results}
        assert len(digests) == 1
        tags = first.tags()
        assert {t for t in tags if re.fullmatch(r"race-v\d+\.\d+\.\d+", t)} == {"race-v1.0.0"}
        assert set(tags.values()) == digests


def test_an_immutable_tag_overwritten_after_its_read_back_is_caught_by_the_last_look(
        tmp_path, settings, seeded, seeded_debian, runner):
    """Both machines compare before either writes; A writes and reads back its own digest, and B's write
    lands only after A has started moving floating tags. A's last look at the immutable tag (after its
    floating tags) sees B's digest: A fails at the tag step; a re-run of A moves every tag to B's version."""
    a_script = [*meet("A", "B", "HEAD", "race-v1.0.0", 1, "compared"),
                ("PUT", "race-v1.0", 1, "set", "A moved a floating tag"),
                ("HEAD", "race-v1.0.0", 3, "wait", "B read back")]
    b_script = [*meet("B", "A", "HEAD", "race-v1.0.0", 1, "compared"),
                ("PUT", "race-v1.0.0", 1, "wait", "A moved a floating tag"),
                ("HEAD", "race-v1.0.0", 2, "set", "B read back")]
    repository = f"t{uuid.uuid4().hex[:10]}/base"
    with two_machines(tmp_path, [a_script, b_script]) as (choreography, hosts):
        machines = []
        for name, host in zip("AB", hosts, strict=True):
            w = Workspace.create(tmp_path / f"machine{name}", registry=host, state_dir=tmp_path / f"state{name}",
                                 extra_config=machine_config(settings, seeded_debian, host, repository, hosts))
            w.repository = repository
            w.add_manifest(manifest_on(seeded["busybox"], "race"))
            assert w.factory("render").returncode == 0
            w.commit(f"machine {name}")
            machines.append(w)
        results = publish_at_once(*machines)
        assert not [d for d in choreography.done if d.startswith("missed")], (choreography.done, logs(results))
        (a, a_report), (b, b_report) = results
        assert b.returncode == 0, b.stderr[-3000:]
        assert a.returncode == 1, a.stdout + a.stderr[-3000:]
        a_image = a_report["images"][0]
        assert a_image["step"] == "tag" and "tag race-v1.0.0 was overwritten by another publisher" in a_image["error"]
        b_digest = b_report["images"][0]["prod"]["index_digest"]
        tags = machines[0].tags()
        assert tags["race-v1.0.0"] == b_digest
        for digest in set(tags.values()):  # A's floating tags may still point at A's image: a signed one
            assert cosign(runner, settings, "verify", machines[0].ref(digest)).returncode == 0

        again = machines[0].factory("publish", "race")  # machine A, once more: nothing to build
        assert again.returncode == 0, again.stdout + again.stderr[-3000:]
        assert "up-to-date" in again.stdout
        tags = machines[0].tags()
        assert {t for t in tags if re.fullmatch(r"race-v\d+\.\d+\.\d+", t)} == {"race-v1.0.0"}
        assert set(tags.values()) == {b_digest}

