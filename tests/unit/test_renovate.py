"""The Renovate preset (renovate/base-images.json) against every tag the factory writes.

Renovate applies the package rules that match a dependency in order (a later rule's ``versioning``
wins), parses the current tag and every tag in the registry with that versioning, and proposes only
tags with the same ``compatibility`` and a higher major/minor/patch (a missing part counts as 0);
a current tag its versioning cannot parse gets digest updates only. This emulates that (the preset's
JavaScript regexes translated to Python: ``(?<name>`` -> ``(?P<name>``, ASCII digits as in RE2).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from factory.core.versioning import Version, floating_tags, immutable_tag, tag_prefix

ROOT = Path(__file__).resolve().parents[2]
PRESET = json.loads((ROOT / "renovate" / "base-images.json").read_text())
IMAGE = "registry.example.com/myorg/base"  # the preset's argument, {{arg0}}

# Names as the org writes them (every manifest in the repository and the demo) and awkward ones.
NAMES = sorted({p.stem for p in (ROOT / "manifests").glob("*.yaml")}
               | {p.stem for p in (ROOT / "demo" / "manifests").glob("*.yaml")}
               | {"a", "x.y_z", "node-24", "python-3.11-slim-bookworm", "debian-12", "debian-12-minbase", "v1",
                  "tool-v2x"})
VERSIONS = [Version(0, 1, 0), Version(1, 0, 0), Version(1, 0, 1), Version(1, 2, 0), Version(2, 0, 0)]


def js_regex(text: str) -> re.Pattern[str]:
    return re.compile(text.replace("(?<", "(?P<"), re.ASCII)


def applies(rule: dict, package: str, current: str) -> bool:
    """Renovate's matchers as the preset uses them (with {{arg0}} replaced by IMAGE)."""
    if "docker" not in rule.get("matchDatasources", ["docker"]):
        return False
    if package not in [n.replace("{{arg0}}", IMAGE) for n in rule.get("matchPackageNames", [])]:
        return False
    pattern = rule.get("matchCurrentValue")
    return pattern is None or bool(js_regex(pattern.strip("/")).search(current))


def versioning_for(current: str, package: str = IMAGE) -> re.Pattern[str] | None:
    chosen = None
    for rule in PRESET["packageRules"]:
        if applies(rule, package, current) and "versioning" in rule:
            chosen = rule["versioning"]
    return js_regex(chosen.removeprefix("regex:")) if chosen else None


def parse(tag: str, scheme: re.Pattern[str]) -> tuple[str, tuple[int, int, int]] | None:
    m = scheme.match(tag)
    if not m:
        return None
    parts = m.groupdict()
    return parts.get("compatibility") or "", tuple(int(parts.get(k) or 0) for k in ("major", "minor", "patch"))


def read(tag: str):
    """How Renovate reads ``tag`` when it is the current value: (compatibility, release) or None."""
    scheme = versioning_for(tag)
    return parse(tag, scheme) if scheme else None


def proposals(current: str, tags: list[str]) -> list[str]:
    """The tags Renovate would offer to replace ``current`` with (before choosing one per bucket)."""
    scheme = versioning_for(current)
    mine = parse(current, scheme) if scheme else None
    if mine is None:
        return []  # not a version: digest updates only
    found = [(parse(t, scheme), t) for t in tags]
    return sorted((t for p, t in found if p and p[0] == mine[0] and p[1] > mine[1]),
                  key=lambda t: parse(t, scheme)[1])


def factory_tags(name: str) -> list[str]:
    """Every tag the factory writes for ``name`` and its debug variant over VERSIONS."""
    tags = set()
    for debug in (False, True):
        prefix = tag_prefix(name, debug=debug)
        for v in VERSIONS:
            tags.add(immutable_tag(prefix, v))
            tags.update(floating_tags(prefix, v))
    return sorted(tags)


ALL_TAGS = sorted({t for n in NAMES for t in factory_tags(n)})


# --- the preset's shape ------------------------------------------------------------------------


def test_every_rule_is_scoped_to_the_org_image_on_docker():
    assert PRESET["$schema"] == "https://docs.renovatebot.com/renovate-schema.json"
    for rule in PRESET["packageRules"]:
        assert rule["matchDatasources"] == ["docker"]
        assert rule["matchPackageNames"] == ["{{arg0}}"], "one argument: the image without a tag"
    assert PRESET["packageRules"][0]["pinDigests"] is True
    assert "matchCurrentValue" not in PRESET["packageRules"][0], "the base rule covers every tag"


def test_versioning_regexes_have_the_groups_renovate_needs():
    for rule in PRESET["packageRules"]:
        if "versioning" in rule:
            text = rule["versioning"]
            assert text.startswith("regex:^") and text.endswith("$")
            assert "(?<compatibility>" in text and "(?<major>" in text


