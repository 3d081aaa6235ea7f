import pytest

from factory.build import buildx as build
from factory.core import labels, platforms


def binfmt(tmp_path, **handlers):
    for name, state in handlers.items():
        (tmp_path / f"qemu-{name}").write_text(f"{state}\ninterpreter /usr/libexec/qemu-binfmt/{name}-binfmt-P\n")
    return tmp_path


def test_host_platform_needs_no_emulation(tmp_path):
    host = str(platforms.host())
    assert build.unbuildable_platforms([host], binfmt_dir=binfmt(tmp_path)) == []


def test_foreign_platform_needs_an_enabled_handler(tmp_path, monkeypatch):
    monkeypatch.setattr(platforms, "host", lambda: platforms.parse("linux/amd64"))
    wanted = ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert build.unbuildable_platforms(wanted, binfmt_dir=binfmt(tmp_path)) == ["linux/arm64", "linux/arm/v7"]
    assert build.unbuildable_platforms(wanted, binfmt_dir=binfmt(tmp_path, aarch64="disabled", arm="enabled")) == [
        "linux/arm64"]
    assert build.unbuildable_platforms(wanted, binfmt_dir=binfmt(tmp_path, aarch64="enabled")) == []


def test_created_timestamp_is_rfc3339_utc():
    assert labels.created_timestamp(1704067200) == "2024-01-01T00:00:00Z"


BUILDKIT_FAILURE = """\
#5 [linux/amd64 2/2] RUN apt-get install -y lib32gcc-s1
#7 [linux/arm64 2/2] RUN apt-get install -y lib32gcc-s1
#7 11.76 E: Unable to locate package lib32gcc-s1
#7 ERROR: process "/bin/sh -c apt-get install -y lib32gcc-s1" did not complete successfully: exit code: 100
#5 CANCELED
------
 > [linux/arm64 2/2] RUN apt-get install -y lib32gcc-s1:
------
ERROR: failed to solve: process "/bin/sh -c apt-get install -y lib32gcc-s1" did not complete successfully
"""


@pytest.mark.parametrize(("output", "expected"), [
    (BUILDKIT_FAILURE, ["linux/arm64"]),
    ("#3 [linux/arm/v7 internal] load metadata for x\n#3 ERROR: not found\n", ["linux/arm/v7"]),
    ("#4 [2/2] RUN false\n#4 ERROR: exit code: 1\n > [2/2] RUN false:\n", []),  # one platform: none named
    ("#1 [internal] load build definition\n#1 ERROR: no Dockerfile\n", []),
    ("ERROR: failed to solve: no space left on device\n", []),
], ids=["arm64-run", "variant", "single-platform", "internal", "no-steps"])
def test_failed_platforms_are_read_from_buildkit_output(output, expected):
    assert build.failed_platforms(output) == expected
