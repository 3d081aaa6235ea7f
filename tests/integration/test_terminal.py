"""What a person sees at a terminal: `factory publish` of two small images (linux/amd64) in a pseudo-terminal,
its final screen read through a terminal emulator (pyte); and the same publish without a terminal prints
JSON lines only, the same events and keys as `--log-format json` in CI."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pyte
import pytest

from tests.integration.workspace import Workspace, factory_environment, manifest_on

COLS, ROWS = 100, 60
FULL_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
SHORT_DIGEST = re.compile(r"sha256:[0-9a-f]{12}(?![0-9a-f])")


@pytest.fixture
def ws(tmp_path, settings, seeded, seeded_debian) -> Workspace:
    # No-shell images are hardened in a helper stage that needs a pinned Debian image: the seeded one.
    ws = Workspace.create(tmp_path / "repo", registry=settings.registry, state_dir=settings.state_dir,
                          extra_config={"helper_image": seeded_debian.ref})
    ws.add_manifest(manifest_on(seeded["busybox"], "term-base", platforms=["linux/amd64"]))
    ws.add_manifest(manifest_on(seeded["noshell"], "term-static", platforms=["linux/amd64"]))
    ws.commit("manifests")
    assert ws.factory("render").returncode == 0
    ws.commit("render")
    return ws


def in_terminal(ws: Workspace, *args: str, timeout: float = 300) -> tuple[int, bytes]:
    """`factory ARGS` with a pseudo-terminal of COLS x ROWS as its stdin, stdout and stderr, CI unset."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = {**factory_environment(), "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}
    env.pop("CI")
    proc = subprocess.Popen([sys.executable, "-m", "factory", "--config", str(ws.root / "factory.yaml"), *args],
                            cwd=ws.root, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side closed with the process
                break
            if not chunk:
                break
            out += chunk
        else:
            proc.kill()
            pytest.fail(f"factory {' '.join(args)} did not finish in {timeout}s:\n{out.decode(errors='replace')}")
    finally:
        os.close(master)
    return proc.wait(timeout=30), bytes(out)


def final_screen(raw: bytes) -> list[str]:
    """The terminal's lines after the run as a person sees them: what scrolled off the top, then the screen."""
    screen = pyte.HistoryScreen(COLS, ROWS, history=2000)
    pyte.ByteStream(screen).feed(raw)
    scrolled = ["".join(line[x].data for x in range(COLS)).rstrip() for line in screen.history.top]
    lines = scrolled + [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def events(stderr: str) -> list[tuple[str, tuple[str, ...]]]:
    """(event, keys) of each JSON line; a line that is not a JSON object fails the test."""
    out = []
    for line in stderr.splitlines():
        doc = json.loads(line)
        assert isinstance(doc, dict) and {"event", "level", "timestamp"} <= set(doc), line
        out.append((doc["event"], tuple(sorted(doc))))
    return out


def test_publish_at_a_terminal_shows_rows_and_a_summary_and_without_one_todays_json(ws):
    code, raw = in_terminal(ws, "publish", "term-base", "term-static")
    lines = final_screen(raw)
    text = "\n".join(lines)
    assert code == 0, text

    # What was published is there, tags and all (read from the registry, not from our output).
    tags = ws.tags()
    assert {"term-base-v1.0.0", "term-base", "term-static-v1.0.0", "term-static"} <= set(tags)

    # The live view's last frame: the run's count, a row per image with its ticks, where the log is.
    assert re.match(r"^publish  2/2 images  \S+ elapsed$", lines[0]), text
    for name in ("term-base", "term-static"):
        row = next(i for i, line in enumerate(lines) if line.startswith(f"✓ {name} "))
        assert re.search(r"published 1\.0\.0  \S+s$", lines[row]), lines[row]
        ticks = " ".join(lines[row + 1:row + 3])
        for step in ("resolve base", "build", "test", "gates", "push", "sign", "attest", "tag"):
            assert re.search(rf"✓ {step} [\d.m]+s", ticks), (step, ticks)
    log_line = next(line for line in lines if line.startswith("full log: "))
    log_file = Path(log_line.removeprefix("full log: "))
    full_log = log_file.read_text()
    assert "step=build" in full_log and tags["term-base-v1.0.0"] in full_log  # the details and whole digests

    # The summary table: image, result, version, time, what was built; short digests, folded tags.
    head = next(i for i, line in enumerate(lines) if line.split()[:4] == ["image", "result", "version", "time"])
    table = "\n".join(lines[head:])
    for name in ("term-base", "term-static"):
        assert re.search(rf"^{name} +published +1\.0\.0 +\S+s +linux/amd64 ", table, re.M), table
        assert f"{name}-v1.0.0 (+3 tags)" in table
        short = tags[f"{name}-v1.0.0"][: len("sha256:") + 12]
        assert short in table
    assert not FULL_DIGEST.search(text) and SHORT_DIGEST.search(text)
    assert len(lines) < 30, text  # today's console logs were over a hundred rows for this run

    # Without a terminal (CI unset too): JSON lines only, the events and keys `--log-format json` gives in CI.
    plain = ws.factory("publish", "term-base", "term-static", env={"CI": ""})
    in_ci = ws.factory("--log-format", "json", "publish", "term-base", "term-static")
    assert plain.returncode == in_ci.returncode == 0, plain.stderr + in_ci.stderr
    assert "\x1b[" not in plain.stderr + plain.stdout and "elapsed" not in plain.stderr
    assert events(plain.stderr) == events(in_ci.stderr)
    names = [e for e, _ in events(plain.stderr)]
    assert names.count("up to date") == 2 and "step" in names
    # ... and today's summary on stdout: one line per image, the whole digest, every tag.
    summary = plain.stdout.splitlines()
    assert [line.split()[:3] for line in summary] == [["term-base", "up-to-date", "1.0.0"],
                                                      ["term-static", "up-to-date", "1.0.0"]]
    assert tags["term-base-v1.0.0"] in summary[0] and tags["term-static-v1.0.0"] in summary[1]
