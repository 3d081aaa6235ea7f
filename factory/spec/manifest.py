"""Load manifests: safe YAML, then structure by the JSON Schema, then meaning in Python.

The result is a :class:`ManifestSet` of frozen :class:`~factory.core.model.Manifest` objects; nothing
downstream reads YAML. Every problem in every file is collected and raised together as one
:class:`~factory.core.errors.ManifestError`, each pointing at a file, a line and a key path, quoting the
bad value and saying what was expected.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

from factory.core import platforms
from factory.core.errors import ManifestError, Problem, RepoFileError, UsageError
from factory.core.model import (
    CaFile,
    Deprecation,
    ImageTest,
    Manifest,
    Parent,
    Upstream,
    User,
    Variant,
    Waiver,
)
from factory.spec import guards, repofs, schemas, yamlload
from factory.spec.config import Settings

SUFFIXES = (".yaml", ".yml")


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



def _upstream_hint(value: str, pattern: str) -> str:
    """upstream.image written with its tag or digest: say where they go."""
    image_pattern = schemas.load("manifest")["properties"]["upstream"]["properties"]["image"]["pattern"]
    if pattern == image_pattern and ("@" in value or ":" in value.rsplit("/", 1)[-1]):
        return "; put the tag in upstream.tag and the digest in upstream.digest"
    return ""


WORDS = schemas.Words(
    schemas.load("manifest"), PATTERN_WORDS,
    required={"apiVersion": " (write apiVersion: factory/v1)", "version": ' (major.minor, quoted: version: "1.0")'},
    one_of="'upstream' pins an external image, 'parent' names another org image",
    pattern_hint=_upstream_hint,
)


# ---------------------------------------------------------------------------------------------
# The manifest set


class ManifestSet(Mapping[str, Manifest]):
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
        return f"ManifestSet({list(self._by_name)})"

    def ordered(self) -> list[Manifest]:
        """Parents before children: by depth in the hierarchy, then by name (deterministic)."""
        return sorted(self.values(), key=lambda m: (len(self.ancestors(m.name)), m.name))

    def children(self, name: str) -> list[Manifest]:
        self[name]  # KeyError for an unknown name, like the other queries
        return [m for m in self.values() if m.base == Parent(name)]

    def descendants(self, name: str) -> list[Manifest]:
        """Children, their children ...: in dependency order (each after its parent)."""
        self[name]
        return [m for m in self.ordered() if any(a.name == name for a in self.ancestors(m.name))]

    def ancestors(self, name: str) -> list[Manifest]:
        """Parent, grandparent ...: nearest first. Stops at a parent outside the set."""
        chain: list[Manifest] = []
        current = self[name]
        while isinstance(current.base, Parent) and current.base.name in self._by_name:
            current = self[current.base.name]
            if current in chain or current.name == name:
                raise ValueError(f"parent cycle through {name!r}")  # load_all never builds one
            chain.append(current)
        return chain


# ---------------------------------------------------------------------------------------------
# Public entry points


def load_all(settings: Settings, paths: Sequence[Path] | None = None) -> ManifestSet:
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
    manifests = _inherit_users([one.manifest for one in loaded if one.manifest])
    clashes = _user_clashes(manifests)
    if clashes:
        raise ManifestError(sorted(clashes, key=_problem_order))
    return ManifestSet(manifests)


def _inherit_users(manifests: list[Manifest]) -> list[Manifest]:
    """A child that names no user runs as its parent's (resolved up the chain), not as the default:
    the default user would be a second user beside the parent's, and clash with it at build time."""
    by_name = {m.name: m for m in manifests}
    done: dict[str, Manifest] = {}

    def resolved(name: str) -> Manifest:
        if name not in done:
            m = by_name[name]
            if isinstance(m.base, Parent) and "user" not in m.lines and m.base.name in by_name:
                m = replace(m, user=resolved(m.base.name).user)
            done[name] = m
        return done[name]

    return [resolved(m.name) for m in manifests]


