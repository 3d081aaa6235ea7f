"""docs/policy.md is generated from the rule registry: fail when the committed file is stale."""

import json
from pathlib import Path

import pytest

from factory import cli
from factory.core import lifecycle
from factory.spec import policy

DOCS = Path(__file__).resolve().parents[2] / "docs" / "policy.md"


def test_committed_policy_docs_are_current():
    assert DOCS.read_text(encoding="utf-8") == policy.render_docs(), (
        f"docs/policy.md is stale: run `{policy.DOCS_COMMAND}`"
    )


def test_docs_list_every_rule_and_lifecycle_row():
    text = policy.render_docs()
    assert policy.DOCS_COMMAND in text.splitlines()[0]
    for rule in policy.RULES:
        assert f"| {rule.id} | `{rule.slug}` | {rule.severity} | {rule.stage} |" in text
    for row in lifecycle.LIFECYCLE:
        assert f"| {row.distro} | {row.release} |" in text and str(row.eol) in text
    assert "waivers:" in text and "expires:" in text


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out


def test_policy_command_prints_the_table(capsys):
    code, out = run_cli(["policy"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "SEVERITY", "STAGE", "WAIVABLE", "SLUG", "RULE"]
    assert len(lines) == 1 + len(policy.RULES)
    assert lines[1].split()[:5] == ["POL-001", "error", "manifest", "yes", "pinned-tag"]


def test_policy_command_json(capsys):
    code, out = run_cli(["policy", "--format", "json"], capsys)
    rows = json.loads(out)
    assert code == 0 and [r["id"] for r in rows] == [r.id for r in policy.RULES]
    assert rows[0] == {"id": "POL-001", "slug": "pinned-tag", "severity": "error", "stage": "manifest",
                       "waivable": True, "title": policy.PINNED_TAG.title, "rationale": policy.PINNED_TAG.rationale}


def test_policy_command_markdown_is_the_docs(capsys):
    code, out = run_cli(["policy", "--format", "markdown"], capsys)
    assert code == 0 and out == policy.render_docs()
