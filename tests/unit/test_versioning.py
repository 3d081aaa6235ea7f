import pytest

from factory.core.versioning import (
    Version,
    floating_tags,
    floating_tags_to_move,
    immutable_tag,
    latest,
    next_version,
    tag_prefix,
    versions_in,
)

TAGS = ["py-v1.2.0", "py-v1.2.1", "py-v1.3.0", "py-v2.0.0", "py-v1.2", "py", "py-debug-v1.2.0", "pyx-v1.2.7",
        "sha256-abc.sig", "py-v1.2.01", "py-v1.2.1-rc1"]


def test_versions_in_matches_only_this_prefix_and_exact_form():
    assert versions_in(TAGS, "py") == [Version(1, 2, 0), Version(1, 2, 1), Version(1, 3, 0), Version(2, 0, 0)]
    assert versions_in(TAGS, "py-debug") == [Version(1, 2, 0)]
    assert versions_in(["a.b-v1.0.0", "aXb-v1.0.0"], "a.b") == [Version(1, 0, 0)]  # prefix is not a regex


@pytest.mark.parametrize(("major", "minor", "expected"),
                         [(1, 2, "1.2.2"), (1, 3, "1.3.1"), (1, 4, "1.4.0"), (3, 0, "3.0.0")])
def test_next_version_comes_from_existing_tags(major, minor, expected):
    assert str(next_version(versions_in(TAGS, "py"), major, minor)) == expected


def test_latest():
    vs = versions_in(TAGS, "py")
    assert latest(vs, 1, 2) == Version(1, 2, 1)
    assert latest(vs, 9, 9) is None


def test_tag_names():
    v = Version(1, 2, 3)
    assert immutable_tag(tag_prefix("py"), v) == "py-v1.2.3"
    assert immutable_tag(tag_prefix("py", debug=True), v) == "py-debug-v1.2.3"
    assert floating_tags("py", v) == ["py-v1.2", "py-v1", "py"]


def test_floating_tags_move_only_when_newest_in_scope():
    existing = versions_in(TAGS, "py")  # 1.2.0, 1.2.1, 1.3.0, 2.0.0
    assert floating_tags_to_move("py", Version(1, 2, 2), existing) == ["py-v1.2"]
    assert floating_tags_to_move("py", Version(1, 3, 1), existing) == ["py-v1.3", "py-v1"]
    assert floating_tags_to_move("py", Version(2, 0, 1), existing) == ["py-v2.0", "py-v2", "py"]
    assert floating_tags_to_move("py", Version(1, 0, 0), []) == ["py-v1.0", "py-v1", "py"]
