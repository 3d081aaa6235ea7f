"""`factory validate`: prints every problem as path:line: key: message, a summary, and exits 1 on errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory import cli
from factory.core.errors import Problem
from factory.spec import policy

DIGEST = "sha256:" + "c4" * 32


def manifest_text(name: str, extra: str = "") -> str:
    return (f"apiVersion: factory/v1\nname: {name}\nversion: \"1.0\"\ndescription: {name} image\n"
            f"upstream: {{image: docker.io/library/debian, tag: 12-slim, digest: '{DIGEST}'}}\n"
            f"distro: debian\n{extra}release: \"12\"\n")  # without a release render refuses it (fixes' suites)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    (tmp_path / "factory.yaml").write_text("manifests_dir: manifests\n")
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "a.yaml").write_text(manifest_text("a"))
    return tmp_path


def run(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def policy_says(monkeypatch, *findings: Problem) -> None:
    # The policy rules are factory.policy's own tests; here only how validate prints and exits.
    monkeypatch.setattr(policy, "evaluate", lambda catalog, settings, today: list(findings))


def test_clean_manifests_exit_0_with_a_summary(repo, capsys, monkeypatch):
    policy_says(monkeypatch)
    assert run(["validate"], capsys) == (0, "validated 1 manifests: 0 errors, 0 warnings\n", "")


def test_structure_and_meaning_errors_of_every_file_are_printed(repo, capsys, monkeypatch):
    policy_says(monkeypatch)
    (repo / "manifests" / "b.yaml").write_text(manifest_text("b", "user: {name: app, uid: -1, gid: 1}\n"))
    (repo / "manifests" / "c.yaml").write_text(manifest_text("c").replace("upstream: {", "parent: nope\n# {"))
    code, out, err = run(["validate"], capsys)
    assert code == 1
    assert out.splitlines() == [
        "manifests/b.yaml:7: user.uid: -1 is less than the minimum 0",
        "manifests/c.yaml:5: parent: parent 'nope' is not a manifest (no nope.yaml in manifests)",
        "validated 3 manifests: 2 errors, 0 warnings (policy runs once these are fixed)",
    ]
    assert err.startswith("error: 2 error(s) in the manifests")


def test_policy_findings_are_printed_with_warnings_marked(repo, capsys, monkeypatch):
    path = str(repo / "manifests" / "a.yaml")  # policy may give absolute paths: shown relative
    policy_says(monkeypatch, Problem(path, 5, "upstream.tag", "POL-001 pinned-tag: latest", "error"),
                Problem(path, None, "variants", "POL-018 debug-variant: none", "warning"))
    code, out, _ = run(["validate", "manifests/a.yaml"], capsys)
    assert code == 1
    assert out.splitlines() == [
        "warning: manifests/a.yaml: variants: POL-018 debug-variant: none",
        "manifests/a.yaml:5: upstream.tag: POL-001 pinned-tag: latest",
        "validated 1 manifests: 1 errors, 1 warnings",
    ]


def test_warnings_alone_do_not_fail(repo, capsys, monkeypatch):
    policy_says(monkeypatch, Problem("manifests/a.yaml", None, "variants", "no debug variant", "warning"))
    code, out, _ = run(["validate"], capsys)
    assert code == 0 and out.endswith("validated 1 manifests: 0 errors, 1 warnings\n")


def test_github_actions_gets_annotations(repo, capsys, monkeypatch):
    policy_says(monkeypatch)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    (repo / "manifests" / "a.yaml").write_text(manifest_text("a", "pakages: [x]\n"))
    _, out, _ = run(["validate"], capsys)
    assert "::error file=manifests/a.yaml,line=7,title=pakages::unknown key 'pakages'; did you mean 'packages'?" in out


def test_a_missing_path_is_an_error(repo, capsys, monkeypatch):
    policy_says(monkeypatch)
    code, out, _ = run(["validate", "manifests/nope.yaml"], capsys)
    assert code == 1 and out.startswith("manifests/nope.yaml: no such file or folder\n")


def test_the_real_policy_runs_after_loading(repo, capsys):
    # a.yaml has no debug variant: factory.policy warns about that (its rules are tested there)
    _code, out, _ = run(["validate"], capsys)
    assert "debug-variant" in out and out.splitlines()[-1].startswith("validated 1 manifests: ")
