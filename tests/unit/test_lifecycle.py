from datetime import date

import pytest

from factory.core import lifecycle


@pytest.mark.parametrize(("distro", "release", "eol"), [
    ("debian", "11", date(2026, 8, 31)),
    ("debian", "12", date(2028, 6, 30)),
    ("debian", "12.5", date(2028, 6, 30)),  # point releases share the major's lifecycle
    ("debian", "13", date(2030, 6, 30)),
    ("ubuntu", "20.04", date(2025, 5, 31)),
    ("ubuntu", "22.04", date(2027, 4, 1)),
    ("ubuntu", "24.04", date(2029, 5, 31)),
    ("alpine", "3.17", date(2024, 11, 22)),
    ("alpine", "3.20", date(2026, 4, 1)),
    ("alpine", "3.22", date(2027, 5, 1)),
    ("distroless", "12", date(2028, 6, 30)),
])
def test_lookup(distro, release, eol):
    row = lifecycle.lookup(distro, release)
    assert row is not None and row.eol == eol and row.source.startswith("https://")


@pytest.mark.parametrize(("distro", "release"), [
    ("ubuntu", "23.10"), ("ubuntu", "22"), ("alpine", "3.2"), ("debian", None), ("scratch", "1"),
])
def test_lookup_unknown(distro, release):
    assert lifecycle.lookup(distro, release) is None


def test_required_rows_present_and_unique():
    keys = [(row.distro, row.release) for row in lifecycle.LIFECYCLE]
    assert len(keys) == len(set(keys))
    required = ({("debian", r) for r in ("11", "12", "13")} | {("ubuntu", r) for r in ("20.04", "22.04", "24.04")}
                | {("alpine", f"3.{n}") for n in range(17, 23)} | {("distroless", r) for r in ("11", "12", "13")})
    assert required <= set(keys)


def test_distroless_follows_the_debian_release_it_is_built_on():
    for release in ("11", "12", "13"):
        assert lifecycle.lookup("distroless", release).eol == lifecycle.lookup("debian", release).eol


def test_alpine_branches_get_later_with_the_version():
    alpine = sorted((row for row in lifecycle.LIFECYCLE if row.distro == "alpine"),
                    key=lambda row: tuple(map(int, row.release.split("."))))
    assert [row.eol for row in alpine] == sorted(row.eol for row in alpine)


def test_newest():
    assert lifecycle.newest("debian").release == "13"
    assert lifecycle.newest("scratch") is None


def test_label():
    assert lifecycle.lookup("debian", "12").label == "debian 12 bookworm"
    assert lifecycle.lookup("alpine", "3.20").label == "alpine 3.20"
