"""Property: no string that a manifest (or factory.yaml) can hold adds a Dockerfile instruction.

For arbitrary text in every string field that reaches a rendered file, either rendering refuses it with
an error that names the key, or every rendered Dockerfile has exactly the shape it has with a benign
value (the same instructions, in order, each with the same number of words, pairs or arguments) and
the value reads back unchanged where it lands (ENV and LABEL values, parsed as BuildKit parses them).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from factory.core.errors import ManifestError
from factory.core.model import Upstream, User, Variant
from factory.render import contexts as render
from tests.unit.test_render import (
    CASES,
    DIGEST_A,
    logical_lines,
    make_manifest,
    make_settings,
)

HOSTILE_CHARS = list('\n\r\\"\'$ {}#=;&|`<>()[],:@/.-_\t\x00\x0b\x0c\x85\u2028\u2029') + list("RUNaz09")
HOSTILE_VALUES = [
    'x" \\\nRUN touch /pwned', 'x"\nRUN touch /pwned', "x\\", "\\", '"', "$(id)", "`id`", "'; rm -rf / #",
    "${HOME}", "$HOME", "a\\\n", "<<EOF", '"]', '", "--user", "root', "a b", "#", "# escape=`", "\\\\",
    "x \\", "x\\ ", "-", "--help", "UTC", "ca-certificates", "busybox", "",
]


def values(pattern: str | None = None) -> st.SearchStrategy[str]:
    options = [st.text(), st.text(alphabet=st.sampled_from(HOSTILE_CHARS)), st.sampled_from(HOSTILE_VALUES)]
    if pattern:  # also values the schema accepts, so that the rendering path is exercised, not only refusals
        options.append(st.from_regex(pattern, fullmatch=True))
    return st.one_of(options)


# --- reading a Dockerfile back as BuildKit does ----------------------------------------------------

def split_words(rest: str) -> list[str]:
    """BuildKit's parseWords: split on unquoted blanks; quotes and escapes stay in the word."""
    words, word, quote, i = [], "", None, 0
    while i < len(rest):
        ch = rest[i]
        if quote is None and ch in " \t":
            if word:
                words.append(word)
            word, i = "", i + 1
            continue
        if ch == "\\" and quote != "'" and i + 1 < len(rest):
            word, i = word + rest[i:i + 2], i + 2
            continue
        if ch in "\"'":
            quote = None if quote == ch else (ch if quote is None else quote)
        word, i = word + ch, i + 1
    if word:
        words.append(word)
    return words


def unquote(word: str) -> str:
    """The Dockerfile lexer's reading of a value: double quotes with \\" \\\\ \\$ escapes, single quotes
    literal. A `$` that would expand a variable is kept as `${NAME}` for build args and refused otherwise."""
    out, i = [], 0
    while i < len(word):
        ch = word[i]
        if ch == '"':
            i += 1
            while word[i] != '"':
                if word[i] == "\\" and word[i + 1] in '"$\\':
                    out.append(word[i + 1])
                    i += 2
                elif word[i] == "$":
                    end = word.find("}", i)
                    assert word[i + 1] == "{" and word[i + 2:end].isidentifier(), f"expansion in {word!r}"
                    out.append(word[i:end + 1])
                    i = end + 1
                else:
                    out.append(word[i])
                    i += 1
            i += 1
        elif ch == "'":
            end = word.index("'", i + 1)
            out.append(word[i + 1:end])
            i = end + 1
        elif ch == "\\":
            out.append(word[i + 1])
            i += 2
        else:
            assert ch != "$", f"expansion in {word!r}"
            out.append(ch)
            i += 1
    return "".join(out)


def pairs(line: str) -> dict[str, str]:
    """ENV/LABEL key="value" pairs of one logical line."""
    out = {}
    for word in split_words(line.split(None, 1)[1]):
        key, _, value = word.partition("=")
        out[unquote(key)] = unquote(value)
    return out


