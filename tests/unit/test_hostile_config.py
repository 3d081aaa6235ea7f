"""The hostile and broken factory.yaml corpus: every file in tests/unit/hostile_config/ is refused by
the real CLI (in-process, through ``factory.cli.main``), quickly, with exit code 2, a message naming
the right key, and no traceback.

Each corpus file starts with one comment line: ``# <what it is> => key <key.path>`` (a problem must
be about that key, and every problem reported must be about that key or a key under it) or
``=> text <words>`` (a file-level problem: one message containing those words).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from factory import cli
from factory.core.errors import ConfigError
from factory.spec import config, schemas

CORPUS = Path(__file__).parent / "hostile_config"
TIME_LIMIT = 1.0  # seconds per file, including the CLI's start; most take a few milliseconds
_EXPECT = re.compile(r"^# (?P<what>.+) => (?P<kind>key|text) (?P<expect>.+)$")
# One problem: "<path>:<line>: <key>: <message>" (a file-level problem has no key)
_PROBLEM = re.compile(r"^(?:error: )?(?P<path>\S*factory\.yaml|[A-Z_]+ \(environment\))(?::(?P<line>\d+))?: "
                      r"(?:(?P<key>[\w.]+): )?(?P<message>.*)$")


def _first_line(data: bytes) -> str:
    text = data.decode("utf-16") if data.startswith(b"\xff\xfe") else data.decode("utf-8-sig", "replace")
    return text.splitlines()[0] if text else ""


def _cases() -> list[tuple[Path, str, str]]:
    cases = []
    for path in sorted(CORPUS.glob("*.yaml")):
        match = _EXPECT.match(_first_line(path.read_bytes()))
        assert match, f"{path.name}: first line must be '# <what> => key|text <expected>'"
        cases.append((path, match["kind"], match["expect"]))
    return cases


CASES = _cases()


def run_cli(argv: list[str], capsys) -> tuple[int, str, float]:
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    return exit_.value.code, capsys.readouterr().err, time.perf_counter() - started


def problems_in(stderr: str) -> list[re.Match]:
    return [m for m in map(_PROBLEM.match, stderr.splitlines()) if m]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 50
    assert sum(kind == "key" for _, kind, _ in CASES) >= 40


@pytest.mark.parametrize(("path", "kind", "expect"), CASES, ids=[c[0].stem for c in CASES])
def test_hostile_config_is_refused_naming_its_key(tmp_path, capsys, path, kind, expect):
    repo = tmp_path / "repo"  # a repository of its own: folder checks resolve against it
    repo.mkdir()
    shutil.copy(path, repo / "factory.yaml")
    code, stderr, elapsed = run_cli(["--config", str(repo / "factory.yaml"), "validate"], capsys)

    assert elapsed < TIME_LIMIT, f"took {elapsed:.2f}s"
    assert code == 2, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert stderr.startswith("error: "), stderr
    found = problems_in(stderr)
    assert found, f"no `factory.yaml:LINE: key: message` line in:\n{stderr}"
    if kind == "key":
        keys = {m["key"] for m in found}
        assert expect in keys, stderr
        strays = [k for k in keys if k != expect and not (k or "").startswith(expect + ".")]
        assert not strays, f"problems about other keys: {strays}\n{stderr}"
        assert all(m["line"] for m in found), f"a key problem carries its line:\n{stderr}"
    else:
        assert len(found) == 1 and expect in found[0]["message"], stderr
    assert all(len(m["message"]) < 600 for m in found), "messages quote values cut short"


@pytest.mark.parametrize(("text", "key", "words"), [
    ("registyr: x\n", "registyr", "did you mean 'registry'?"),
    ("policy:\n  scanner_db_unavailable: fial\n", "policy.scanner_db_unavailable", "did you mean 'fail'?"),
    ("policy:\n  fail_on_severities: [CRITICL]\n", "policy.fail_on_severities.0", "did you mean 'CRITICAL'?"),
    ("images_dir: ../../etc\n", "images_dir", "outside the repository"),
    ('vendor: "a\\nRUN id"\n', "vendor", "a single line of text"),
    ("policy:\n  max_size_overhead_percent: .nan\n", "policy.max_size_overhead_percent", "a finite number"),
], ids=["unknown-key", "enum", "enum-in-list", "traversal", "newline", "nan"])
def test_messages_say_what_to_do(tmp_path, text, key, words):
    (tmp_path / "factory.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        config.load(tmp_path / "factory.yaml", environ={})
    line = next(line for line in str(caught.value).splitlines() if f": {key}: " in line)
    assert words in line


def test_a_huge_file_is_refused_fast(tmp_path, capsys):
    (tmp_path / "factory.yaml").write_text("vendor: x\n" + "# padding\n" * 40_000)
    code, stderr, elapsed = run_cli(["--config", str(tmp_path / "factory.yaml"), "validate"], capsys)
    assert (code, elapsed < TIME_LIMIT) == (2, True)
    assert "a factory.yaml may be at most 256 KiB" in stderr and "Traceback" not in stderr


def test_an_environment_override_is_named_when_it_is_bad(tmp_path, capsys, monkeypatch):
    (tmp_path / "factory.yaml").write_text("vendor: myorg\n")
    monkeypatch.setenv("FACTORY_REGISTRY", "ghcr.io\nevil")
    monkeypatch.setenv("FACTORY_TOOLS_PATH", "")  # empty: not an override
    code, stderr, _ = run_cli(["--config", str(tmp_path / "factory.yaml"), "validate"], capsys)
    assert code == 2
    assert [(m["path"], m["key"]) for m in problems_in(stderr)] == [("FACTORY_REGISTRY (environment)", "registry")]


def test_a_symlink_out_of_the_repository_is_refused(tmp_path):
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    repo.mkdir()
    outside.mkdir()
    (repo / "images").symlink_to(outside)
    (repo / "factory.yaml").write_text("images_dir: images\n")
    with pytest.raises(ConfigError, match=r"images_dir: 'images' resolves to .*outside the repository"):
        config.load(repo / "factory.yaml", environ={})


def test_good_folders_and_a_relative_state_dir_resolve_against_the_repository(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "factory.yaml").write_text("manifests_dir: .\nimages_dir: build/images\nstate_dir: ../state\n"
                                       "tools_path: [../tools/bin]\nregistry_client: {retries: 1}\n")
    s = config.load(repo / "factory.yaml", environ={})
    root = repo.resolve()
    assert (s.manifests_dir.resolve(), s.images_dir, s.state_dir.resolve()) == (root, root / "build/images",
                                                                                tmp_path.resolve() / "state")
    assert [p.resolve() for p in s.tools_path or ()] == [tmp_path.resolve() / "tools/bin"]
    assert (s.registry_client.retries, s.registry_client.backoff_seconds) == (1, 0.5)


def test_every_pattern_in_the_config_schema_is_explained():
    patterns = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.add(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schemas.load("config"))
    assert patterns - set(config.PATTERN_WORDS) == set()


def test_the_repositorys_own_configs_are_valid():
    root = Path(__file__).resolve().parents[2]
    for path in (root / "factory.yaml", root / "demo" / "factory.yaml"):
        assert config.load(path, environ={}).registry
