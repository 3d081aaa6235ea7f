"""Tag names and version numbers. The registry's tag list is the source of truth for patch numbers.

Tags for an image ``<name>`` with manifest version ``major.minor``:
  immutable   <name>-v<major>.<minor>.<patch>     written once, never moved
  floating    <name>-v<major>.<minor>, <name>-v<major>, <name>
The debug variant uses ``<name>-debug`` in place of ``<name>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DEBUG_SUFFIX = "-debug"


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def tag_prefix(name: str, *, debug: bool = False) -> str:
    return name + DEBUG_SUFFIX if debug else name


def immutable_tag(prefix: str, version: Version) -> str:
    return f"{prefix}-v{version}"


def floating_tags(prefix: str, version: Version) -> list[str]:
    """Most specific first: the order in which they are moved."""
    return [f"{prefix}-v{version.major}.{version.minor}", f"{prefix}-v{version.major}", prefix]


def versions_in(tags: Iterable[str], prefix: str) -> list[Version]:
    """The immutable versions of exactly this prefix (``foo`` does not match ``foo-debug-v1.0.0``)."""
    pattern = re.compile(rf"^{re.escape(prefix)}-v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
    found = (pattern.match(t) for t in tags)
    return sorted(Version(int(m[1]), int(m[2]), int(m[3])) for m in found if m)


def latest(versions: Iterable[Version], major: int, minor: int) -> Version | None:
    same = [v for v in versions if (v.major, v.minor) == (major, minor)]
    return max(same) if same else None


def next_version(versions: Iterable[Version], major: int, minor: int) -> Version:
    current = latest(versions, major, minor)
    return Version(major, minor, current.patch + 1 if current else 0)


def floating_tags_to_move(prefix: str, new: Version, existing: Iterable[Version]) -> list[str]:
    """Floating tags that should point at ``new``: a tag moves only when ``new`` is the newest
    version within that tag's scope, so patching an old 1.1 line never moves ``-v1`` off 1.2."""
    existing = list(existing)
    scopes = [
        [v for v in existing if (v.major, v.minor) == (new.major, new.minor)],
        [v for v in existing if v.major == new.major],
        existing,
    ]
    return [tag for tag, scope in zip(floating_tags(prefix, new), scopes, strict=True) if all(new >= v for v in scope)]
