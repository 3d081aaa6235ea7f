"""Load manifests: safe YAML, then structure by the JSON Schema, then meaning in Python.

The result is a :class:`Catalog` of frozen :class:`~factory.model.Manifest` objects; nothing
downstream reads YAML. Every problem in every file is collected and raised together as one
:class:`~factory.errors.ManifestError`, each pointing at a file, a line and a key path, quoting the
bad value and saying what was expected.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from factory.core import platforms
from factory.core.errors import ManifestError, Problem
from factory.core.model import (
    CaFile,
    ImageTest,
    Manifest,
    Upstream,
    User,
    Variant,
    Waiver,
)
from factory.spec import schemas, yamlload
from factory.spec.config import Settings

SUFFIXES = (".yaml", ".yml")


@cache
def schema() -> dict:
    return json.loads(resources.files("factory.spec.schema").joinpath("manifest.schema.json").read_text())


# What each pattern in the schema means, in words, for error messages and docs/manifests.md.
# A unit test checks every pattern in the schema has an entry here.
PATTERN_WORDS: dict[str, str] = {
    r"^[^\u0000-\u0008\u000a-\u001f\u007f\u0085\u2028\u2029]*$":
        "a single line of text (no newline or control character)",
    r"^[a-z0-9][a-z0-9._-]*$":
        "lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, "
        "like python-3.11-slim",
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$": "a date YYYY-MM-DD, like 2028-06-30",
    r"^[a-z0-9][a-z0-9+._-]*(=[A-Za-z0-9.+:~_-]+)?$":
        "a package name (lowercase letters, digits, '+', '.', '_', '-'), "
        "optionally pinned as name=version",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "a variable name: letters, digits and '_', not starting with a digit",
    r"^(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})$":
        "major.minor like 1.2 (no leading zeros, no patch: the patch is assigned at publish)",
    r"^([a-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$":
        "a lowercase registry/repository like docker.io/library/debian, without tag or digest",
    r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$":
        "a tag: letters, digits, '_', '.', '-' (not first), at most 128 characters",
    r"^sha256:[0-9a-f]{64}$": "sha256:<64 lowercase hex digits>",
    r"^[0-9]+(\.[0-9]+)?$": "a release number like 12, 22.04 or 3.20",
    r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$": "a time zone name like UTC or Europe/Berlin",
    r"^[a-z_][a-z0-9_-]{0,31}$":
        "a user name: lowercase letters, digits, '_' or '-', starting with a letter or '_', "
        "at most 32 characters",
    r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(/[a-z0-9._-]+)*$":
        "a lowercase label key like org.example.team",
    r"^[A-Za-z0-9 .+()-]+$": "an SPDX license expression like Apache-2.0 or (MIT OR Apache-2.0)",
    r"^[A-Z]+-[0-9]{3}$": "a policy rule ID like POL-001",
    r"^[A-Za-z0-9_][A-Za-z0-9._/-]*[.](pem|crt|cer)$":
        "a PEM file path relative to the repository root, like certs/team-ca.pem (.pem, .crt or .cer)",
}

_TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number",
               "boolean": "true or false", "array": "a list", "object": "a mapping of keys",
               "null": "nothing"}


# ---------------------------------------------------------------------------------------------
# The catalog


class Catalog(Mapping[str, Manifest]):
    """Every loaded manifest by name, and the parent hierarchy between them. Immutable."""

    def __init__(self, manifests: Iterable[Manifest]) -> None:
        by_name: dict[str, Manifest] = {}
        for m in manifests:
            if m.name in by_name:
                raise ValueError(f"two manifests named {m.name!r}")
            by_name[m.name] = m
        self._by_name = MappingProxyType(dict(sorted(by_name.items())))

    def __getitem__(self, name: str) -> Manifest:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"Catalog({list(self._by_name)})"

    def ordered(self) -> list[Manifest]:
        """Parents before children: by depth in the hierarchy, then by name (deterministic)."""
        return sorted(self.values(), key=lambda m: (len(self.ancestors(m.name)), m.name))

    def children(self, name: str) -> list[Manifest]:
        self[name]  # KeyError for an unknown name, like the other queries
        return [m for m in self.values() if m.parent == name]

    def descendants(self, name: str) -> list[Manifest]:
        """Children, their children ...: in dependency order (each after its parent)."""
        self[name]
        return [m for m in self.ordered() if any(a.name == name for a in self.ancestors(m.name))]

    def ancestors(self, name: str) -> list[Manifest]:
        """Parent, grandparent ...: nearest first. Stops at a parent outside the catalog."""
        chain: list[Manifest] = []
        current = self[name]
        while current.parent in self._by_name:
            current = self[current.parent]
            if current in chain or current.name == name:
                raise ValueError(f"parent cycle through {name!r}")  # load_all never builds one
            chain.append(current)
        return chain


# ---------------------------------------------------------------------------------------------
# Public entry points


def load_all(settings: Settings, paths: Sequence[Path] | None = None) -> Catalog:
    """Load manifests (files or folders; default: every manifest in settings.manifests_dir).

    A ``parent`` that is not among ``paths`` is loaded from settings.manifests_dir, so a single
    child can be validated on its own. Raises ManifestError with every problem of every file.
    """
    files, problems = find_files(settings, paths)
    loaded = [_load_one(f, settings) for f in files]
    loaded += _load_missing_parents(loaded, settings)
    problems += [p for one in loaded for p in one.problems]
    problems += _cross_file_problems(loaded, settings)
    if problems:
        raise ManifestError(sorted(problems, key=_problem_order))
    return Catalog(one.manifest for one in loaded if one.manifest)


def load_file(path: Path, settings: Settings) -> Manifest:
    """Load one manifest file (and its parents, to check them). Raises ManifestError."""
    catalog = load_all(settings, [path])
    target = path.resolve()
    return next(m for m in catalog.values() if m.path.resolve() == target)


def parse(data: bytes, path: Path, settings: Settings) -> Manifest:
    """One manifest from its bytes: structure and the checks that need no other file."""
    one = _parse(data, path, settings)
    if one.problems:
        raise ManifestError(sorted(one.problems, key=_problem_order))
    assert one.manifest is not None
    return one.manifest


# ---------------------------------------------------------------------------------------------
# Finding files


def find_files(settings: Settings, paths: Sequence[Path] | None) -> tuple[list[Path], list[Problem]]:
    """The manifest files named by paths (files, or folders of *.yaml/*.yml; default
    settings.manifests_dir), de-duplicated, and a problem for each path that does not exist."""
    files: dict[Path, Path] = {}  # resolved -> as given (for messages)
    problems: list[Problem] = []
    for given in (settings.manifests_dir,) if paths is None else paths:
        given = Path(given)
        if given.is_dir():
            found = sorted(p for p in given.iterdir() if p.suffix in SUFFIXES and p.is_file())
        elif given.is_file():
            found = [given]
        else:
            problems.append(Problem(shown_path(given), None, "", "no such file or folder"))
            found = []
        for f in found:
            files.setdefault(f.resolve(), f)
    return list(files.values()), problems


def _load_missing_parents(loaded: list[_Loaded], settings: Settings) -> list[_Loaded]:
    """Load parents named by the given files from manifests_dir (<parent>.yaml), transitively."""
    have = {one.resolved for one in loaded}
    names = {one.name for one in loaded if one.name}
    extra: list[_Loaded] = []
    queue = [one.manifest.parent for one in loaded if one.manifest and one.manifest.parent]
    while queue:
        parent = queue.pop(0)
        if parent in names:
            continue
        candidates = [settings.manifests_dir / f"{parent}{s}" for s in SUFFIXES]
        found = next((c for c in candidates if c.is_file() and c.resolve() not in have), None)
        if found is None:
            continue  # reported as a missing parent by _cross_file_problems
        one = _load_one(found, settings)
        extra.append(one)
        have.add(one.resolved)
        names.add(one.name or parent)
        if one.manifest and one.manifest.parent:
            queue.append(one.manifest.parent)
    return extra


# ---------------------------------------------------------------------------------------------
# One file


@dataclass(frozen=True)
class _Loaded:
    path: Path
    resolved: Path
    name: str | None  # the name key when it is usable text, even if the file has other problems
    name_line: int | None
    manifest: Manifest | None
    problems: list[Problem]


def _load_one(path: Path, settings: Settings) -> _Loaded:
    try:
        data = path.read_bytes()
    except OSError as e:
        return _Loaded(path, path.resolve(), None, None, None,
                       [Problem(shown_path(path), None, "", f"cannot read: {e.strerror}")])
    return _parse(data, path, settings)


def _parse(data: bytes, path: Path, settings: Settings) -> _Loaded:
    shown = shown_path(path)
    doc, problems = yamlload.load(data, shown)
    if doc is None:
        return _Loaded(path, path.resolve(), None, None, None, problems)
    raw = doc.data
    problems += _structure_problems(doc, shown)
    problems += _meaning_problems(doc, path, shown)
    name = raw.get("name") if isinstance(raw.get("name"), str) and not _bad_name(raw["name"]) else None
    manifest = None if problems else _manifest(doc, path, settings)
    return _Loaded(path, path.resolve(), name, doc.lines.get("name"), manifest, problems)


def _manifest(doc: yamlload.Document, path: Path, settings: Settings) -> Manifest:
    """Build the model from a document that passed every check; fill defaults from factory.yaml."""
    d, defaults = doc.data, settings.defaults
    up = d.get("upstream")
    user = d.get("user", defaults["user"])
    return Manifest(
        path=path,
        name=d["name"],
        version=d["version"],
        description=d["description"],
        distro=d["distro"],
        upstream=Upstream(up["image"], up.get("tag"), up.get("digest")) if up else None,
        parent=d.get("parent"),
        release=d.get("release"),
        runtime=d.get("runtime", _schema_default("properties", "runtime")),
        platforms=platforms.parse_all(d["platforms"]) if "platforms" in d else settings.platforms,
        timezone=d.get("timezone", defaults["timezone"]),
        user=User(user["name"], int(user["uid"]), int(user["gid"])),
        ca_certificates=d.get("ca_certificates", defaults["ca_certificates"]),
        certificates=_ca_files(d, settings),
        env=_pairs(d.get("env")),
        packages=tuple(d.get("packages", ())),
        labels=_pairs(d.get("labels")),
        licenses=d.get("licenses", defaults["licenses"]),
        eol=date.fromisoformat(d["eol"]) if "eol" in d else None,
        variants=tuple(
            Variant(name, tuple(v.get("packages", ())), _pairs(v.get("env")))
            for name, v in sorted(d.get("variants", {}).items())
        ),
        tests=tuple(
            ImageTest(t["name"], tuple(t["run"]), t.get("expect_stdout"),
                      int(t.get("expect_exit", _schema_default("properties", "tests", "items", "properties",
                                                               "expect_exit"))))
            for t in d.get("tests", ())
        ),
        waivers=tuple(Waiver(w["rule"], w["reason"], date.fromisoformat(w["expires"]))
                      for w in d.get("waivers", ())),
        lines=dict(doc.lines),
    )


def _ca_files(d: dict, settings: Settings) -> tuple[CaFile, ...]:
    """factory.yaml's org-wide CA files, then the manifest's own (checked by factory.certs)."""
    org = [CaFile(settings.root / w, w, f"certificates.{i}", True) for i, w in enumerate(settings.certificates)]
    own = [CaFile(settings.root / w, w, f"certificates.additional.{i}", False)
           for i, w in enumerate(d.get("certificates", {}).get("additional", ()))]
    return tuple(org + own)


def _pairs(mapping: dict | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((mapping or {}).items()))


def _schema_default(*pointer: str) -> Any:
    """The schema's default at a path of schema keywords: declared once, in the schema."""
    node = schema()
    for key in pointer:
        node = node[key]
    return node["default"]


# ---------------------------------------------------------------------------------------------
# Structure: JSON Schema errors -> Problems that point at the key and say what to do


@cache
def _validator() -> jsonschema.protocols.Validator:
    return schemas.Validator(schema())  # ECMA-262 `$` in patterns: see factory.schemas


def _structure_problems(doc: yamlload.Document, shown: str) -> list[Problem]:
    problems: dict[Problem, None] = {}  # ordered set: jsonschema repeats some errors
    for error in _validator().iter_errors(doc.data):
        for key, message in _explain(error, doc):
            problems.setdefault(Problem(shown, _line_of(doc, key), key, message))
    return list(problems)


def _explain(error: ValidationError, doc: yamlload.Document) -> list[tuple[str, str]]:
    """One schema error -> (key path, message) pairs. Some errors name several keys."""
    path = ".".join(str(p) for p in error.absolute_path)
    kind = error.validator
    if "propertyNames" in error.relative_schema_path:  # a bad key; error.instance is the key
        key = _join(path, error.instance)
        return [(key, f"key {_quote(error.instance)} is not valid: expected {_expected(error, kind)}")]
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return [(_join(path, k), _unknown_key(k, path, allowed))
                for k in error.instance if k not in allowed]
    if kind == "required":
        return [(_join(path, k), f"required key {k!r} is missing{_required_hint(k)}")
                for k in error.validator_value if k not in error.instance]
    if kind == "oneOf" and not path:  # the only oneOf: upstream xor parent
        both = "upstream" in error.instance and "parent" in error.instance
        detail = ("; this manifest has both" if both else
                  ": 'upstream' pins an external image, 'parent' names another org image")
        key = "parent" if both else ""
        return [(key, f"exactly one of 'upstream' or 'parent' is required{detail}")]
    return [(path, _value_message(error, doc.written.get(path)))]


def _value_message(error: ValidationError, written: str | None) -> str:
    value, kind, limit = error.instance, error.validator, error.validator_value
    if kind == "type":
        return f"expected {_type_words(limit)}, got {_describe(value, written)}{_quote_hint(limit, value, written)}"
    if kind in ("enum", "const"):
        options = limit if kind == "enum" else [limit]
        hint = _did_you_mean(value, [str(o) for o in options]) if kind == "enum" and isinstance(value, str) else ""
        return f"expected {_one_of(options)}, got {_describe(value, written)}{hint}"
    if kind == "pattern":
        return f"expected {_expected(error, kind)}, got {_quote(value)}{_pattern_hint(value, limit)}"
    if kind in ("maxLength", "minLength"):
        if kind == "maxLength":
            return f"is {len(value)} characters long; at most {limit} allowed"
        return f"is {len(value)} characters long; at least {limit} needed"
    if kind in ("maxItems", "minItems"):
        if kind == "minItems" and limit == 1:
            return "must not be empty"
        bound = "at most" if kind == "maxItems" else "at least"
        return f"has {len(value)} items; {bound} {limit} allowed"
    if kind == "maxProperties":
        return f"has {len(value)} keys; at most {limit} allowed"
    if kind == "uniqueItems":
        return f"lists {_quote(_first_repeat(value))} more than once"
    if kind == "minimum":
        return f"{value!r} is less than the minimum {limit}"
    if kind == "maximum":
        return f"{value!r} is more than the maximum {limit}"
    return error.message[:300]  # a keyword this module does not phrase yet: jsonschema's words


def _first_repeat(items: list) -> Any:
    seen: list = []  # a list, not a set: items may be unhashable (lists, mappings)
    for item in items:
        if item in seen:
            return item
        seen.append(item)
    return None


def _expected(error: ValidationError, kind: str) -> str:
    if kind == "pattern":
        return PATTERN_WORDS.get(error.validator_value, f"text matching {error.validator_value}")
    if kind == "maxLength":
        return f"at most {error.validator_value} characters"
    return error.message[:200]


def _unknown_key(key: str, path: str, allowed: list[str]) -> str:
    message = f"unknown key {_quote(key)}"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if not close:
        close = [a for a in allowed if a.lower() == str(key).lower()]
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    homes = [h for h in _key_homes().get(key, []) if h.rpartition(".")[0] != path]
    if homes:
        return f"{message} here; it belongs at {' or '.join(homes)}"
    where = f"under {path!r}" if path else "at the top level"
    return f"{message}; allowed {where}: {', '.join(allowed)}"


@cache
def _key_homes() -> dict[str, list[str]]:
    """Key name -> every key path where the schema allows it (for 'it belongs at user.uid')."""
    homes: dict[str, list[str]] = {}

    def walk(node: dict, path: str) -> None:
        node = resolve_ref(node)
        for key, sub in node.get("properties", {}).items():
            homes.setdefault(key, []).append(_join(path, key))
            walk(sub, _join(path, key))
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")  # tests[].name, as docs/manifests.md writes it

    walk(schema(), "")
    return homes


def resolve_ref(node: dict) -> dict:
    """A schema node with its local $ref (#/$defs/x) followed; keywords beside the $ref win."""
    ref = node.get("$ref", "")
    if not ref.startswith("#/$defs/"):
        return node
    return {**schema()["$defs"][ref.rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}


_REQUIRED_HINTS = {"apiVersion": " (write apiVersion: factory/v1)",
                   "version": ' (major.minor, quoted: version: "1.0")'}


def _required_hint(key: str) -> str:
    return _REQUIRED_HINTS.get(key, "")


def _pattern_hint(value: str, pattern: str) -> str:
    if pattern == schema()["properties"]["upstream"]["properties"]["image"]["pattern"]:
        if "@" in value or ":" in value.rsplit("/", 1)[-1]:
            return "; put the tag in upstream.tag and the digest in upstream.digest"
    return ""


def _quote_hint(expected: str | list, value: Any, written: str | None) -> str:
    """YAML reads 1.10 as a number and yes/no as booleans; the fix is quoting."""
    if expected == "string" and written is not None and value is not None:
        return f'; quote it: "{written}"'
    return ""


def _type_words(expected: str | list) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return " or ".join(_TYPE_WORDS.get(n, n) for n in names)


def _describe(value: Any, written: str | None = None) -> str:
    """How YAML read a value, in words: `a number (1.10)`, `true/false (yes)`, `text 'x'`."""
    if value is None:
        return "nothing (the key has no value)"
    if isinstance(value, bool):
        kind = "true/false"
    elif isinstance(value, (int, float)):
        kind = "a number"
    elif isinstance(value, str):
        return f"text {_quote(value)}"
    elif isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    elif isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    else:
        return _quote(value)
    return f"{kind} ({written if written is not None else repr(value)})"


def _one_of(options: list) -> str:
    texts = [repr(o) for o in options]
    return texts[0] if len(texts) == 1 else "one of " + ", ".join(texts)


def _did_you_mean(value: str, options: list[str]) -> str:
    close = difflib.get_close_matches(value.lower(), options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# ---------------------------------------------------------------------------------------------
# Meaning within one file (checked even when the structure has problems, on the parts that are
# well-formed, so that one run reports everything)


def _meaning_problems(doc: yamlload.Document, path: Path, shown: str) -> list[Problem]:
    raw = doc.data
    found: list[tuple[str, str]] = []
    name = raw.get("name")
    if isinstance(name, str) and not _bad_name(name) and (path.stem != name or path.suffix not in SUFFIXES):
        found.append(("name", f"the file must be named '{name}.yaml' to match its name; "
                              f"rename {path.name} or change name"))
    found += _date_problems(raw)
    found += _platform_problems(raw.get("platforms"))
    return [Problem(shown, _line_of(doc, key), key, message) for key, message in found]


def _bad_name(name: str) -> bool:
    return not _validator().evolve(schema=schema()["$defs"]["name"]).is_valid(name)


def _date_problems(raw: dict) -> list[tuple[str, str]]:
    dates = [("eol", raw.get("eol"))]
    waivers = raw.get("waivers")
    if isinstance(waivers, list):
        dates += [(f"waivers.{i}.expires", w.get("expires")) for i, w in enumerate(waivers)
                  if isinstance(w, dict)]
    found = []
    for key, text in dates:
        if isinstance(text, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            try:
                date.fromisoformat(text)
            except ValueError as e:
                found.append((key, f"{text!r} is not a calendar date ({e})"))
    return found


def _platform_problems(texts: Any) -> list[tuple[str, str]]:
    if not isinstance(texts, list):
        return []
    found, seen = [], {}
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            continue  # the schema reports it
        try:
            platform = platforms.parse(text)
        except ValueError as e:
            found.append((f"platforms.{i}", str(e)))
            continue
        if platform in seen and texts[seen[platform]] != text:
            found.append((f"platforms.{i}", f"{text!r} is the same platform as "
                                            f"{texts[seen[platform]]!r} (platforms.{seen[platform]})"))
        seen.setdefault(platform, i)
    return found


# ---------------------------------------------------------------------------------------------
# Meaning across files: unique names, parents that exist, no cycles


def _cross_file_problems(loaded: list[_Loaded], settings: Settings) -> list[Problem]:
    good = [one for one in loaded if one.manifest]
    problems = _duplicate_names(loaded)
    known = {one.name for one in loaded if one.name}
    for one in good:
        parent = one.manifest.parent
        if parent and parent not in known:
            problems.append(_problem_at(one, "parent", _missing_parent(parent, known, settings)))
    problems += _cycles(good)
    return problems


def _duplicate_names(loaded: list[_Loaded]) -> list[Problem]:
    first: dict[str, _Loaded] = {}
    problems = []
    for one in loaded:
        if not one.name:
            continue
        if one.name in first:
            other = first[one.name]
            where = f"{shown_path(other.path)}:{other.name_line}" if other.name_line else shown_path(other.path)
            problems.append(_problem_at(one, "name", f"name {one.name!r} is already used by {where}; "
                                                     "names must be unique"))
        else:
            first[one.name] = one
    return problems


def _missing_parent(parent: str, known: set[str], settings: Settings) -> str:
    message = f"parent {parent!r} is not a manifest (no {parent}.yaml in {shown_path(settings.manifests_dir)})"
    return message + _did_you_mean(parent, sorted(known))


def _cycles(good: list[_Loaded]) -> list[Problem]:
    by_name = {one.name: one for one in good}
    parent_of = {one.name: one.manifest.parent for one in good}
    problems, reported = [], set()
    for start in sorted(parent_of):
        cycle = _cycle_from(start, parent_of)
        if not cycle or frozenset(cycle) in reported:
            continue
        reported.add(frozenset(cycle))
        text = " -> ".join([*cycle, cycle[0]])
        problems += [_problem_at(by_name[n], "parent", f"parent cycle: {text}") for n in cycle]
    return problems


def _cycle_from(start: str, parent_of: dict[str, str | None]) -> list[str]:
    """Follow parents from start; the names that repeat, or [] when the walk reaches a root."""
    chain = [start]
    while True:
        parent = parent_of.get(chain[-1])
        if parent not in parent_of:
            return []  # a root, or a parent that is missing (reported separately)
        if parent in chain:
            return chain[chain.index(parent):]
        chain.append(parent)


def _problem_at(one: _Loaded, key: str, message: str) -> Problem:
    line = one.manifest.line_of(key) if one.manifest else one.name_line
    return Problem(shown_path(one.path), line, key, message)


# ---------------------------------------------------------------------------------------------
# Small helpers


def _line_of(doc: yamlload.Document, key: str) -> int | None:
    while key:
        if key in doc.lines:
            return doc.lines[key]
        key = key.rpartition(".")[0]
    return None


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _quote(value: Any, limit: int = 80) -> str:
    """repr() of a user value, cut short: messages quote what was written, not a megabyte of it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 5]}...{text[-1]} ({len(str(value))} characters)"


def shown_path(path: Path | str) -> str:
    """The path as people want to read it: relative to the current folder when inside it."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else str(path)
    except (OSError, ValueError):
        return str(path)


def _problem_order(p: Problem) -> tuple:
    return (p.path, p.line or 0, p.key, p.message)
