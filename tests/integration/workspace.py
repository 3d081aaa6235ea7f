"""A throwaway factory repository for integration tests: factory.yaml, manifests built on the seeded
upstreams, a git history, and the `factory` CLI run in it as a user would run it."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import git
import requests
import yaml

from factory.spec import config

INDEX_ACCEPT = ("application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
                "application/vnd.docker.distribution.manifest.list.v2+json")


def factory_environment(extra: dict | None = None) -> dict[str, str]:
    """The environment a workspace's `factory` runs in: the caller's, as in CI, without the FACTORY_*
    overrides that `make test` exports. A workspace's factory.yaml says where its state and tools are;
    an inherited FACTORY_STATE would quietly give two "machines" one state folder, so one lock."""
    env = {k: v for k, v in os.environ.items() if k not in config.ENV_OVERRIDES}
    return {**env, "CI": "true", **(extra or {})}


@dataclass
class Workspace:
    root: Path
    registry: str
    repository: str
    state_dir: Path

    @classmethod
    def create(cls, root: Path, *, registry: str, state_dir: Path, extra_config: dict | None = None,
               security_fixes: str | None = "off") -> Workspace:
        """``security_fixes``: the policy (require, warn, off; None: the default, require). Off unless a test
        is about security fixes."""
        ws = cls(root, registry, f"t{uuid.uuid4().hex[:10]}/base", state_dir)
        policy = {"scanner_db_unavailable": "warn"}
        if security_fixes is not None:  # None: the built-in default (require)
            policy["security_fixes"] = security_fixes
        config = {
            "registry": registry,
            "repository": ws.repository,
            "state_dir": str(state_dir),
            # No vulnerability database can be downloaded here: say so loudly, don't fail every test.
            # Security fixes off unless a test is about them: with them on, every publish of an apt image
            # reads ~18 MB of Debian indexes and runs apt-get update per platform (arm64 under QEMU).
            "policy": policy,
            # The scanner's database: none unless a test pushes one (tests/integration/test_scan_db.py);
            # the default, trivy's public repository, is out of reach here.
            "scanner": {"db_repository": ""},
            **(extra_config or {}),
        }
        (root / "manifests").mkdir(parents=True)
        (root / "factory.yaml").write_text(yaml.safe_dump(config))
        git.Repo.init(root)
        return ws

    def add_manifest(self, doc: dict) -> Path:
        path = self.root / "manifests" / f"{doc['name']}.yaml"
        path.write_text(yaml.safe_dump({"apiVersion": "factory/v1", **doc}, sort_keys=False))
        return path

    def commit(self, message: str = "test") -> str:
        repo = git.Repo(self.root)
        repo.git.add(A=True)
        repo.index.commit(message)
        return repo.head.commit.hexsha

    def factory(self, *args: str, env: dict | None = None, timeout: float = 1500) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "factory", "--config", str(self.root / "factory.yaml"), *args],
            cwd=self.root, capture_output=True, text=True, timeout=timeout,
            env=factory_environment(env),
        )
        return proc

    def push_dummy(self, docker, folder: Path, tag: str) -> str:
        """Push a tiny unrelated 2-platform image to this repository under ``tag``; its index digest."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Dockerfile").write_text(f"FROM scratch\nCOPY marker /marker-{uuid.uuid4().hex}\n")
        (folder / "marker").write_text(tag)
        docker.build(folder, platforms=["linux/amd64", "linux/arm64"],
                     output={"type": "image", "name": self.ref(tag), "push": "true"})
        return self.digest(tag)

    # --- registry look-ups (plain HTTP, independent of the factory's own client) -----------------

    def tags(self) -> dict[str, str]:
        """tag -> digest for every tag of the test repository (cosign's sha256-*.sig/.att excluded)."""
        resp = requests.get(f"http://{self.registry}/v2/{self.repository}/tags/list", timeout=10)
        if resp.status_code == 404:
            return {}
        names = [t for t in resp.json().get("tags") or [] if not t.startswith("sha256-")]
        return {t: self.digest(t) for t in names}

    def digest(self, reference: str) -> str:
        resp = requests.head(f"http://{self.registry}/v2/{self.repository}/manifests/{reference}",
                             headers={"Accept": INDEX_ACCEPT}, timeout=10)
        resp.raise_for_status()
        return resp.headers["Docker-Content-Digest"]

    def manifest(self, reference: str) -> dict:
        resp = requests.get(f"http://{self.registry}/v2/{self.repository}/manifests/{reference}",
                            headers={"Accept": INDEX_ACCEPT}, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def platforms(self, reference: str) -> dict[str, str]:
        """platform -> manifest digest; a one-platform image is its own manifest (read from its config)."""
        index = self.manifest(reference)
        if "manifests" not in index:
            resp = requests.get(f"http://{self.registry}/v2/{self.repository}/blobs/{index['config']['digest']}",
                                timeout=10)
            config = json.loads(resp.content)
            return {f"{config['os']}/{config['architecture']}": self.digest(reference)}
        return {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in index["manifests"]
                if m.get("platform", {}).get("os") != "unknown"}

    def labels(self, reference: str) -> dict[str, str]:
        first = next(iter(self.platforms(reference).values()))
        config_digest = self.manifest(first)["config"]["digest"]
        resp = requests.get(f"http://{self.registry}/v2/{self.repository}/blobs/{config_digest}", timeout=10)
        return json.loads(resp.content)["config"].get("Labels") or {}

    def ref(self, reference: str) -> str:
        sep = "@" if reference.startswith("sha256:") else ":"
        return f"{self.registry}/{self.repository}{sep}{reference}"


# The suites apt needs for the whole answer: the seeded Debian upstream lists `bookworm` alone.
APT_SOURCES = ("deb http://deb.debian.org/debian bookworm main\n"
               "deb http://deb.debian.org/debian bookworm-updates main\n"
               "deb http://security.debian.org/debian-security bookworm-security main\n")
# Inst libpam0g [1.5.2-6+deb12u1] (1.5.2-6+deb12u2 Debian-Security:12/stable-security [arm64])
_INST = re.compile(r"^Inst (\S+) \[(\S+)\] \((\S+) (.+) \[(\S+)\]\)")


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def apt_upgrades(docker, image: str, platform: str) -> set[tuple[str, str, str, bool]]:
    """apt's own answer: (package, installed, new, from the security suite) for each `Inst` line of
    `apt-get -s upgrade` in ``image`` on ``platform``, with bookworm, -updates and -security in its sources."""
    script = (f"printf '{APT_SOURCES}' > /etc/apt/sources.list && apt-get update -qq >/dev/null "
              "&& apt-get -s -q upgrade")
    rc, out, err = docker.run(image, ["-c", script], platform=platform, hardened=False, user="0", entrypoint="sh")
    assert rc == 0, f"apt-get in {image} [{platform}] exited {rc}:\n{out}\n{err}"
    found = set()
    for line in out.splitlines():
        m = _INST.match(line)
        if m:
            found.add((m[1], m[2], m[3], "Debian-Security" in m[4]))
    assert "Inst " not in out or found, f"no Inst line parsed from:\n{out}"
    return found


def attested_predicates(runner, public_key: Path, ref: str, kind: str) -> list[dict]:
    """The predicates of the ``kind`` attestations on ``ref`` that verify with ``public_key`` (the cosign CLI)."""
    proc = ok(subprocess.run([runner.require("cosign"), "verify-attestation", "--type", kind, "--key", str(public_key),
                              "--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry",
                              "--output", "json", ref], capture_output=True, text=True, timeout=120))
    return [json.loads(base64.b64decode(json.loads(line)["payload"]))["predicate"]
            for line in proc.stdout.splitlines() if line.startswith("{")]


def manifest_on(seeded, name: str, **overrides) -> dict:
    """A minimal valid manifest built on a seeded upstream fixture."""
    doc = {
        "name": name,
        "version": "1.0",
        "description": f"integration test image on {seeded.name}",
        "upstream": {"image": seeded.image, "tag": seeded.tag, "digest": seeded.digest},
        "distro": seeded.distro,
        "platforms": ["linux/amd64", "linux/arm64"],
        "eol": "2028-06-30",
    }
    if seeded.release:
        doc["release"] = seeded.release
    doc.update(overrides)
    return doc
