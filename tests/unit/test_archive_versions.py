"""Version order of dpkg (python-debian) and apk (univers), as tables."""

from __future__ import annotations

import pytest

from factory.archive import versions

DPKG = [
    ("1.0", "1.0", 0),
    ("0:1.0", "1.0", 0),                         # epoch 0 is the default
    ("1:1.0", "2.0", 1),                         # an epoch beats any upstream version
    ("2.0-1", "1:1.0-1", -1),
    ("1.0~rc1", "1.0", -1),                      # ~ sorts before everything, even the end
    ("1.0~~", "1.0~", -1),
    ("1.0~beta1+deb12u1", "1.0", -1),
    ("2.6.1", "2.6.2", -1),
    ("2.36-9+deb12u7", "2.36-9+deb12u14", -1),   # numeric, not lexical: 7 < 14
    ("3.7.9-2+deb12u3", "3.7.9-2+deb12u3+b1", -1),  # binNMU +b1 after its source version
    ("1.0-1", "1.0-1+b1", -1),
    ("1.0-1+b1", "1.0-1+deb12u1", -1),           # "+b" < "+d"
    ("2026b-0+deb12u1", "2026f-0+deb12u1", -1),
    ("1.0+dfsg-1", "1.0-1", 1),
    ("1.0-1ubuntu1", "1.0-1ubuntu1.1", -1),
    ("3.0.2-0ubuntu1.15", "3.0.2-0ubuntu1.9", 1),
    ("1.0a", "1.0", 1),
]

APK = [
    ("1.2.3-r0", "1.2.3-r0", 0),
    ("1.2.3-r0", "1.2.3-r1", -1),
    ("1.2.3-r10", "1.2.3-r9", 1),
    ("1.36.1-r29", "1.36.1-r30", -1),
    ("1.10-r0", "1.9-r0", 1),
    ("3.3.2-r0", "3.3.10-r0", -1),
    ("1.2.3_rc1-r0", "1.2.3-r0", -1),            # _rc before the release
    ("1.2_rc10", "1.2_rc9", 1),
    ("1.2.3_alpha1", "1.2.3_beta1", -1),
    ("1.2.3_beta2", "1.2.3_rc1", -1),
    ("1.2_pre1", "1.2_rc1", -1),
    ("1.2.3_p1-r0", "1.2.3-r0", 1),              # _p (patch) after the release
    ("1.2_p1", "1.2.1", -1),
    ("1.0_p1-r1", "1.0_p1-r0", 1),
    ("1.2.3a-r0", "1.2.3b-r0", -1),
    ("1.2_git20240101", "1.2", 1),               # post-release, read as _p (see versions.py)
    ("0_git20240101-r0", "0_git20240102-r0", -1),
]


@pytest.mark.parametrize(("a", "b", "expected"), DPKG)
@pytest.mark.parametrize("distro", ["debian", "ubuntu"])
def test_dpkg_order(distro, a, b, expected):
    assert versions.compare(distro, a, b) == expected
    assert versions.compare(distro, b, a) == -expected


@pytest.mark.parametrize(("a", "b", "expected"), APK)
def test_apk_order(a, b, expected):
    assert versions.compare("alpine", a, b) == expected
    assert versions.compare("alpine", b, a) == -expected


def test_sort_key_sorts_as_the_package_manager():
    assert sorted(["1.0-1+b1", "1:0.1", "1.0~rc1-1", "1.0-1"], key=lambda v: versions.sort_key("debian", v)) == [
        "1.0~rc1-1", "1.0-1", "1.0-1+b1", "1:0.1"]
    assert sorted(["1.0_p1-r0", "1.0-r1", "1.0_rc1-r0", "1.0-r0"], key=lambda v: versions.sort_key("alpine", v)) == [
        "1.0_rc1-r0", "1.0-r0", "1.0-r1", "1.0_p1-r0"]


def test_not_a_version_is_a_value_error_naming_it():
    with pytest.raises(versions.InvalidPackageVersion, match="'bad version!' is not an apk version"):
        versions.compare("alpine", "bad version!", "1.0")
    with pytest.raises(versions.InvalidPackageVersion, match=r"'1\.0 beta' is not a dpkg version"):
        versions.compare("debian", "1.0 beta", "1.0")
    with pytest.raises(ValueError, match="unknown distro 'fedora'"):
        versions.compare("fedora", "1", "2")