def _user_clashes(manifests: list[Manifest]) -> list[Problem]:
    """A child's own user must be its ancestors' exactly, or share no name or id with them."""
    by_name = {m.name: m for m in manifests}
    problems = []
    for m in manifests:
        ancestor = by_name.get(m.parent or "")
        while ancestor is not None and ancestor is not m:
            clash = guards.user_clash(m.user, ancestor.user, ancestor.name)
            if clash:
                problems.append(Problem(shown_path(m.path), m.line_of("user"), "user", clash))
                break
            ancestor = by_name.get(ancestor.parent or "")
    return problems


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
    for written in (settings.manifests_dir,) if paths is None else paths:
        given = Path(written)
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
        data = repofs.read_bytes(path, repofs.containing_root(path, settings.root), yamlload.MAX_BYTES,
                                 yamlload.MANIFEST.noun)
    except RepoFileError as e:
        return _Loaded(path, path.resolve(), None, None, None, [Problem(shown_path(path), None, "", e.reason)])
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
        base=Upstream(up["image"], up.get("tag"), up.get("digest")) if up else Parent(d["parent"]),
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
        deprecated=Deprecation(d["deprecated"]["successor"], d["deprecated"].get("reason", ""))
        if "deprecated" in d else None,
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


def _ca_files(d: dict[str, Any], settings: Settings) -> tuple[CaFile, ...]:
    """factory.yaml's org-wide CA files, then the manifest's own (checked by factory.certs)."""
    org = [CaFile(settings.root / w, w, f"certificates.{i}", True) for i, w in enumerate(settings.certificates)]
    own = [CaFile(settings.root / w, w, f"certificates.additional.{i}", False)
           for i, w in enumerate(d.get("certificates", {}).get("additional", ()))]
    return tuple(org + own)


def _pairs(mapping: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((mapping or {}).items()))


def _schema_default(*pointer: str) -> Any:
    """The schema's default at a path of schema keywords: declared once, in the schema."""
    node = schemas.load("manifest")
    for key in pointer:
        node = node[key]
    return node["default"]


# ---------------------------------------------------------------------------------------------
# Structure: JSON Schema errors -> Problems that point at the key and say what to do


def _structure_problems(doc: yamlload.Document, shown: str) -> list[Problem]:
    problems: dict[Problem, None] = {}  # ordered set: jsonschema repeats some errors
    for error in schemas.validator("manifest").iter_errors(doc.data):
        for key, message in schemas.explain(error, WORDS, doc.written):
            problems.setdefault(Problem(shown, doc.line_of(key), key, message))
    return list(problems)


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
    found += guards.value_problems(raw)
    return [Problem(shown, doc.line_of(key), key, message) for key, message in found]


def _bad_name(name: str) -> bool:
    return not schemas.validator("manifest").evolve(schema=schemas.load("manifest")["$defs"]["name"]).is_valid(name)


def _date_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
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
    found: list[tuple[str, str]] = []
    seen: dict[platforms.Platform, int] = {}
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
    good = [(one, one.manifest) for one in loaded if one.manifest]
    problems = _duplicate_names(loaded)
    known = {one.name for one in loaded if one.name}
    for one, m in good:
        if isinstance(m.base, Parent) and m.base.name not in known:
            problems.append(_problem_at(one, "parent", _missing_parent(m.base.name, known, settings)))
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
    return message + schemas.did_you_mean(parent, sorted(known))


def _cycles(good: list[tuple[_Loaded, Manifest]]) -> list[Problem]:
    by_name = {m.name: one for one, m in good}
    parent_of = {m.name: m.parent for _, m in good}
    problems: list[Problem] = []
    reported: set[frozenset[str]] = set()
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


def select(catalog: Mapping[str, Manifest], names: Iterable[str] = ()) -> dict[str, Manifest]:
    """The named manifests (all when none is named); an unknown name is a usage error with a "did you
    mean" (every command that takes manifest names asks here)."""
    names = list(names)
    if not names:
        return dict(catalog)
    unknown = [n for n in names if n not in catalog]
    if unknown:
        hints = [f"{n} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(n, list(catalog), 1))
                 else n for n in unknown]
        raise UsageError(f"no manifest named {', '.join(hints)}",
                         hint=f"known: {', '.join(sorted(catalog)) or 'none'}")
    return {n: catalog[n] for n in names}


def shown_path(path: Path | str) -> str:
    """The path as people want to read it: relative to the current folder when inside it."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else str(path)
    except (OSError, ValueError):
        return str(path)


def _problem_order(p: Problem) -> tuple[str, int, str, str]:
    return (p.path, p.line or 0, p.key, p.message)
