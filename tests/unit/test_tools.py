import pytest

from factory.adapters.tools import Runner
from factory.core.errors import EnvironmentProblem


def test_missing_tool_is_one_clear_error(tmp_path):
    runner = Runner(extra_path=(tmp_path,))
    with pytest.raises(EnvironmentProblem) as e:
        runner.require("definitely-not-a-tool-xyz")
    assert "definitely-not-a-tool-xyz not found" in str(e.value)
    assert "make setup" in str(e.value)


def test_extra_path_wins_over_path(tmp_path, monkeypatch):
    tool = tmp_path / "cosign"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert Runner(extra_path=(tmp_path,)).which("cosign") == str(tool)


def test_only_path_replaces_the_whole_search(tmp_path, monkeypatch):
    """A hermetic tools_path: a tool on PATH or in the tools folder is not found, and the tools' own
    PATH is the hermetic folders only."""
    on_path, pinned = tmp_path / "on-path", tmp_path / "pinned"
    for folder in (on_path, pinned):
        folder.mkdir()
    (on_path / "cosign").write_text("#!/bin/sh\n")
    (on_path / "cosign").chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path))
    runner = Runner(extra_path=(on_path,), only_path=(pinned,))
    assert runner.which("cosign") is None
    assert runner.search_path == str(pinned)
    with pytest.raises(EnvironmentProblem, match=f"cosign not found in tools_path \\({pinned}\\)"):
        runner.require("cosign")


def test_unit_tests_cannot_start_processes(tmp_path):
    import subprocess

    from tests.conftest import SubprocessInUnitTest

    with pytest.raises(SubprocessInUnitTest):
        subprocess.run(["true"])


def test_a_crashed_tool_is_named_by_its_signal():
    from factory.core.errors import CommandError

    crashed = CommandError(["cosign", "sign", "--key", "k"], -11, "unexpected fault address", step="sign")
    assert "`cosign sign --key ...` was killed by SIGSEGV" in str(crashed)
    assert "exited 2" in str(CommandError(["trivy", "image"], 2, "panic: boom"))
