"""App teams' Dockerfiles, parsed with ``dockerfile-parse``: every ``FROM`` with its line, stage,
``--platform``, the image after ``ARG`` substitution, and whether it ends up in the final image.

Also the Dockerfile as conftest reads it (``conftest_input``), so that the Rego policy the factory
writes (``factory.consume.policies``) can be tested on the very input conftest gives it.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]

from factory.core.errors import UsageError

MAX_BYTES = 1_000_000  # a Dockerfile bigger than this is not one
_UNRESOLVED_RE = re.compile(r"\$(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class From:
    path: str  # as given on the command line
    line: int  # 1-based, the line the FROM starts on
    stage: int  # 0-based stage index
    alias: str | None  # AS <name>
    image: str  # after ARG substitution (the stage name when it refers to a stage)
    written: str  # as written
    platform: str | None  # --platform=..., as written
    stage_ref: bool  # FROM <an earlier stage>
    final: bool  # this stage's filesystem is in the final image (the last stage, or one it is built FROM)
    unresolved: str | None = None  # the first ``$VAR`` of ``written`` that no global ARG default or build arg sets

    @property
    def scratch(self) -> bool:
        return self.image == "scratch"


def read(path: Path) -> str:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise UsageError(f"{path}: bigger than {MAX_BYTES} bytes: not a Dockerfile")
    return raw.decode("utf-8", errors="replace")


def _parser(text: str, build_args: dict[str, str] | None = None) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(text.encode()), env_replace=True, build_args=build_args or {})


def _split_from(value: str) -> tuple[list[str], list[str]]:
    """(flags, words) of a FROM's value: ``--platform=x img AS name`` -> (["--platform=x"], ["img", "AS", "name"])."""
    words = value.split()
    flags = [w for w in words if w.startswith("--")]
    return flags, [w for w in words if not w.startswith("--")]


def froms(path: str, text: str, build_args: dict[str, str] | None = None) -> list[From]:
    """Every FROM in order. The parser substitutes global ARG defaults (and ``build_args``) into the
    image names; a name it could not resolve keeps its ``$VAR``."""
    parser = _parser(text, build_args)
    known = _global_args(parser.structure) | set(build_args or {})
    instructions = [i for i in parser.structure if i["instruction"] == "FROM"]
    images = parser.parent_images  # one per FROM, substituted
    aliases: list[str | None] = []
    out: list[From] = []
    for stage, (instr, image) in enumerate(zip(instructions, images, strict=True)):
        flags, words = _split_from(instr["value"])
        alias = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else None
        platform = next((f.split("=", 1)[1] for f in flags if f.startswith("--platform=")), None)
        stage_ref = image.lower() in [a for a in aliases if a]
        aliases.append(alias)
        written = words[0] if words else ""
        unresolved = next((m[0] for m in _UNRESOLVED_RE.finditer(written) if m[0].strip("${}") not in known), None)
        out.append(From(path=path, line=instr["startline"] + 1, stage=stage, alias=alias, image=image,
                        written=written, platform=platform, stage_ref=stage_ref, final=False, unresolved=unresolved))
    return _mark_final(out)


def _global_args(structure: Sequence[dict[str, Any]]) -> set[str]:
    """Names of the ARGs before the first FROM that have a default (what a FROM may use)."""
    names = set()
    for instr in structure:
        if instr["instruction"] == "FROM":
            break
        if instr["instruction"] == "ARG" and "=" in instr["value"]:
            names.add(instr["value"].split("=", 1)[0].strip())
    return names


def _mark_final(found: Sequence[From]) -> list[From]:
    """The last stage is the final image; a stage it is built FROM (transitively) is in it too."""
    if not found:
        return []
    by_alias = {f.alias: f for f in found if f.alias}
    final_stages, current = set(), found[-1]
    while True:
        final_stages.add(current.stage)
        if not current.stage_ref or current.image.lower() not in by_alias:
            break
        current = by_alias[current.image.lower()]
        if current.stage in final_stages:
            break
    return [From(**{**f.__dict__, "final": f.stage in final_stages}) for f in found]


def conftest_input(text: str) -> list[dict[str, Any]]:
    """The Dockerfile as conftest gives it to a policy: one object per instruction, in order,
    ``{"Cmd": "from", "SubCmd": "", "JSON": false, "Flags": [...], "Value": [...], "Stage": n}``
    (conftest's parser/docker: BuildKit's parser, command lowercased, flags apart, values as
    written: no ARG substitution; comments are left out here, as no policy of ours reads them)."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()), env_replace=False)
    stage, out = -1, []
    for instr in parser.structure:
        cmd = instr["instruction"].lower()
        if cmd == "comment":
            continue
        if cmd == "from":
            stage += 1
        value = instr["value"]
        is_json = value.lstrip().startswith("[")
        flags, words = _conftest_words(cmd, value, is_json)
        out.append({"Cmd": cmd, "SubCmd": "", "JSON": is_json, "Flags": flags, "Value": words,
                    "Stage": max(stage, 0)})
    return out


def _conftest_words(cmd: str, value: str, is_json: bool) -> tuple[list[str], list[str]]:
    if is_json:
        try:
            return [], [str(v) for v in json.loads(value)]
        except ValueError:
            return [], [value]
    if cmd in ("from", "copy", "add"):
        return _split_from(value)
    if cmd in ("run", "cmd", "entrypoint", "shell", "healthcheck"):
        words = value.split()
        flags = list(itertools.takewhile(lambda w: w.startswith("--"), words)) if cmd == "run" else []
        return flags, [" ".join(words[len(flags):])]
    return [], value.split()
