"""The terminal's live view (factory.core.console) and the events that feed it (factory.core.progress):
what a person reads, and that off a terminal (JSON, CI, -v) the logs are exactly today's."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from factory.core import console, log, progress
from factory.core.errors import StepFailed
from factory.publish.report import ImageResult
from factory.publish.steps import step

DIGEST = "sha256:" + "4ea43e03dea9" + "0" * 52


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def view(tmp_path: Path, previous: dict[str, float] | None = None, height: int = 40):
    clock = Clock()
    screen = Console(file=io.StringIO(), width=100, height=height, color_system=None)
    return console.LiveView("publish", tmp_path / "run.log", previous or {}, screen, clock=clock), clock


def screen(v: console.LiveView) -> list[str]:
    return console.to_text(v.render(), 100).splitlines()


def test_digests_are_shortened_and_tag_lists_folded_for_display():
    assert console.short_digest(f"index {DIGEST} ok") == "index sha256:4ea43e03dea9 ok"
    assert console.short_digest("sha256:abc") == "sha256:abc"  # not a digest: untouched
    tags = ["static-noshell-v1.0.0", *[f"t{n}" for n in range(7)]]
    assert console.fold_tags(tags) == "static-noshell-v1.0.0 (+7 tags)"
    assert console.fold_tags(["a-v1.0.0"]) == "a-v1.0.0" and console.fold_tags([]) == "no tag"


def test_durations_and_the_time_left_read_as_a_person_says_them():
    assert [console.duration(s) for s in (0.04, 4.26, 12.4, 65, 3600)] == ["0.0s", "4.3s", "12s", "1m05s",
                                                                           "60m00s"]
    assert console.time_left(None) == "" and console.time_left(30) == "under a minute left"
    assert console.time_left(61) == "about 2 min left"


def test_a_warning_is_one_line_with_its_text_digests_shortened():
    event = {"event": "gate warning", "image": "x", "level": "warning", "timestamp": "t",
             "warning": f"linux/amd64: NOT scanned\n  hint: see {DIGEST}"}
    assert console.compact(event) == "linux/amd64: NOT scanned hint: see sha256:4ea43e03dea9"
    assert console.compact({"event": "kept", "workdir": "/w", "level": "warning"}) == "kept workdir=/w"


def test_rows_show_the_current_step_its_platform_and_a_tick_per_finished_step(tmp_path):
    v, clock = view(tmp_path)
    v.units(["base", "child"])
    v.unit_started("base")
    v.step_started("base", "resolve base")
    clock.now += 0.2
    v.step_done("base", "resolve base", 0.2, ok=True)
    v.step_started("base", "build")
    v.activity("#7 [linux/arm64 2/2] RUN apt-get install", "linux/arm64")
    clock.now += 12
    lines = screen(v)
    assert lines[0].startswith("publish  0/2 images  12s elapsed")
    assert re.match(r"^. base   build linux/arm64 12s$", lines[1]), lines
    assert lines[2] == "    ✓ resolve base 0.2s"
    assert "#7 [linux/arm64 2/2] RUN apt-get install" in lines[3]
    assert lines[4] == "· child  waiting"
    assert lines[-1] == f"full log: {tmp_path / 'run.log'}"


def test_a_finished_image_keeps_its_ticks_and_its_result(tmp_path):
    v, clock = view(tmp_path)
    v.units(["base"])
    v.unit_started("base")
    for name, seconds in (("build", 4.1), ("test", 0.6), ("tag", 0.1)):
        v.step_started("base", name)
        v.step_done("base", name, seconds, ok=True)
    clock.now += 5
    v.unit_done("base", progress.Outcome("published", "1.0.3"))
    lines = screen(v)
    assert lines[0] == "publish  1/1 images  5.0s elapsed"
    assert lines[1] == "✓ base  published 1.0.3  5.0s"
    assert lines[2] == "    ✓ build 4.1s  ✓ test 0.6s  ✓ tag 0.1s"


def test_a_failure_shows_the_step_the_platform_the_error_and_where_the_full_log_is(tmp_path):
    v, clock = view(tmp_path)
    v.units(["base", "child"])
    v.unit_started("base")
    v.step_started("base", "gates")
    v.step_done("base", "gates", 2.0, ok=False)
    clock.now += 2
    v.unit_done("base", progress.Outcome("failed", "1.0.1", "gates", "linux/arm64", f"CVE-1 in {DIGEST}"))
    v.unit_done("child", progress.Outcome("skipped", error="parent base was not published"))
    lines = screen(v)
    assert lines[1] == "✗ base   failed at gates [linux/arm64]  2.0s"
    assert lines[2] == "    CVE-1 in sha256:4ea43e03dea9"
    assert lines[3] == f"    full log: {tmp_path / 'run.log'}"
    assert lines[4] == "    ✗ gates 2.0s"
    assert lines[5].startswith("- child  skipped") and lines[6] == "    parent base was not published"
    assert sum("full log" in line for line in lines) == 1


def test_each_warning_is_shown_once_under_its_image_and_the_running_one_takes_the_unnamed(tmp_path):
    v, _ = view(tmp_path)
    v.units(["base", "child"])
    v.unit_started("child")
    for _ in range(3):
        v.warning_event({"event": "gate warning", "image": "base", "warning": "not scanned", "level": "warning"})
    v.warning_event({"event": "current version does not verify", "level": "warning"})
    lines = screen(v)
    assert lines.count("    ! not scanned") == 1
    assert lines.index("    ! current version does not verify") > lines.index("    ! not scanned")
    v2, _ = view(tmp_path)
    v2.warning_event({"event": "images/ is stale", "level": "warning"})  # no image running: under the header
    assert "! images/ is stale" in screen(v2)


def test_the_estimate_is_the_previous_run_less_what_the_running_image_has_spent(tmp_path):
    v, clock = view(tmp_path, previous={"base": 120.0, "child": 300.0})
    v.units(["base", "child", "new"])
    assert v.seconds_left() == pytest.approx(120 + 300 + 210)  # "new": the mean of the known ones
    v.unit_started("base")
    clock.now += 100
    assert v.seconds_left() == pytest.approx(20 + 300 + 210)
    assert "about 9 min left" in screen(v)[0]
    none, _ = view(tmp_path)
    none.units(["a"])
    assert none.seconds_left() is None and "left" not in screen(none)[0]


def test_phases_of_a_nightly_are_one_line_with_their_durations(tmp_path):
    v, _ = view(tmp_path)
    with progress.showing(v):
        with progress.phase("drift"):
            pass
        with pytest.raises(RuntimeError), progress.phase("commits"):
            raise RuntimeError("git")
        with progress.phase("plan"):
            assert re.match(r"^✓ drift \d\.\ds  ✗ commits \d\.\ds  . plan \d\.\ds$", screen(v)[1])


def test_a_view_taller_than_the_terminal_drops_the_ticks_of_finished_images_until_the_end(tmp_path):
    v, _ = view(tmp_path, height=12)
    names = [f"image{n}" for n in range(6)]
    v.units(names)
    for name in names:
        v.unit_started(name)
        v.step_started(name, "build")
        v.step_done(name, "build", 1.0, ok=True)
        v.unit_done(name, progress.Outcome("published", "1.0.0"))
    assert len(screen(v)) <= 12 and not any("✓ build" in line for line in screen(v))
    v.final = True  # the last frame, left on the screen: everything
    assert sum("✓ build 1.0s" in line for line in screen(v)) == 6


def test_the_build_output_goes_to_the_view_with_its_platform_and_else_the_only_one(tmp_path):
    class Recorder(progress.Quiet):
        def __init__(self) -> None:
            self.seen: list[tuple[str, str | None]] = []

        def activity(self, line: str, platform: str | None) -> None:
            self.seen.append((line, platform))

    from factory.build.buildx import step_platform

    rec = Recorder()
    with progress.showing(rec):
        with progress.live("b", platforms=("linux/amd64", "linux/arm64"), platform_of=step_platform) as update:
            update("#7 [linux/arm64 2/2] RUN true")
            update("#8 DONE 0.1s")
        with progress.live("b", platforms=("linux/amd64",), platform_of=step_platform) as update:
            update("#7 [2/2] RUN true")
    assert rec.seen == [("#7 [linux/arm64 2/2] RUN true", "linux/arm64"), ("#8 DONE 0.1s", None),
                        ("#7 [2/2] RUN true", "linux/amd64")]
    assert progress.current() is not rec  # the view is gone with its block


def test_the_summary_table_keeps_to_its_width_and_shows_an_error_as_written():
    tags = "python-3.11-slim-bookworm-v1.0.12 (+7 tags)"
    rows = [console.SummaryRow("python-3.11-slim-bookworm", "published", "1.0.12", 312.5,
                               ("linux/amd64, linux/arm64 + debug", DIGEST, tags)),
            console.SummaryRow("child", "failed", "", 3.2, ("at gates [linux/arm64]:", "x " * 200))]
    lines = console.summary_table(rows, 100).splitlines()
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    assert lines[0].split() == ["image", "result", "version", "time", "built,", "or", "why", "not"]
    assert "5m12s" in lines[2] and lines[3].strip().startswith("sha256:4ea43e03dea9")
    assert any(line.rstrip().endswith("python-3.11-slim-bookworm-v1.0.12 (+7 tags)") for line in lines)
    assert "at gates [linux/arm64]:" in "\n".join(lines)  # no rich markup eaten
    assert "…" in "\n".join(lines) and len(lines) < 12


def test_run_logs_are_named_by_their_start_and_the_oldest_removed(tmp_path):
    kept = []
    for _ in range(5):
        kept.append(console.new_log(tmp_path, "publish", keep=3))
        kept[-1].write_text("x")
    assert sorted(p.name for p in (tmp_path / "runs").glob("*.log")) == sorted(p.name for p in kept[-3:])


# --- where the view is shown, and that everywhere else the logs are today's ---------------------------

def test_the_live_view_only_on_a_terminal_without_ci_json_or_v(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert log.live_wanted("auto", 0, Tty()) and log.live_wanted("console", 0, Tty())
    assert not log.live_wanted("auto", 1, Tty())  # -v: the logs themselves
    assert not log.live_wanted("json", 0, Tty())
    assert not log.live_wanted("auto", 0, io.StringIO())  # not a terminal
    monkeypatch.setenv("CI", "true")
    assert not log.live_wanted("auto", 0, Tty())


def _published_steps(stream: io.StringIO) -> list[dict]:
    log.configure("json", 0, stream)
    result = ImageResult("base")
    with step(result, "build"):
        log.get("build").warning("gate warning", image="base", warning=f"not scanned {DIGEST}")
    with pytest.raises(StepFailed), step(result, "gates"):
        raise StepFailed("base", "gates", "CVE-1")
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_are_todays_and_the_same_whether_or_not_a_view_listens(tmp_path):
    alone = _published_steps(io.StringIO())
    v, _ = view(tmp_path)
    with progress.showing(v):
        listened = _published_steps(io.StringIO())
    for line in alone + listened:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", line.pop("timestamp"))
    # Today's events, keys and values: the view adds no line and changes none (the digest is whole).
    assert alone == listened == [
        {"event": "step", "image": "base", "level": "info", "step": "build"},
        {"event": "gate warning", "image": "base", "level": "warning", "warning": f"not scanned {DIGEST}"},
        {"event": "step", "image": "base", "level": "info", "step": "gates"},
    ]
    assert [s[0] for s in v.rows["base"].steps] == ["build", "gates"] and v.rows["base"].steps[1][2] is False


def test_while_the_view_runs_the_logs_go_readable_to_its_file_and_come_back_after(tmp_path):
    stream = io.StringIO()
    log.configure("json", 0, stream)
    seen: list[dict] = []
    path = tmp_path / "run.log"
    with log.to_file(path, seen.append):
        log.get("x").debug("buildx", line="#1 DONE")
        log.get("x").warning("gate warning", image="base", warning="w")
    log.get("x").info("after")
    text = path.read_text()
    assert "buildx" in text and "line='#1 DONE'" in text and "gate warning" in text and "\x1b[" not in text
    assert [e["event"] for e in seen] == ["gate warning"]
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["after"]
