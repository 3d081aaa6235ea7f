"""The preset's grouping fix: every org image is one Renovate package (the repository), so without it
tag updates of two images land on one branch titled "Update ... Docker tag". ``additionalBranchPrefix``
names the tag's image part, and ``commitMessageTopic`` names it for major/minor/patch updates only
(set for digest updates too, it broke their titles).

Renovate's ``replace`` template helper is ``context.replace(new RegExp(find, 'g'), replace)``; this
applies the template the same way (the JavaScript regex is also a Python one here).
"""

from __future__ import annotations

import re

import pytest

from factory.core.versioning import Version, floating_tags, immutable_tag, tag_prefix
from tests.unit.test_renovate import NAMES, PRESET

HELPER = re.compile(r"\{\{\{replace '((?:[^'\\]|\\.)*)' '((?:[^'\\]|\\.)*)' (\w+)\}\}\}")


def render(template: str, **context: str) -> str:
    """Renovate's triple-stash ``replace`` helper (the only one the preset uses), then what is left."""
    def helper(m: re.Match[str]) -> str:
        find, replacement, name = m[1].replace("\\'", "'"), m[2], m[3]
        return re.sub(find, replacement, context[name])

    out = HELPER.sub(helper, template)
    assert "{{" not in out, f"an unhandled template in {template!r}"
    return out


def rule_with(key: str) -> list[dict]:
    return [r for r in PRESET["packageRules"] if key in r]


def test_the_branch_prefix_is_in_the_rule_every_org_tag_matches():
    [rule] = rule_with("additionalBranchPrefix")
    assert "matchCurrentValue" not in rule and "matchUpdateTypes" not in rule


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("debug", [False, True])
def test_every_tag_form_of_an_image_gets_that_images_branch(name, debug):
    [rule] = rule_with("additionalBranchPrefix")
    prefix = tag_prefix(name, debug=debug)
    v = Version(1, 2, 3)
    for tag in [immutable_tag(prefix, v), *floating_tags(prefix, v)]:
        if re.search(r"-v\d+$", name) and tag == prefix:
            continue  # a bare name ending in -v<digits> reads as a major tag (docs/catalog.md: pin <name>-v<major>)
        assert render(rule["additionalBranchPrefix"], currentValue=tag) == f"{prefix}-", tag


def test_two_images_and_a_debug_variant_get_three_branches():
    [rule] = rule_with("additionalBranchPrefix")
    branches = {render(rule["additionalBranchPrefix"], currentValue=t)
                for t in ["debian-12-slim-v1", "python-3.11-slim-bookworm-v1", "python-3.11-slim-bookworm-debug-v1"]}
    assert len(branches) == 3


def test_the_commit_topic_names_the_image_for_tag_updates_only():
    [rule] = rule_with("commitMessageTopic")
    assert sorted(rule["matchUpdateTypes"]) == ["major", "minor", "patch"], "never for digest updates"
    assert render(rule["commitMessageTopic"], currentValue="python-3.11-slim-bookworm-v1.0.3") \
        == "org base image python-3.11-slim-bookworm"
