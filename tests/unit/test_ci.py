from factory.adapters import ci
from factory.publish import report as report_mod
from factory.publish.report import ImageResult, RunReport, VariantResult


def test_nothing_printed_off_github(monkeypatch, capsys):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    with ci.group("x"):
        ci.error("boom")
    assert capsys.readouterr().out == ""


def test_group_error_and_summary_on_github(monkeypatch, capsys, tmp_path):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    with ci.group("publish py"):
        ci.error("line1\nline2 100%", title="py: test failed")
    out = capsys.readouterr().out.splitlines()
    assert out == ["::group::publish py", "::error title=py: test failed::line1%0Aline2 100%25", "::endgroup::"]
    report = RunReport(run_id="r", started="t", images=[
        ImageResult("py", status="published", prod=VariantResult("py", version="1.0.0", index_digest="sha256:a",
                                                                  tags=["py-v1.0.0", "py"])),
        ImageResult("bad", status="failed", step="test")])
    ci.summary(report_mod.markdown_summary(report))
    text = summary.read_text()
    assert "| py | published | 1.0.0 | `sha256:a` | py-v1.0.0, py |" in text
    assert "| bad | failed at test |" in text
