"""The tables a person reads at the end: the publish summary from a run report, and the plan within 100 columns."""

from __future__ import annotations

from factory.core import console
from factory.publish import report as report_mod
from factory.publish.report import ImageResult, RunReport, VariantResult
from factory.render import plan

INDEX = "sha256:" + "c641a360f273" + "1" * 52
TAGS = ["base-v1.0.3", "base-v1.0", "base-v1", "base"]


def published(name: str = "base") -> ImageResult:
    prod = VariantResult(tag_prefix=name, version="1.0.3", index_digest=INDEX, tags=list(TAGS),
                         platforms={"linux/arm64": "sha256:" + "a" * 64, "linux/amd64": "sha256:" + "b" * 64})
    debug = VariantResult(tag_prefix=f"{name}-debug", version="1.0.3", tags=[f"{name}-debug-v1.0.3"])
    return ImageResult(name, status="published", prod=prod, debug=debug, timings={"build": 60.5, "tag": 0.5})


def test_the_summary_says_what_was_built_or_why_nothing_was():
    up = ImageResult("static", status="up-to-date", prod=VariantResult(tag_prefix="static", version="1.0.1",
                                                                         index_digest=INDEX))
    failed = ImageResult("child", status="failed", step="gates", platform="linux/arm64", error="CVE-2026-1 critical",
                         timings={"gates": 2.0})
    skipped = ImageResult("grandchild", status="skipped", error="parent child was not published")
    rows = report_mod.summary_rows(RunReport("r", "t", images=[published(), up, failed, skipped]))
    assert rows[0] == console.SummaryRow("base", "published", "1.0.3", 61.0, (
        "linux/amd64, linux/arm64 + debug", INDEX, "base-v1.0.3 (+4 tags)"))
    assert rows[1].detail == ("nothing built: the inputs of", f"1.0.1 ({INDEX})")
    assert rows[2].detail == ("at gates [linux/arm64]:", "CVE-2026-1 critical") and rows[2].version == ""
    assert rows[3].detail == ("parent child was not published",)
    text = console.summary_table(rows)
    assert "base-v1.0.3 (+4 tags)" in text and "sha256:c641a360f273" in text and INDEX not in text
    assert "1m01s" in text


def test_the_estimate_reads_the_previous_report_and_nothing_from_a_broken_one(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(RunReport("r", "t", images=[published("base"), published("child")]).to_json())
    assert report_mod.timings_of(path) == {"base": 61.0, "child": 61.0}
    path.write_text("{not json")
    assert report_mod.timings_of(path) == {}
    path.write_text('{"images": [{"timings": {}}]}')  # no name: not a report of ours
    assert report_mod.timings_of(path) == {}
    assert report_mod.timings_of(tmp_path / "missing.json") == {}


def planned(name: str, reasons: tuple[str, ...], fingerprint: str | None) -> plan.PlannedImage:
    return plan.PlannedImage(name, True, reasons, fingerprint, "1.0.0", None, "1.0.1", "up", None,
                             ("linux/amd64",), None)


def test_the_plan_table_keeps_to_100_columns_when_the_reasons_are_many():
    reasons = ("new", "upstream changed", "parent changed", "manifest changed", "security fixes", "forced")
    p = plan.Plan((planned("python-3.11-slim-bookworm-with-a-long-name", reasons, "sha256:" + "f" * 64),
                   planned("child", ("parent changed",), None)))
    lines = plan.table(p).splitlines()
    assert all(len(line) <= plan.TABLE_WIDTH for line in lines), max(lines, key=len)
    assert lines[0].split() == ["image", "build", "reasons", "current", "fingerprint"]
    start = lines[0].index("reasons")
    child = next(i for i, line in enumerate(lines) if line.startswith("child "))
    wrapped = " ".join(line[start:].split("  ")[0].strip() for line in lines[1:child])
    assert wrapped == ", ".join(reasons) and child > 2  # every reason, over several lines of its column
    assert lines[1].rstrip().endswith("ffffffffffff")
    assert lines[child].rstrip().endswith("(after parent)")  # no longer cut to "(after paren"
