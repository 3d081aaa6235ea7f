"""Version order of the package managers, by well-kept libraries, not by hand.

dpkg (Debian, Ubuntu) by python-debian's ``debian_support.Version`` (epochs, ``~``, revisions as dpkg
orders them); apk (Alpine) by univers' ``AlpineLinuxVersion`` (``_rc``, ``_p``, ``-r``). ``compare`` and
``sort_key`` are the one place the factory orders package versions.

univers orders apk versions by Gentoo's rules, which lack apk's post-release suffixes ``_cvs``, ``_svn``,
``_git`` and ``_hg`` (``0_git20240101-r0`` is common in Alpine). They are read as ``_p``: after the plain
version and before the next one, where apk puts them too; only the order between a ``_git`` and a ``_p``
of the same version differs from apk's (``_git`` first there), which no Alpine package mixes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from debian.debian_support import Version as DpkgVersion
from univers.versions import AlpineLinuxVersion, InvalidVersion

APT_DISTROS = frozenset({"debian", "ubuntu"})
_APK_POST_RELEASE = re.compile(r"_(?:cvs|svn|git|hg)(\d*)")


class InvalidPackageVersion(ValueError):
    """A version string the distro's package manager would not accept."""


def _dpkg(version: str) -> DpkgVersion:
    try:
        return DpkgVersion(version)
    except ValueError as e:
        raise InvalidPackageVersion(f"{version!r} is not a dpkg version: {e}") from e


def _apk(version: str) -> AlpineLinuxVersion:
    try:
        return AlpineLinuxVersion(_APK_POST_RELEASE.sub(r"_p\1", version))
    except InvalidVersion as e:
        raise InvalidPackageVersion(f"{version!r} is not an apk version (e.g. 1.2.3_rc1-r0)") from e


def sort_key_for(distro: str) -> Callable[[str], Any]:
    """The key function ordering version strings of ``distro`` as its package manager does."""
    if distro in APT_DISTROS:
        return _dpkg
    if distro == "alpine":
        return _apk
    raise ValueError(f"unknown distro {distro!r}: expected debian, ubuntu or alpine")


def sort_key(distro: str, version: str) -> Any:
    """A key for ``sorted``: ``sorted(vs, key=lambda v: sort_key("debian", v))``."""
    return sort_key_for(distro)(version)


def compare(distro: str, a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, equal to or newer than ``b`` for ``distro``'s package manager.
    Raises ``InvalidPackageVersion`` (a ValueError) for a string that is not a version."""
    key = sort_key_for(distro)
    ka, kb = key(a), key(b)
    return int(bool(ka > kb)) - int(bool(ka < kb))
