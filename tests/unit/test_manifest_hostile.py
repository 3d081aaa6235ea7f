"""The hostile and malformed corpus: every file in tests/unit/hostile/ must be refused, quickly,
with a ManifestError that names the right key, and with nothing but the intended problem.

Each corpus file starts with one comment line: ``# <what it is> => key <key.path>`` (the problem
must be about that key, and every problem reported must be about that key or a key under it) or
``=> text <words>`` (a file-level problem: exactly one problem, containing those words).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from factory.core.errors import ManifestError
from factory.spec import config, manifest

HOSTILE = Path(__file__).parent / "hostile"
TIME_LIMIT = 1.0  # seconds per file, on a slow CI machine; most take a millisecond
_EXPECT = re.compile(r"^# (?P<what>.+) => (?P<kind>key|text) (?P<expect>.+)$")


def _first_line(data: bytes) -> str:
    text = data.decode("utf-16") if data.startswith(b"\xff\xfe") else data.decode("utf-8-sig", "replace")
    return text.splitlines()[0] if text else ""


def _cases() -> list[tuple[Path, str, str]]:
    cases = []
    for path in sorted(HOSTILE.glob("*.yaml")):
        match = _EXPECT.match(_first_line(path.read_bytes()))
        assert match, f"{path.name}: first line must be '# <what> => key|text <expected>'"
        cases.append((path, match["kind"], match["expect"]))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> config.Settings:
    root = tmp_path_factory.mktemp("repo")
    (root / "manifests").mkdir()  # empty: parents named by the corpus do not exist
    (root / "factory.yaml").write_text("manifests_dir: manifests\n")
    return config.load(root / "factory.yaml", environ={})


VALID = """\
apiVersion: factory/v1
name: huge
version: "1.0"
description: A valid manifest that absurd values are appended to
upstream: {image: docker.io/library/debian, tag: 12-slim, digest: "sha256:%s"}
distro: debian
""" % ("ab" * 32)


def test_the_base_of_the_absurd_cases_is_valid(settings, tmp_path):
    (tmp_path / "huge.yaml").write_text(VALID)
    assert manifest.load_all(settings, [tmp_path / "huge.yaml"])["huge"].distro == "debian"


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 50


@pytest.mark.parametrize(("path", "kind", "expect"), CASES, ids=[c[0].stem for c in CASES])
def test_hostile_manifest_is_refused_naming_its_key(settings, path, kind, expect):
    started = time.perf_counter()
    with pytest.raises(ManifestError) as caught:
        manifest.load_all(settings, [path])
    elapsed = time.perf_counter() - started

    assert elapsed < TIME_LIMIT, f"took {elapsed:.2f}s"
    problems = caught.value.problems
    assert problems, "a ManifestError without problems"
    if kind == "key":
        assert expect in {p.key for p in problems}, str(caught.value)
        strays = [p for p in problems if p.key != expect and not p.key.startswith(expect + ".")]
        assert not strays, f"problems about other keys: {strays}"
        assert all(p.line or "is missing" in p.message for p in problems), "a key problem carries its line"
    else:
        assert len(problems) == 1, str(caught.value)
        assert expect in problems[0].message, str(caught.value)
    assert all(len(p.message) < 600 for p in problems), "messages quote values cut short"


# Absurd sizes are made here rather than committed: a megabyte of fixture helps no reviewer.
@pytest.mark.parametrize(("extra", "expect_key", "expect_text"), [
    ("packages:\n" + "".join(f"  - p{i}\n" for i in range(10_000)), "packages", "10000 items; at most 5000"),
    ("description2: " + "x" * (1024 * 1024) + "\n", "", "a manifest may be at most 256 KiB"),
    ("labels:\n  big: " + "x" * 200_000 + "\n", "labels.big", "200000 characters long"),
], ids=["10k-packages", "1MB-file", "200k-label"])
def test_absurd_sizes_are_refused_fast(settings, tmp_path, extra, expect_key, expect_text):
    path = tmp_path / "huge.yaml"
    path.write_text(VALID + extra)
    started = time.perf_counter()
    with pytest.raises(ManifestError) as caught:
        manifest.load_all(settings, [path])
    assert time.perf_counter() - started < TIME_LIMIT
    assert [p.key for p in caught.value.problems] == [expect_key]
    assert expect_text in caught.value.problems[0].message


def test_a_zero_byte_file_is_refused(settings, tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_bytes(b"")
    with pytest.raises(ManifestError, match="file is empty"):
        manifest.load_all(settings, [path])
