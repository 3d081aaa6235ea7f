import pytest

from factory.errors import EnvironmentProblem
from factory.tools import Runner


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


def test_unit_tests_cannot_start_processes(tmp_path):
    import subprocess

    from tests.conftest import SubprocessInUnitTest

    with pytest.raises(SubprocessInUnitTest):
        subprocess.run(["true"])
