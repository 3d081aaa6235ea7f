"""The GitHub workflows: every action pinned by full commit SHA with a `# vX.Y.Z` comment, read-only by
default, write or OIDC permissions only on the jobs that need them, and the fan-out wired to the plan's
matrix. Structure only (PyYAML); actionlint runs in tests/integration/test_workflows_lint.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / ".github" / "workflows").glob("*.yml"))
USES = re.compile(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$")
SIGNS = re.compile(r"^\s*factory (publish|merge|nightly)\b", re.M)  # the commands that sign, run as commands


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def workflow(name: str) -> dict:
    return load(next(p for p in WORKFLOWS if p.name == name))


def text_of(job: dict) -> str:
    """The job's actions and scripts, as written."""
    return "\n".join(f"{s.get('uses', '')}\n{s.get('run', '')}" for s in job.get("steps", []))


def test_the_three_workflows_exist():
    assert [p.name for p in WORKFLOWS] == ["nightly.yml", "pr.yml", "release.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_sha_with_a_version_comment(path):
    uses = [m for m in map(USES.match, path.read_text().splitlines()) if m]
    assert uses
    for m in uses:
        action, rest = m.group(1), m.group(2)
        assert re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}", action), action
        assert re.fullmatch(r"\s+#\s*v\d+\.\d+\.\d+\s*", rest), f"{action}: needs a `# vX.Y.Z` comment"


def test_one_sha_per_action_across_the_workflows():
    """The same action at two SHAs means one of them was not updated: a review would miss it."""
    pins: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for m in filter(None, map(USES.match, path.read_text().splitlines())):
            action, sha = m.group(1).split("@")
            pins.setdefault(action, set()).add(f"{sha}{m.group(2).strip()}")
    assert {a: s for a, s in pins.items() if len(s) > 1} == {}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_read_only_by_default_and_widened_only_where_needed(path):
    doc = load(path)
    assert doc["permissions"] == {"contents": "read"}
    for name, job in doc["jobs"].items():
        perms = job.get("permissions", {})
        assert set(perms.values()) <= {"read", "write"}, name
        steps = text_of(job)
        signs = bool(SIGNS.search(steps))
        if perms.get("id-token") == "write":  # OIDC (keyless cosign) only where something is signed
            assert signs, name
        if signs:
            assert perms.get("id-token") == "write" and perms.get("packages") == "write", name
        if perms.get("packages") == "write":
            assert signs and "docker/login-action" in steps, name
        if perms.get("contents") == "write":  # pushes commits
            assert "git push" in steps or "create-pull-request" in steps, name
        if perms.get("pull-requests") == "write":
            assert "create-pull-request" in steps, name


def test_release_fans_out_by_level_from_the_plans_matrix_and_merges_the_uploaded_digests():
    jobs = workflow("release.yml")["jobs"]
    assert "factory plan --format github-matrix" in text_of(jobs["plan"])
    for level in (0, 1):
        build, merge = jobs[f"build-level{level}"], jobs[f"merge-level{level}"]
        assert build["strategy"]["matrix"] == f"${{{{ fromJSON(needs.plan.outputs.level{level}) }}}}"
        assert build["runs-on"] == "${{ matrix.runner }}"  # native runner per platform
        assert 'factory publish "$IMAGE" --platform "$PLATFORM" --push-by-digest-only' in text_of(build)
        assert "actions/upload-artifact" in text_of(build) and "digest.txt" in text_of(build)
        assert "actions/download-artifact" in text_of(merge)
        assert 'factory merge "$IMAGE" "${args[@]}"' in text_of(merge) and "--digest" in text_of(merge)
        assert merge["needs"] == ["plan", f"build-level{level}"]
    assert jobs["build-level1"]["needs"] == ["plan", "merge-level0"]  # children build on merged parents
    assert "factory publish --all" in text_of(jobs["publish-rest"])


def test_pr_validates_renders_plans_and_builds_without_pushing():
    jobs = workflow("pr.yml")["jobs"]
    text = "".join(text_of(j) for j in jobs.values())
    for command in ("factory validate", "factory render --check", "factory plan", "docker buildx bake"):
        assert command in text
    assert "type=cacheonly" in text
    assert "push=true" not in text and "--push" not in text and not SIGNS.search(text)
    assert all(j.get("permissions", {}).get("id-token") is None for j in jobs.values())


def test_nightly_runs_on_a_schedule_and_either_opens_a_pr_or_publishes():
    doc = workflow("nightly.yml")
    assert doc["on"]["schedule"]
    bump, publish = doc["jobs"]["bump"], doc["jobs"]["publish"]
    assert "factory drift --update --commit" in text_of(bump) and "create-pull-request" in text_of(bump)
    assert "FACTORY_NIGHTLY_PUBLISH != 'true'" in bump["if"] and "FACTORY_NIGHTLY_PUBLISH == 'true'" in publish["if"]
    assert "factory nightly" in text_of(publish)
    assert publish["concurrency"]["group"] == workflow("release.yml")["concurrency"]["group"]
