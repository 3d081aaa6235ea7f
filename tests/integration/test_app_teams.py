"""App teams against the real local registry and cosign: `factory check-dockerfile` (also as a
pre-commit hook in a throwaway app repository), the policies it writes (hadolint runs on its config),
the signed lifecycle attestation, and `factory prune` on a repository holding 12 versions.

One real publish (busybox, linux/amd64, with its debug variant, signed with the test key) is the
only build. Every other version is a copy of its index with other annotations (a new digest on the
same platform manifest), pushed through the registry client and signed with cosign: a newer patch,
one signed with another key, a retired and a deprecated image, and twelve versions to prune.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
import requests
import yaml

from factory.oci.registry import Registry
from factory.trust.sign import Signer
from tests.integration.conftest import REPO_ROOT
from tests.integration.workspace import INDEX_ACCEPT, Workspace, factory_environment, manifest_on

FACTORY = [sys.executable, "-m", "factory"]
FOREIGN = "docker.io/library/alpine:3.20@sha256:" + "ab" * 32


@dataclass
class Org:
    ws: Workspace
    target: str
    key: Path
    digests: dict[str, str]  # immutable tag -> index digest
    registry: Registry
    signer: Signer


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def copy_index(registry: Registry, repo: str, source: str, tags: list[str], annotations: dict[str, str]) -> str:
    """The source index with other annotations, under ``tags``: a new version without a build."""
    raw, media_type, _ = registry.get_manifest(repo, source)
    doc = json.loads(raw)
    doc["annotations"] = {**(doc.get("annotations") or {}), **annotations}
    data = json.dumps(doc).encode()
    digest = ""
    for tag in tags:
        digest = registry.put_manifest(repo, tag, data, media_type)
    return digest


def other_key(runner, folder: Path) -> Path:
    folder.mkdir()
    _ok(subprocess.run([runner.require("cosign"), "generate-key-pair", "--output-key-prefix", "other"], cwd=folder,
                       env={**os.environ, "COSIGN_PASSWORD": ""}, capture_output=True, text=True, timeout=60))
    return folder / "other.key"


@pytest.fixture(scope="module")
def org(tmp_path_factory, settings, seeded, seeded_debian, runner) -> Org:
    tmp = tmp_path_factory.mktemp("appteams")
    # The hardening runs in a helper stage that needs a pinned Debian image: the seeded one (cached).
    ws = Workspace.create(tmp / "repo", registry=settings.registry, state_dir=settings.state_dir,
                          extra_config={"helper_image": seeded_debian.ref,
                                        "retention": {"keep_patches": 2, "keep_days": 30}})
    ws.add_manifest(manifest_on(seeded["busybox"], "app", platforms=["linux/amd64"], variants={"debug": {}}))
    _ok(ws.factory("render"))
    ws.commit("render")
    _ok(ws.factory("publish", "app"))
    target = f"{ws.registry}/{ws.repository}"
    registry = Registry(ws.registry, insecure=True)
    signer = Signer(settings, runner)
    d = {t: ws.digest(t) for t in ("app-v1.0.0", "app-debug-v1.0.0")}

    def version(tags: list[str], signer_: Signer = signer, **annotations: str) -> str:
        digest = copy_index(registry, ws.repository, d["app-v1.0.0"], tags, {"test.copy": uuid.uuid4().hex,
                                                                             **annotations})
        signer_.sign(f"{target}@{digest}", recursive=False)
        d[tags[0]] = digest
        return digest

    version(["app-v1.0.1", "app-v1.0", "app-v1", "app"])  # the newest patch: the floating tags move to it
    other = replace(settings, signing=replace(settings.signing, key=str(other_key(runner, tmp / "other"))))
    version(["other-v1.0.0", "other-v1"], Signer(other, runner))
    version(["old-v1.0.0", "old-v1"])
    version(["legacy-v1.0.0", "legacy-v1"])
    # Their manifests say what the registry cannot: one is past its end of life, one deprecated.
    ws.add_manifest(manifest_on(seeded["busybox"], "old", platforms=["linux/amd64"], eol="2020-01-01"))
    ws.add_manifest(manifest_on(seeded["busybox"], "legacy", platforms=["linux/amd64"],
                                deprecated={"successor": "app", "reason": "merged into app"}))
    lifecycle = _ok(ws.factory("lifecycle", "old", "legacy")).stdout
    assert re.search(r"old-v1\.0\.0 +retired +yes", lifecycle) and re.search(r"legacy-v1\.0\.0 +deprecated +yes",
                                                                             lifecycle), lifecycle
    return Org(ws, target, settings.dev_key.with_suffix(".pub"), d, registry, signer)


# --- check-dockerfile ---------------------------------------------------------------------------


def app_repo(org: Org, folder: Path) -> dict[str, Path]:
    t, d = org.target, org.digests
    files = {
        "Dockerfile": f"ARG BASE={t}:app-v1@{d['app-v1.0.1']}\n"
                      f"FROM --platform=linux/amd64 {t}:app-debug-v1@{d['app-debug-v1.0.0']} AS tools\n"
                      "FROM ${BASE}\nCOPY --from=tools /bin/busybox /usr/local/bin/busybox\n",
        "superseded.Dockerfile": f"FROM {t}:app-v1.0.0@{d['app-v1.0.0']}\n",
        "unsigned.Dockerfile": f"FROM {t}:other-v1@{d['other-v1.0.0']}\n",
        "foreign.Dockerfile": f"FROM {FOREIGN}\n",
        "unpinned.Dockerfile": f"# the tag alone\nFROM {t}:app-v1\n",
        "debug.Dockerfile": f"FROM {t}:app-debug-v1@{d['app-debug-v1.0.0']}\n",
        "eol.Dockerfile": f"FROM {t}:old-v1@{d['old-v1.0.0']}\n",
        "deprecated.Dockerfile": f"FROM {t}:legacy-v1@{d['legacy-v1.0.0']}\n",
    }
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return {name: folder / name for name in files}


def check(org: Org, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FACTORY, "check-dockerfile", "--org-image", org.target, "--key", str(org.key), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300, env=factory_environment())


EXPECTED = {
    "superseded.Dockerfile": (1, "superseded", "1.0.1 is the newest of major 1"),
    "unsigned.Dockerfile": (1, "unsigned", "does not verify with the org key"),
    "foreign.Dockerfile": (1, "not-org-base", "is not an org base image"),
    "unpinned.Dockerfile": (2, "unpinned", "not pinned by digest"),
    "debug.Dockerfile": (1, "debug-final-stage", "debug variant in the final image"),
    "eol.Dockerfile": (1, "retired", "past its end of life 2020-01-01"),
    "deprecated.Dockerfile": (1, "deprecated", "move to app"),
}


def test_a_good_dockerfile_passes(org, tmp_path):
    app_repo(org, tmp_path)
    proc = _ok(check(org, tmp_path, "Dockerfile"))
    assert "2 FROM line(s) checked: 0 error(s), 0 warning(s)" in proc.stdout


def test_each_bad_base_fails_with_one_line_naming_file_line_and_reason(org, tmp_path):
    app_repo(org, tmp_path)
    proc = check(org, tmp_path, *EXPECTED, "--format", "sarif", "--output", "results.sarif")
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if ": error: " in line]
    for name, (line, rule, words) in EXPECTED.items():
        mine = [x for x in lines if x.startswith(f"{name}:")]
        assert len(mine) == 1, (name, lines)
        assert mine[0].startswith(f"{name}:{line}: error: {rule}: ") and words in mine[0], mine[0]
    assert "base image problem(s) in 7 Dockerfile(s)" in proc.stderr
    # the SARIF written beside it validates against the SARIF 2.1.0 schema, one result per line
    doc = json.loads((tmp_path / "results.sarif").read_text())
    schema = json.loads((REPO_ROOT / "tests" / "data" / "sarif" / "sarif-2.1.0-rtm.5.json").read_text())
    jsonschema.Draft4Validator(schema).validate(doc)
    results = doc["runs"][0]["results"]
    assert sorted((r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"], r["ruleId"]) for r in results) \
        == sorted((name, rule) for name, (_, rule, _) in EXPECTED.items())


def test_pre_commit_runs_the_hook_and_fails_on_a_bad_from(org, tmp_path):
    """What an app repository does: the hook from .pre-commit-hooks.yaml as a local hook with the
    factory it installed (language: system: nothing to fetch, so it works offline)."""
    files = app_repo(org, tmp_path / "app")
    for name in EXPECTED:
        if name != "unpinned.Dockerfile":
            files[name].unlink()
    [hook] = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())
    factory_bin = Path(sys.executable).parent / "factory"
    local = {**hook, "language": "system",
             "entry": f"{factory_bin} check-dockerfile --org-image {org.target} --key {org.key}"}
    local.pop("minimum_pre_commit_version")
    (tmp_path / "app" / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [
        {"repo": "local", "hooks": [local]}]}))
    env = {**factory_environment(), "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    git = ["git", "-c", "init.defaultBranch=main"]
    _ok(subprocess.run([*git, "init", "-q"], cwd=tmp_path / "app", capture_output=True, text=True, timeout=30))
    _ok(subprocess.run(["git", "add", "."], cwd=tmp_path / "app", capture_output=True, text=True, timeout=30))
    pre_commit = [str(Path(sys.executable).parent / "pre-commit"), "run", "--all-files", "--color", "never"]
    proc = subprocess.run(pre_commit, cwd=tmp_path / "app", capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "org base images (factory check-dockerfile)" in proc.stdout and "Failed" in proc.stdout
    assert "unpinned.Dockerfile:2: error: unpinned: " in proc.stdout
    # the hook saw both files (pre-commit passes every matching file) and only the bad one failed
    assert "3 FROM line(s) checked: 1 error(s)" in proc.stdout and "Dockerfile:" not in proc.stdout.replace(
        "unpinned.Dockerfile:", "")


def test_verify_shows_the_signed_lifecycle(org):
    proc = org.ws.factory("verify", f"{org.target}:old-v1", "--key", str(org.key))
    assert re.search(r"FAILED +lifecycle +retired: past its end of life 2020-01-01", proc.stdout), proc.stdout


def test_hadolint_refuses_a_foreign_registry_with_the_written_config(org, tmp_path):
    _ok(org.ws.factory("policies", "--out", str(tmp_path / "policies"), "--key", str(org.key)))
    files = app_repo(org, tmp_path / "app")
    hadolint = [str(Path(sys.executable).parent / "hadolint"), "--config", str(tmp_path / "policies" / "hadolint.yaml"),
                "--format", "json"]
    bad = subprocess.run([*hadolint, str(files["foreign.Dockerfile"])], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "DL3026" in {f["code"] for f in json.loads(bad.stdout)}, bad.stdout + bad.stderr
    good = subprocess.run([*hadolint, str(files["superseded.Dockerfile"])], capture_output=True, text=True, timeout=60)
    assert "DL3026" not in {f["code"] for f in json.loads(good.stdout or "[]")}, good.stdout + good.stderr


# --- prune --------------------------------------------------------------------------------------

# 12 versions of "pr": (version, created, extra floating tags). Retention keeps the newest 2 of each
# major, what is younger than 30 days, and what a floating tag points at.
NOW = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
PR_VERSIONS = [("1.0.0", "2020-01-01T00:00:00Z", []), ("1.0.1", "2020-01-02T00:00:00Z", []),
               ("1.0.2", "2020-01-03T00:00:00Z", ["pr-v1.0"]), ("1.0.3", "2020-01-04T00:00:00Z", []),
               ("1.0.4", NOW, []), ("1.0.5", "2020-01-06T00:00:00Z", []),
               ("1.1.0", "2020-02-01T00:00:00Z", []), ("1.1.1", "2020-02-02T00:00:00Z", ["pr-v1.1", "pr-v1"]),
               ("2.0.0", "2020-03-01T00:00:00Z", []), ("2.0.1", "2020-03-02T00:00:00Z", []),
               ("2.0.2", "2020-03-03T00:00:00Z", []), ("2.0.3", "2020-03-04T00:00:00Z", ["pr-v2.0", "pr-v2", "pr"])]
KEPT = {"1.0.2", "1.0.4", "1.1.0", "1.1.1", "2.0.2", "2.0.3"}


def test_prune_keeps_what_the_policy_says_and_deletes_the_rest_with_signatures(org):
    repo = org.ws.repository
    digests = {}
    for version, created, floating in PR_VERSIONS:
        digests[version] = copy_index(org.registry, repo, org.digests["app-v1.0.0"], [f"pr-v{version}", *floating],
                                      {"org.opencontainers.image.created": created})
        org.signer.sign(f"{org.target}@{digests[version]}", recursive=False)
    org.signer.attest(f"{org.target}@{digests['1.0.0']}", {"note": "to be pruned"}, "https://example.com/test/v1")
    dry = _ok(org.ws.factory("prune", "pr")).stdout
    assert "6 kept, 6 to delete (dry run: nothing deleted" in dry, dry
    assert all(org.registry.head_manifest(repo, d) for d in digests.values()), "a dry run deleted something"

    applied = _ok(org.ws.factory("prune", "pr", "--apply")).stdout
    assert "6 kept, 6 deleted" in applied, applied
    tags = org.registry.list_tags(repo)
    for version, digest in digests.items():
        url = f"http://{org.ws.registry}/v2/{repo}/manifests/{digest}"
        status = requests.get(url, headers={"Accept": INDEX_ACCEPT}, timeout=10).status_code
        stem = digest.replace(":", "-")
        if version in KEPT:
            assert status == 200 and f"pr-v{version}" in tags and f"{stem}.sig" in tags, version
            org.signer.verify(f"{org.target}@{digest}")  # still verifies with the test key
        else:
            assert status == 404, (version, status)  # the registry's own API: gone
            assert f"pr-v{version}" not in tags and f"{stem}.sig" not in tags and f"{stem}.att" not in tags
    # the published image the copies share their config and layers with stays, and still verifies
    assert org.registry.head_manifest(repo, "app-v1.0.0").digest == org.digests["app-v1.0.0"]
    org.signer.verify(f"{org.target}@{org.digests['app-v1.0.0']}")


def test_the_composite_actions_scripts_pass_shellcheck():
    action = yaml.safe_load((REPO_ROOT / "action" / "check-dockerfile" / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    for step in action["runs"]["steps"]:
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), "pin actions by full commit SHA"
            continue
        assert "${{" not in step["run"], "inputs reach scripts through env:, never interpolated into the script"
        proc = subprocess.run([str(Path(sys.executable).parent / "shellcheck"), "-s", "bash", "-"], input=step["run"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout
