"""The GitHub workflows: every action pinned by full commit SHA with a version comment, read-only
by default, and write or OIDC permissions only on the jobs that publish or open pull requests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / ".github" / "workflows").glob("*.yml"))
USES = re.compile(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$")


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def test_the_three_workflows_exist():
    assert [p.name for p in WORKFLOWS] == ["nightly.yml", "pr.yml", "release.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_sha_with_a_version_comment(path):
    uses = [USES.match(line) for line in path.read_text().splitlines()]
    uses = [m for m in uses if m]
    assert uses
    for m in uses:
        action, rest = m.group(1), m.group(2)
        assert re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}", action), action
        assert re.search(r"#\s*v\d+(\.\d+)*", rest), f"{action}: no # vX comment"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_permissions(path):
    doc = load(path)
    assert doc["permissions"] == {"contents": "read"}
    for name, job in doc["jobs"].items():
        perms = job.get("permissions", {})
        writes = {k for k, v in perms.items() if v == "write"}
        steps_text = yaml.safe_dump(job.get("steps", []))
        if "id-token" in writes:  # OIDC only where something is signed
            assert "factory publish" in steps_text or "factory merge" in steps_text or "factory nightly" in steps_text, name
        if "packages" in writes:
            assert "docker/login-action" in steps_text, name
        if not perms:
            assert "factory publish" not in steps_text and "factory merge" not in steps_text, name


def test_release_fans_out_by_level_and_merges():
    jobs = load(next(p for p in WORKFLOWS if p.name == "release.yml"))["jobs"]
    assert "--push-by-digest-only" in yaml.safe_dump(jobs["build-level0"]["steps"])
    assert "factory merge" in yaml.safe_dump(jobs["merge-level0"]["steps"])
    assert jobs["build-level1"]["needs"] == ["plan", "merge-level0"]
    assert "fromJSON(needs.plan.outputs.level0)" in jobs["build-level0"]["strategy"]["matrix"]


def test_pr_builds_without_pushing():
    jobs = load(next(p for p in WORKFLOWS if p.name == "pr.yml"))["jobs"]
    text = yaml.safe_dump(jobs)
    assert "factory validate" in text and "factory render --check" in text and "type=cacheonly" in text
    assert "--push" not in text and "push=true" not in text and "factory publish" not in text