def shape(dockerfile: str) -> list[tuple[str, int]]:
    """Each instruction and how many words, pairs or arguments it has."""
    out = []
    for line in logical_lines(dockerfile):
        keyword, _, rest = line.partition(" ")
        if keyword in ("ENV", "LABEL"):
            count = len(pairs(line))
        elif keyword == "RUN" and rest.startswith("["):
            count = len(json.loads(rest))
        elif keyword == "RUN":
            count = len(shlex.split(rest))
        else:
            count = len(split_words(rest))
        out.append((keyword, count))
    return out


def value_at(dockerfile: str, instruction: str, key: str) -> str | None:
    found = [pairs(line) for line in logical_lines(dockerfile) if line.startswith(instruction + " ")]
    return next((p[key] for p in found if key in p), None)


# --- the fields that reach a rendered file --------------------------------------------------------

@dataclass(frozen=True)
class Field:
    name: str
    place: Callable  # (settings, value) -> (manifest, settings)
    benign: Callable[[str], str] | str
    pattern: str | None = None
    lands: tuple[str, str, str] | None = None  # (file, instruction, key) where the value reads back

    def benign_for(self, value: str) -> str:
        return self.benign(value) if callable(self.benign) else self.benign


def _m(**overrides):
    return lambda s, v: (make_manifest(s, **{k: f(v) if callable(f) else f for k, f in overrides.items()}), s)


def _on(case: str, **overrides):
    return lambda s, v: (make_manifest(s, **{**CASES[case], **{k: f(v) for k, f in overrides.items()}}), s)


def _settings_field(key: str, case: str = "debian"):
    return lambda s, v: (make_manifest(s, **CASES[case]), dataclasses.replace(s, **{key: v}))


def _package_benign(v: str) -> str:
    name = v.split("=", 1)[0]
    return v if name in ("ca-certificates", "tzdata") else "netbase"


def _or_empty(benign: str) -> Callable[[str], str]:
    """An empty value leaves its label out: compare with an empty one."""
    return lambda v: v if v == "" else benign


PACKAGE = r"^[a-z0-9][a-z0-9+._-]*(=[A-Za-z0-9.+:~_-]+)?$"
TIMEZONE = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"
USER_NAME = r"^[a-z_][a-z0-9_-]{0,31}$"
NAME = r"^[a-z0-9][a-z0-9._-]*$"
LABEL_KEY = r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(/[a-z0-9._-]+)*$"

