"""factory.spec.yamlload: the safe YAML reader under factory.manifest."""

from __future__ import annotations

import time

import pytest

from factory.spec import yamlload


def load(text: str | bytes):
    data = text.encode() if isinstance(text, str) else text
    return yamlload.load(data, "m.yaml")


def only_problem(text: str | bytes) -> str:
    doc, problems = load(text)
    assert doc is None and len(problems) == 1, problems
    return str(problems[0])


def test_values_lines_and_written_text():
    doc, problems = load("a: 1\nb:\n  c: [x, 'y']\n  d:\n    - e: 1.10\n")
    assert problems == []
    assert doc.data == {"a": 1, "b": {"c": ["x", "y"], "d": [{"e": 1.1}]}}
    assert doc.lines == {"a": 1, "b": 2, "b.c": 3, "b.c.0": 3, "b.c.1": 3, "b.d": 4, "b.d.0": 5, "b.d.0.e": 5}
    assert doc.written == {"a": "1", "b.d.0.e": "1.10"}


def test_dates_stay_text():
    doc, _ = load("eol: 2028-06-30\nat: 2001-12-14t21:59:43.10-05:00\n")
    assert doc.data == {"eol": "2028-06-30", "at": "2001-12-14t21:59:43.10-05:00"}


def test_yaml_1_1_value_and_merge_scalars_are_text():
    doc, problems = load("a: =\nb: <<\n")
    assert problems == [] and doc.data == {"a": "=", "b": "<<"}


def test_keys_are_always_text():
    doc, _ = load("on: 1\n1: x\nnull: y\nyes: z\n")
    assert list(doc.data) == ["on", "1", "null", "yes"]


def test_duplicate_keys_name_both_lines_and_keep_going():
    doc, problems = load("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n")
    assert [str(p) for p in problems] == [
        "m.yaml:4: b.c: duplicate key 'c' (first at line 3); remove one of them (YAML would silently use only one)",
        "m.yaml:5: a: duplicate key 'a' (first at line 1); remove one of them (YAML would silently use only one)",
    ]
    assert doc.data == {"a": 1, "b": {"c": 1}}


def test_a_billion_laughs_is_refused_fast():
    text = 'a0: &a0 ["x","x","x","x","x","x","x","x","x"]\n'
    text += "".join(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    started = time.perf_counter()
    assert "more than 20 YAML aliases" in only_problem(text)
    assert time.perf_counter() - started < 0.1


def test_a_few_aliases_are_fine():
    doc, problems = load("common: &c [curl, jq]\na: *c\nb: *c\n")
    assert problems == [] and doc.data["b"] == ["curl", "jq"] and doc.lines["b.1"] == 1


def test_alias_expansion_is_bounded_by_a_value_budget():
    text = "big: &b [" + ",".join(["x"] * 5000) + "]\n" + "".join(f"k{i}: *b\n" for i in range(12))
    assert f"more than {yamlload.MAX_NODES} values" in only_problem(text)


def test_a_list_containing_itself_is_refused():
    assert "nested more than 20 levels deep (through aliases)" in only_problem("a: &a [*a]\n")


@pytest.mark.parametrize("depth, ok", [(20, True), (21, False), (100_000, False)])
def test_nesting_depth_is_limited(depth, ok):
    _doc, problems = load("[" * depth + "]" * depth if depth < 100 else "[" * depth)
    if ok:
        assert problems == [] or "top level" in str(problems[0])  # a list, but not too deep
    else:  # refused by our count, or (for absurd depths) by libyaml's own limit first
        assert "nested more than 20 levels deep" in str(problems[0]) or "nesting depth" in str(problems[0])


def test_size_limit():
    assert "a manifest may be at most 256 KiB" in only_problem(b"a: " + b"x" * 300_000)


def test_not_utf8_names_line_and_byte():
    assert only_problem(b"a: 1\nb: caf\xe9\n") == \
        "m.yaml:2: not UTF-8: byte b'\\xe9' at offset 11 (invalid continuation byte); save the file as UTF-8"


def test_a_utf8_byte_order_mark_is_accepted():
    doc, problems = load(b"\xef\xbb\xbfa: 1\n")
    assert problems == [] and doc.data == {"a": 1}


@pytest.mark.parametrize("text, expected", [
    ("", "m.yaml: file is empty"),
    ("# nothing\n", "m.yaml: file is empty"),
    ("- a\n", "m.yaml:1: the top level must be a mapping"),
    ("hello\n", "m.yaml:1: the top level must be a mapping"),
    ("a: 1\n---\nb: 2\n", "m.yaml:2: not valid YAML: expected a single document"),
    ("a: [1\nb: 2\n", "m.yaml:2: not valid YAML"),
    ("a: \x07\n", "m.yaml:1: character U+0007 is not allowed"),
    ("a: !!python/object/apply:os.system [id]\n",
     "m.yaml:1: a: YAML tag !!python/object/apply:os.system is not supported"),
    ("a: !custom x\n", "m.yaml:1: a: YAML tag !custom is not supported"),
    ("a: !!set {x: null}\n", "m.yaml:1: a: YAML tag !!set is not supported"),
    ("base: &b {x: 1}\nc:\n  <<: *b\n", "m.yaml:3: c: YAML merge keys (<<) are not supported"),
    ("? [a]\n: b\n", "m.yaml:1: a key must be plain text"),
])
def test_unusable_files(text, expected):
    assert only_problem(text).startswith(expected)
