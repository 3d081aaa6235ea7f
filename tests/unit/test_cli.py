import json

import pytest

from factory import cli
from factory.core.errors import EXIT_BUG, CommandError, Problem


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_version_exits_zero(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and "factory" in out


def test_unknown_command_is_a_usage_error(capsys):
    code, _, err = run_cli(["frobnicate"], capsys)
    assert code == 2 and "frobnicate" in err


def test_bad_config_exits_2_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "factory.yaml"
    bad.write_text("registry: [1, 2]\n")
    code, _, err = run_cli(["--config", str(bad), "doctor"], capsys)
    assert code == 2
    assert str(bad) in err and "registry" in err


def test_a_bug_exits_70_with_traceback(monkeypatch, capsys):
    def boom(*a, **k):
        raise ZeroDivisionError("x")

    monkeypatch.setattr(cli.cli, "main", boom)
    code, _, err = run_cli(["doctor"], capsys)
    assert code == EXIT_BUG
    assert "Traceback" in err and "internal error" in err


def test_problem_renders_file_line_key():
    assert str(Problem("manifests/a.yaml", 7, "upstream.tag", "bad")) == "manifests/a.yaml:7: upstream.tag: bad"
    assert str(Problem("a.yaml", None, "", "bad")) == "a.yaml: bad"


def test_command_error_keeps_stderr_tail_and_step():
    e = CommandError(["cosign", "sign", "x"], 1, "line1\nerror: bad key\n", step="sign")
    assert e.returncode == 1 and "sign:" in str(e) and "error: bad key" in str(e)


def test_json_logs_when_asked(capsys):
    from factory.core import log

    log.configure("json")
    log.get("t").info("hello", image="x")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert json.loads(line)["event"] == "hello"


def test_auto_format_is_json_off_a_terminal(monkeypatch):
    import io

    from factory.core import log

    monkeypatch.delenv("CI", raising=False)
    assert log.resolve_format("auto", io.StringIO()) == "json"