FIELDS = [
    Field("description", _m(description=lambda v: v), "plain words",
          lands=("Dockerfile", "LABEL", "org.opencontainers.image.description")),
    Field("env value", _m(env=lambda v: (("PYTHONUNBUFFERED", v),)), "1",
          lands=("Dockerfile", "ENV", "PYTHONUNBUFFERED")),
    Field("env key", _m(env=lambda v: ((v, "1"),)), "FOO", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"),
    Field("label value", _m(labels=lambda v: (("com.example.team", v),)), "platform",
          lands=("Dockerfile", "LABEL", "com.example.team")),
    Field("label key", _m(labels=lambda v: ((v, "x"),)), "com.example.x", pattern=LABEL_KEY),
    Field("licenses", _m(licenses=lambda v: v), _or_empty("MIT"),
          lands=("Dockerfile", "LABEL", "org.opencontainers.image.licenses")),
    Field("package (apt)", _m(packages=lambda v: (v,)), _package_benign, pattern=PACKAGE),
    Field("package (apk)", _on("alpine", packages=lambda v: (v,)), _package_benign, pattern=PACKAGE),
    Field("debug package (apt)", _m(variants=lambda v: (Variant("debug", (v,)),)), "strace", pattern=PACKAGE),
    Field("debug package (distroless)", _on("distroless", variants=lambda v: (Variant("debug", (v,)),)), "busybox",
          pattern=PACKAGE),
    Field("debug env value", _m(variants=lambda v: (Variant("debug", (), (("LEVEL", v),)),)), "1",
          lands=("debug/Dockerfile", "ENV", "LEVEL")),
    Field("timezone (apt)", _m(timezone=lambda v: v), lambda v: "UTC" if v == "UTC" else "Europe/Berlin",
          pattern=TIMEZONE, lands=("Dockerfile", "ENV", "TZ")),
    Field("timezone (scratch)", _on("scratch", timezone=lambda v: v), lambda v: "UTC" if v == "UTC" else "Asia/Tokyo",
          pattern=TIMEZONE, lands=("Dockerfile", "ENV", "TZ")),
    Field("user name (apt)", _m(user=lambda v: User(v, 1001, 1001)), "app", pattern=USER_NAME),
    Field("user name (apk)", _on("alpine", user=lambda v: User(v, 1001, 1001)), "app", pattern=USER_NAME),
    Field("user name (distroless)", _on("distroless", user=lambda v: User(v, 1001, 1001)), "app", pattern=USER_NAME),
    Field("upstream tag", _m(upstream=lambda v: Upstream("docker.io/library/python", v, DIGEST_A)), "3.11",
          pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"),
    Field("upstream image", _m(upstream=lambda v: Upstream(v, "3.11", DIGEST_A)), "docker.io/library/python",
          pattern=r"^([a-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$"),
    Field("upstream digest", _m(upstream=lambda v: Upstream("docker.io/library/python", "3.11", v)), DIGEST_A,
          pattern=r"^[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$"),
    Field("parent", _on("parent", parent=lambda v: v), "debian-12-slim", pattern=NAME),
    Field("name", _m(name=lambda v: v), "python", pattern=NAME),
    Field("manifest path", lambda s, v: (make_manifest(s, path=s.root / "manifests" / v), s), "x.yaml"),
    Field("vendor (factory.yaml)", _settings_field("vendor"), _or_empty("myorg"),
          lands=("Dockerfile", "LABEL", "org.opencontainers.image.vendor")),
    # the source label is a build arg now (source_url, or the git remote): the value never enters the file
    Field("source_url (factory.yaml)", _settings_field("source_url"), _or_empty("https://git.example.org/x")),
    Field("helper_image (factory.yaml)", _settings_field("helper_image", "distroless"),
          "docker.io/library/debian@sha256:" + "0" * 64),
]


@pytest.fixture(scope="module")
def base_settings(tmp_path_factory):
    return make_settings(tmp_path_factory.mktemp("repo"))


def _dockerfiles(image: render.RenderedImage) -> dict[str, str]:
    return {p: c.decode() for p, c in image.files.items() if p.endswith("Dockerfile")}


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_no_value_adds_an_instruction(field, base_settings):
    @hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(value=values(field.pattern))
    @example(value='x" \\\nRUN touch /pwned')
    @example(value="a$b\\")
    def check(value):
        try:
            image = render.render_manifest(*field.place(base_settings, value))
        except ManifestError as e:  # refused: the error must name the key it refuses
            assert len(e.problems) == 1 and e.problems[0].key and e.problems[0].message
            return
        benign = render.render_manifest(*field.place(base_settings, field.benign_for(value)))
        got, expected = _dockerfiles(image), _dockerfiles(benign)
        assert sorted(got) == sorted(expected)
        for path in expected:
            assert shape(got[path]) == shape(expected[path]), f"{field.name}={value!r} changed {path}"
        if field.lands:
            path, instruction, key = field.lands
            found = value_at(got[path], instruction, key)
            assert found == value or (found is None and value == "" and field.benign_for("") == ""), found

    check()


def test_the_reader_used_above_sees_through_the_renderers_quoting():
    # guards the property test itself: if these helpers were wrong, the property could pass vacuously
    line = 'LABEL a="x \\"y\\" \\$z \\\\" b="${FACTORY_VERSION}" c=plain'
    assert pairs(line) == {"a": 'x "y" $z \\', "b": "${FACTORY_VERSION}", "c": "plain"}
    injected = 'FROM x\nLABEL a="1" \\\n      b="2"\nRUN touch /pwned\nUSER 1\n'
    assert shape(injected) == [("FROM", 1), ("LABEL", 2), ("RUN", 2), ("USER", 1)]
    with pytest.raises(AssertionError, match="expansion"):
        unquote('"$HOME"')
