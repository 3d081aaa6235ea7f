"""check-dockerfile without a registry: the Dockerfile parser, every rule against a fake source
(each fails on its broken input), the catalog.json source, and the SARIF output against the SARIF
2.1.0 schema (tests/data/sarif)."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import jsonschema
import pytest

from factory.consume import appcheck, dockerfile, lifecycle, sarif
from factory.consume.appcheck import Checker, Published
from factory.consume.lifecycle import State
from factory.core.errors import UsageError
from factory.core.model import Deprecation
from factory.core.versioning import Version

DATA = Path(__file__).resolve().parents[1] / "data"
TARGET = "registry.example.com/myorg/base"
TODAY = date(2026, 12, 1)
D = {n: "sha256:" + c * 64 for n, c in [("old", "1"), ("new", "2"), ("dbg", "3"), ("unsigned", "4"), ("eol", "5"),
                                           ("dep", "6"), ("soon", "7"), ("foreign", "8")]}


class FakeSource:
    target = TARGET

    def __init__(self) -> None:
        self.published = {
            "app": [Published("app", Version(1, 0, 0), D["old"], "prod"),
                    Published("app", Version(1, 0, 1), D["new"], "prod")],
            "app-debug": [Published("app-debug", Version(1, 0, 1), D["dbg"], "debug")],
            "bad": [Published("bad", Version(1, 0, 0), D["unsigned"], "prod")],
            "old": [Published("old", Version(1, 0, 0), D["eol"], "prod")],
            "legacy": [Published("legacy", Version(1, 0, 0), D["dep"], "prod")],
            "soon": [Published("soon", Version(1, 0, 0), D["soon"], "prod")],
        }

    def versions(self, prefix):
        return self.published.get(prefix, ())

    def signature_problem(self, p):
        return "no matching signatures" if p.prefix == "bad" else None

    def state(self, p):
        versions = [q.version for q in self.published[p.prefix]]
        eol = {"old": date(2020, 1, 1), "soon": date(2027, 1, 1)}.get(p.prefix)
        deprecated = Deprecation("app", "replaced") if p.prefix == "legacy" else None
        return lifecycle.state_of(p.version, versions, eol=eol, today=TODAY, deprecated=deprecated)

    def changes(self, old, new):
        return "2 package(s) upgraded"


def check(text: str, allow=("docker.io/library/*",)) -> list[appcheck.Finding]:
    checker = Checker(FakeSource(), allowed_upstreams=allow, today=TODAY)
    return checker.check(dockerfile.froms("Dockerfile", text))


GOOD = f"""\
ARG BASE={TARGET}:app-v1@{D["new"]}
FROM --platform=$BUILDPLATFORM docker.io/library/golang:1.22@{D["foreign"]} AS build
FROM {TARGET}:app-debug-v1@{D["dbg"]} AS tools
FROM ${{BASE}} AS final
COPY --from=build /x /x
"""


def test_a_good_multi_stage_dockerfile_passes():
    assert check(GOOD) == []


@pytest.mark.parametrize(("from_line", "rule", "words"), [
    (f"{TARGET}:app-v1.0.0@{D['old']}", "superseded", "1.0.1 is the newest of major 1 (2 package(s) upgraded)"),
    (f"{TARGET}:bad-v1@{D['unsigned']}", "unsigned", "does not verify with the org key: no matching signatures"),
    (f"quay.io/evil/base:1@{D['foreign']}", "not-org-base", "not an org base image"),
    (f"{TARGET}:app-v1", "unpinned", "not pinned by digest"),
    (f"{TARGET}:app-debug-v1@{D['dbg']}", "debug-final-stage", "debug variant in the final image"),
    (f"{TARGET}:old-v1@{D['eol']}", "retired", "past its end of life 2020-01-01"),
    (f"{TARGET}:legacy-v1@{D['dep']}", "deprecated", "deprecated (replaced): move to app"),
    (f"{TARGET}:app-v1@{D['dbg']}", "unpublished", "is not a published version of app"),
    (f"docker.io/library/golang:1.22@{D['foreign']}", "upstream-final-stage", "final image must be built on"),
    ("$UNSET_BASE", "unresolved-arg", "$UNSET_BASE has no default"),
])
def test_each_problem_is_one_line_naming_file_line_and_reason(from_line, rule, words):
    findings = check(f"# a comment\nFROM {from_line}\n")
    assert [(f.rule, f.level) for f in findings] == [(rule, "error")]
    line = findings[0].render()
    assert line.startswith(f"Dockerfile:2: error: {rule}: ") and words in line, line


def test_an_end_of_life_within_the_warning_window_warns():
    [found] = check(f"FROM {TARGET}:soon-v1@{D['soon']}\n")
    assert (found.rule, found.level) == ("eol-soon", "warning") and "in 31 days" in found.message


def test_a_debug_variant_reached_through_a_stage_reference_is_in_the_final_image():
    text = f"FROM {TARGET}:app-debug-v1@{D['dbg']} AS base\nFROM base AS final\n"
    assert [f.rule for f in check(text)] == ["debug-final-stage"]


def test_an_upstream_nobody_allowed_fails_even_in_a_build_stage():
    text = f"FROM golang:1.22@{D['foreign']} AS build\nFROM {TARGET}:app-v1@{D['new']}\n"
    assert [f.rule for f in check(text, allow=())] == ["not-org-base"]
    assert check(text) == []  # docker.io/library/* allowed: golang reads as docker.io/library/golang


def test_froms_substitute_args_and_keep_platform_and_lines():
    found = dockerfile.froms("Dockerfile", GOOD)
    assert [(f.line, f.stage, f.alias, f.final) for f in found] == [
        (2, 0, "build", False), (3, 1, "tools", False), (4, 2, "final", True)]
    assert found[0].platform == "$BUILDPLATFORM"
    assert found[2].image == f"{TARGET}:app-v1@{D['new']}" and found[2].written == "${BASE}"
    over = dockerfile.froms("Dockerfile", GOOD, {"BASE": "other:1"})
    assert over[2].image == "other:1"


def test_conftest_input_mirrors_conftests_parser():
    found = dockerfile.conftest_input("ARG A=1\nFROM --platform=linux/amd64 x:1 AS b\nRUN --mount=type=cache echo hi\n"
                                      'CMD ["a", "b"]\nFROM b\n')
    assert found == [
        {"Cmd": "arg", "SubCmd": "", "JSON": False, "Flags": [], "Value": ["A=1"], "Stage": 0},
        {"Cmd": "from", "SubCmd": "", "JSON": False, "Flags": ["--platform=linux/amd64"], "Value": ["x:1", "AS", "b"],
         "Stage": 0},
        {"Cmd": "run", "SubCmd": "", "JSON": False, "Flags": ["--mount=type=cache"], "Value": ["echo hi"], "Stage": 0},
        {"Cmd": "cmd", "SubCmd": "", "JSON": True, "Flags": [], "Value": ["a", "b"], "Stage": 0},
        {"Cmd": "from", "SubCmd": "", "JSON": False, "Flags": [], "Value": ["b"], "Stage": 1},
    ]


def test_a_huge_file_is_refused(tmp_path):
    big = tmp_path / "Dockerfile"
    big.write_bytes(b"#" * (dockerfile.MAX_BYTES + 1))
    with pytest.raises(UsageError, match="bigger than"):
        dockerfile.read(big)


# --- SARIF ------------------------------------------------------------------------------------------


def sarif_validator() -> jsonschema.Draft4Validator:
    schema = json.loads((DATA / "sarif" / "sarif-2.1.0-rtm.5.json").read_text())
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def test_sarif_validates_against_the_sarif_2_1_0_schema():
    findings = check(f"FROM {TARGET}:app-v1\nFROM {TARGET}:soon-v1@{D['soon']}\n")
    doc = sarif.document(findings)
    sarif_validator().validate(doc)
    results = doc["runs"][0]["results"]
    assert [(r["ruleId"], r["level"], r["locations"][0]["physicalLocation"]["region"]["startLine"]) for r in results] \
        == [("unpinned", "error", 1), ("eol-soon", "warning", 2)]
    rules = doc["runs"][0]["tool"]["driver"]["rules"]
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in results)


def test_the_sarif_schema_check_fails_on_broken_output():
    doc = sarif.document(check(f"FROM {TARGET}:app-v1\n"))
    doc["runs"][0]["results"][0]["level"] = "fatal"  # not a SARIF level
    with pytest.raises(jsonschema.ValidationError):
        sarif_validator().validate(doc)


# --- offline: catalog.json --------------------------------------------------------------------------


def catalog_doc() -> dict:
    def version(v: str, digest: str, signed: bool = True, changes=None) -> dict:
        return {"version": v, "digest": digest, "signed": signed, "notes": [] if signed else ["no signatures"],
                "changes": changes}

    upgraded = {"packages": {"upgraded": [{"name": "libc6", "old": "1", "new": "2"}], "added": [], "removed": []},
                "base_changed": True}
    return {"registry": "registry.example.com", "repository": "myorg/base", "images": [
        {"name": "app", "variant": "prod", "eol": {"date": "2028-06-30"}, "deprecated": None,
         "versions": [version("1.0.1", D["new"], changes=upgraded), version("1.0.0", D["old"])]},
        {"name": "bad", "variant": "prod", "eol": {"date": None}, "deprecated": None,
         "versions": [version("1.0.0", D["unsigned"], signed=False)]},
        {"name": "old", "variant": "prod", "eol": {"date": "2020-01-01"}, "deprecated": None,
         "versions": [version("1.0.0", D["eol"])]},
        {"name": "legacy", "variant": "prod", "eol": {"date": None}, "deprecated": {"successor": "app", "reason": ""},
         "versions": [version("1.0.0", D["dep"])]},
    ]}


@pytest.mark.parametrize(("from_line", "rule", "words"), [
    (f"{TARGET}:app-v1@{D['new']}", None, ""),
    (f"{TARGET}:app-v1.0.0@{D['old']}", "superseded", "(new base image, 1 package(s) upgraded)"),
    (f"{TARGET}:bad-v1@{D['unsigned']}", "unsigned", "the catalog records it unsigned: no signatures"),
    (f"{TARGET}:old-v1@{D['eol']}", "retired", "retired"),
    (f"{TARGET}:legacy-v1@{D['dep']}", "deprecated", "move to app"),
])
def test_the_catalog_source_answers_offline(tmp_path, from_line, rule, words):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog_doc()))
    checker = Checker(appcheck.CatalogSource(path, today=TODAY), today=TODAY)
    found = checker.check(dockerfile.froms("Dockerfile", f"FROM {from_line}\n"))
    assert [f.rule for f in found] == ([rule] if rule else [])
    assert all(words in f.message for f in found)


def test_a_file_that_is_no_catalog_is_a_usage_error(tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text("[]")
    with pytest.raises(UsageError, match=r"not a catalog\.json"):
        appcheck.CatalogSource(path, today=TODAY)


# --- lifecycle states ------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "eol", "deprecated", "state"), [
    (Version(1, 2, 0), None, None, lifecycle.CURRENT),
    (Version(1, 1, 0), None, None, lifecycle.SUPERSEDED),  # 1.2.0 is newer in major 1
    (Version(2, 0, 0), None, None, lifecycle.CURRENT),  # the newest of major 2, though 1.x exists
    (Version(1, 2, 0), None, Deprecation("next"), lifecycle.DEPRECATED),
    (Version(1, 2, 0), date(2020, 1, 1), Deprecation("next"), lifecycle.RETIRED),
    (Version(1, 2, 0), date(2030, 1, 1), None, lifecycle.CURRENT),
])
def test_lifecycle_states(version, eol, deprecated, state):
    versions = [Version(1, 1, 0), Version(1, 2, 0), Version(2, 0, 0)]
    found = lifecycle.state_of(version, versions, eol=eol, today=TODAY, deprecated=deprecated)
    assert found.state == state


def test_a_lifecycle_predicate_reads_back_and_a_foreign_one_does_not():
    state = State(lifecycle.DEPRECATED, "1.0.0", "1.0.0", successor="next", eol="2028-06-30", reason="why")
    from datetime import UTC, datetime

    doc = lifecycle.predicate("app", state, datetime(2026, 12, 1, tzinfo=UTC))
    assert doc["image"] == "app" and doc["checked"] == "2026-12-01T00:00:00Z"
    assert lifecycle.parse_predicate(doc) == state
    assert lifecycle.parse_predicate({"state": "fine", "version": "1.0.0"}) is None


def test_the_app_teams_doc_lists_every_rule():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "app-teams.md").read_text()
    documented = set(re.findall(r"^\| `([a-z-]+)` \| (?:error|warning) \|", doc, re.M))
    assert documented == set(appcheck.RULES)


def test_folders_are_searched_for_dockerfiles(tmp_path):
    from factory.consume import appteams

    for name in ("Dockerfile", "api/Dockerfile.prod", "web/app.Dockerfile", "node_modules/x/Dockerfile", "README"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("FROM scratch\n")
    found = [p.relative_to(tmp_path).as_posix() for p in appteams.dockerfiles([tmp_path])]
    assert found == ["Dockerfile", "api/Dockerfile.prod", "web/app.Dockerfile"]
    with pytest.raises(UsageError, match="no such file"):
        appteams.dockerfiles([tmp_path / "missing"])