def test_rules_do_not_apply_to_other_images():
    assert versioning_for("deb-v1", package="registry.example.com/other/base") is None
    assert versioning_for("deb-v1", package="docker.io/library/debian") is None


# --- every tag the factory writes ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("debug", [False, True])
def test_every_factory_tag_reads_as_its_prefix_and_version(name, debug):
    prefix = tag_prefix(name, debug=debug)
    for v in VERSIONS:
        assert read(immutable_tag(prefix, v)) == (prefix, (v.major, v.minor, v.patch))
        minor_tag, major_tag, bare = floating_tags(prefix, v)
        assert read(minor_tag) == (prefix, (v.major, v.minor, 0))
        assert read(major_tag) == (prefix, (v.major, 0, 0))
        if not re.search(r"-v\d+$", bare):
            assert read(bare) is None, "a bare <name> is not a version: digest updates only"


@pytest.mark.parametrize("name", NAMES)
def test_a_major_tag_is_offered_only_the_next_major_of_the_same_image(name):
    assert proposals(f"{name}-v1", ALL_TAGS) == [f"{name}-v2"]
    assert proposals(f"{name}-v2", ALL_TAGS) == []
    assert proposals(f"{name}-debug-v1", ALL_TAGS) == [f"{name}-debug-v2"]


@pytest.mark.parametrize("name", NAMES)
def test_a_minor_tag_is_offered_newer_minor_tags_only(name):
    assert proposals(f"{name}-v1.0", ALL_TAGS) == [f"{name}-v1.2", f"{name}-v2.0"]


@pytest.mark.parametrize("name", NAMES)
def test_an_immutable_tag_is_offered_newer_immutable_tags_only(name):
    assert proposals(f"{name}-v1.0.0", ALL_TAGS) == [f"{name}-v1.0.1", f"{name}-v1.2.0", f"{name}-v2.0.0"]
    assert proposals(f"{name}-debug-v1.0.1", ALL_TAGS) == [f"{name}-debug-v1.2.0", f"{name}-debug-v2.0.0"]


def test_prod_is_never_offered_debug_or_another_image():
    for name in NAMES:
        for current in (f"{name}-v0", f"{name}-v0.1", f"{name}-v0.1.0"):
            offered = proposals(current, ALL_TAGS)
            assert offered and all(t.startswith(f"{name}-v") for t in offered), (current, offered)
    # "debian-12" and "debian-12-minbase" share a beginning: still separate images
    assert all(t.startswith("debian-12-v") for t in proposals("debian-12-v1.0.0", ALL_TAGS))


# --- tags it must not misparse ------------------------------------------------------------------


@pytest.mark.parametrize("tag", [
    "latest", "1.2.3", "12-slim", "v1.2.3", "-v1.2.3",
    "sha256-" + "a" * 64 + ".sig", "sha256-" + "a" * 64 + ".att",  # cosign's signature/attestation tags
    "deb-v1.2.3-rc1", "deb-v1.2.3.4", "deb-V1", "deb-v", "deb-vx.1", "deb-v1.", "deb-v1.2.",
    "deb-v١", "deb-v1.٢.3",  # non-ASCII digits: Renovate's RE2 \d is ASCII
])
def test_tags_the_factory_never_writes_are_not_versions(tag):
    assert read(tag) is None


def test_names_with_digits_and_v_inside_keep_them_in_the_compatibility():
    assert read("node-24-v1.2.3") == ("node-24", (1, 2, 3))
    assert read("tool-v2x-v3") == ("tool-v2x", (3, 0, 0))
    assert read("v1-v1.0") == ("v1", (1, 0, 0))


def test_known_limit_a_bare_name_ending_in_v_and_digits_reads_as_a_version():
    """`<name>` alone for an image named like `tool-v2` looks like tool's major tag: such pins get
    offered other `tool-vN` images. docs/catalog.md says to pin `<name>-v<major>`, never the bare name."""
    assert read("tool-v2") == ("tool", (2, 0, 0))
    assert "bare" in (ROOT / "docs" / "catalog.md").read_text()


def test_debug_tags_get_the_never_deploy_note_and_prod_tags_do_not():
    note_rule = next(r for r in PRESET["packageRules"] if "prBodyNotes" in r)
    for tag in ALL_TAGS:
        prefix = next(n for n in sorted(NAMES, key=len, reverse=True)
                      if tag == n or tag.startswith((f"{n}-v", f"{n}-debug")))
        is_debug = tag.startswith(f"{prefix}-debug")
        assert applies(note_rule, IMAGE, tag) == is_debug, tag
    assert "never deploy" in note_rule["prBodyNotes"][0]


def test_docs_show_how_to_extend_the_preset():
    docs = (ROOT / "docs" / "catalog.md").read_text()
    assert "//renovate/base-images(" in docs
    assert "-v1@sha256:" in docs
