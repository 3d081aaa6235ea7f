import pytest

from factory.core import platforms
from factory.core.platforms import Platform


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("LINUX/AMD64", Platform("linux", "amd64")),
        ("linux/arm64", Platform("linux", "arm64")),
        ("linux/arm64/v8", Platform("linux", "arm64")),
        ("linux/aarch64", Platform("linux", "arm64")),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
        ("linux/armhf", Platform("linux", "arm", "v7")),
        ("linux/arm/v6", Platform("linux", "arm", "v6")),
        ("linux/ppc64le", Platform("linux", "ppc64le")),
        ("linux/s390x", Platform("linux", "s390x")),
    ],
)
def test_parse_normalises(text, expected):
    assert platforms.parse(text) == expected


@pytest.mark.parametrize("text", ["", "linux", "amd64", "linux/", "windows/amd64", "linux/mips", "linux/arm64/v8/x"])
def test_parse_rejects_with_the_value_quoted(text):
    with pytest.raises(ValueError, match=repr(text).replace("[", r"\[").replace("(", r"\(")):
        platforms.parse(text)


def test_parse_all_dedupes_keeping_order():
    got = platforms.parse_all(["linux/arm64", "linux/amd64", "linux/aarch64"])
    assert [str(p) for p in got] == ["linux/arm64", "linux/amd64"]


def test_names_derived_from_the_table():
    arm = platforms.parse("linux/arm64")
    armv7 = platforms.parse("linux/arm/v7")
    assert (arm.slug, arm.qemu_name, arm.debian_arch, arm.key) == ("linux-arm64", "aarch64", "arm64", "arm64")
    assert (armv7.slug, armv7.debian_arch, str(armv7)) == ("linux-arm-v7", "armhf", "linux/arm/v7")


@pytest.mark.parametrize(("text", "qemu", "debian", "alpine"), [
    ("linux/amd64", "x86_64", "amd64", "x86_64"),
    ("linux/arm64", "aarch64", "arm64", "aarch64"),
    ("linux/arm/v7", "arm", "armhf", "armv7"),
    ("linux/arm/v6", "arm", "armel", "armhf"),
    ("linux/ppc64le", "ppc64le", "ppc64el", "ppc64le"),
    ("linux/s390x", "s390x", "s390x", "s390x"),
    ("linux/riscv64", "riscv64", "riscv64", "riscv64"),
    ("linux/386", "i386", "i386", "x86"),
])
def test_every_row_of_the_table(text, qemu, debian, alpine):
    p = platforms.parse(text)
    assert (p.qemu_name, p.debian_arch, p.alpine_arch) == (qemu, debian, alpine)


def test_every_alias_parses_to_its_row():
    for row in platforms.ARCHES:
        for name in (row.key, *row.aliases):
            assert platforms.parse(f"linux/{name}").key == row.key
