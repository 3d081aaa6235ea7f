"""A safe YAML reader for manifests (and factory.yaml) that remembers the line of every key.

``yaml.safe_load`` is not enough for files people write by hand and tools read blindly: it turns
``2028-06-30`` into a ``date`` (so the schema cannot check it as text), silently keeps the last of
two duplicate keys, expands aliases without limit (a "billion laughs" file eats all memory) and
forgets where each value came from. This reader composes the YAML into nodes (libyaml when
available), then builds plain Python values itself, under budgets, recording ``key.path -> line``.

Every failure is a :class:`~factory.errors.Problem`; nothing here raises anything else.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, Event
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from factory.core.errors import Problem
from factory.core.model import nearest_line

MAX_BYTES = 256 * 1024  # a manifest is a page of text; anything bigger is a mistake or an attack
MAX_DEPTH = 20  # the format nests 4 deep; this leaves room without risking recursion limits
MAX_ALIASES = 20  # anchors are handy for shared lists, but each alias can multiply the document
MAX_NODES = 50_000  # values built after alias expansion: bounds memory whatever the aliases do
# Items of one list or keys of one mapping: the schemas allow at most 1000 anywhere; a longer one is
# refused here, before the schema would explain each of its items.
MAX_ITEMS = 5000
MAX_INT = 2**63 - 1  # numbers are bounded before any arithmetic: 10**400 is no float (OverflowError)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ~10x faster; same results

_TAG = "tag:yaml.org,2002:"
# Scalars are built by PyYAML's safe constructor, except these, kept as the text written: a date
# (so `eol: 2028-06-30` and `eol: "2028-06-30"` mean the same thing), and YAML 1.1's `=` and `<<`
# when they stand as values.
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null")}
_TEXT_TAGS = {f"{_TAG}{t}" for t in ("timestamp", "value", "merge")}
_KIND_TAGS: dict[type[Node], str] = {MappingNode: f"{_TAG}map", SequenceNode: f"{_TAG}seq"}


@dataclass(frozen=True)
class Kind:
    """What kind of file is read: for the messages, and whether an empty file is allowed."""

    noun: str  # "a manifest"
    example: str  # the first keys of a good file, shown when the top level is wrong
    empty_ok: bool = False  # an empty (or comments-only) file is an empty mapping: all defaults


MANIFEST = Kind("a manifest", "apiVersion: factory/v1, name: ...")
CONFIG = Kind("a factory.yaml", "registry: ..., repository: ...", empty_ok=True)


@dataclass(frozen=True)
class Document:
    """A parsed YAML file: plain values, and where each key or list item was written."""

    data: Any
    lines: dict[str, int] = field(default_factory=dict)  # "user.uid" / "tests.0.run" -> 1-based line
    # For scalars that YAML did not read as text: the text as written, to quote it in hints
    # (`version: 1.10` is the float 1.1; the user wrote "1.10").
    written: dict[str, str] = field(default_factory=dict)

    def line_of(self, key: str) -> int | None:
        """The line of ``key``, or of its nearest parent that has one (a missing key has none)."""
        return nearest_line(self.lines, key)


class YamlProblem(Exception):
    """Raised inside this module only; ``load`` turns it into a Problem."""

    def __init__(self, line: int | None, key: str, message: str) -> None:
        super().__init__(message)
        self.line, self.key, self.message = line, key, message


def load(data: bytes, path: str, kind: Kind = MANIFEST) -> tuple[Document | None, list[Problem]]:
    """Parse one file's bytes. Returns the document (None when unusable) and every problem found.

    Duplicate keys are reported all together and still give a document; anything that stops
    parsing (syntax, encoding, budgets, a top level that is not a mapping) gives no document.
    """
    try:
        text = _decode(data, kind)
        node = _compose(text, kind)
        if node is None:  # empty, and that is allowed
            return Document({}), []
        builder = _Builder(kind)
        value = builder.build(node, "", 0)
    except YamlProblem as e:
        return None, [Problem(path, e.line, e.key, e.message)]
    problems = [Problem(path, line, key, msg) for line, key, msg in builder.duplicates]
    return Document(value, builder.lines, builder.written), problems


def _decode(data: bytes, kind: Kind) -> str:
    if len(data) > MAX_BYTES:
        raise YamlProblem(None, "", f"file is {len(data) // 1024} KiB; {kind.noun} may be at most "
                                    f"{MAX_BYTES // 1024} KiB")
    try:
        # utf-8-sig: a leading byte-order mark (some Windows editors add one) is harmless
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise YamlProblem(line, "", f"not UTF-8: byte {data[e.start:e.start + 1]!r} at offset "
                                    f"{e.start} ({e.reason}); save the file as UTF-8") from None


def _compose(text: str, kind: Kind) -> Node | None:
    _check_shape(text)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise _syntax_problem(e, text) from None
    if node is None:
        if kind.empty_ok:
            return None
        raise YamlProblem(None, "", f"file is empty: expected {kind.noun} mapping ({kind.example}, ...)")
    if not isinstance(node, MappingNode):
        found = "a list" if isinstance(node, SequenceNode) else f"a single value {_short(node.value)}"
        raise YamlProblem(_line(node), "", f"the top level must be a mapping of keys "
                                           f"({kind.example}), not {found}")
    return node


def _check_shape(text: str) -> None:
    """Walk the event stream (no recursion, nothing built) to refuse deep or alias-heavy files
    before composing them: composing is recursive and keeps every node in memory."""
    depth = aliases = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise YamlProblem(_event_line(event), "",
                                      f"nested more than {MAX_DEPTH} levels deep")
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
            elif isinstance(event, AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise YamlProblem(_event_line(event), "",
                                      f"more than {MAX_ALIASES} YAML aliases (*name); write the "
                                      "values out instead")
    except yaml.YAMLError as e:
        raise _syntax_problem(e, text) from None


def _event_line(event: Event) -> int | None:
    return event.start_mark.line + 1 if event.start_mark else None


def _syntax_problem(e: yaml.YAMLError, text: str) -> YamlProblem:
    if isinstance(e, yaml.reader.ReaderError):  # a control character: position, no mark
        at = text.count("\n", 0, e.position) + 1
        return YamlProblem(at, "", f"character U+{e.character:04X} is not allowed in YAML text "
                                     "(control characters cannot be written literally)")
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        what = " ".join(s for s in (e.context, e.problem) if s)
        return YamlProblem(line, "", f"not valid YAML: {what}")
    return YamlProblem(None, "", f"not valid YAML: {e}")


class _Builder:
    """Nodes -> plain values, recording lines, duplicate keys and a node budget."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.lines: dict[str, int] = {}
        self.written: dict[str, str] = {}
        self.duplicates: list[tuple[int, str, str]] = []
        self.nodes = 0
        self.constructor = yaml.SafeLoader("")  # only its scalar constructors are used

    def build(self, node: Node, path: str, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise YamlProblem(_line(node), path, f"more than {MAX_NODES} values (after expanding "
                                                 f"aliases); {self.kind.noun} is much smaller")
        if depth > MAX_DEPTH:  # reachable only through aliases, e.g. a list that contains itself
            raise YamlProblem(_line(node), path, f"nested more than {MAX_DEPTH} levels deep "
                                                 "(through aliases)")
        if isinstance(node, MappingNode | SequenceNode) and len(node.value) > MAX_ITEMS:
            what = "keys" if isinstance(node, MappingNode) else "items"
            raise YamlProblem(_line(node), path, f"{len(node.value)} {what}; at most {MAX_ITEMS} in one "
                                                 f"{'mapping' if what == 'keys' else 'list'}")
        if isinstance(node, MappingNode):
            self._check_tag(node, path)
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            self._check_tag(node, path)
            return [self._item(item, _join(path, i), depth) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)  # yaml composes mappings, sequences and scalars only
        return self._scalar(node, path)

    def _item(self, node: Node, path: str, depth: int) -> Any:
        self.lines.setdefault(path, _line(node))
        return self.build(node, path, depth + 1)

    def _mapping(self, node: MappingNode, path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{_TAG}merge":
                raise YamlProblem(_line(key_node), path, "YAML merge keys (<<) are not supported; "
                                                         "write the keys out")
            if not isinstance(key_node, ScalarNode):
                raise YamlProblem(_line(key_node), path, "a key must be plain text, not a list or "
                                                         "mapping")
            # Keys are always text in this format: `on:` or `1:` must not become True or 1.
            key = key_node.value
            key_path = _join(path, key)
            _check_text(key, key_path, key_node)
            if key in first_line:
                self.duplicates.append((_line(key_node), key_path,
                                        f"duplicate key {key!r} (first at line {first_line[key]}); "
                                        "remove one of them (YAML would silently use only one)"))
                continue
            first_line[key] = _line(key_node)
            self.lines[key_path] = _line(key_node)
            out[key] = self.build(value_node, key_path, depth + 1)
        return out

    def _scalar(self, node: ScalarNode, path: str) -> Any:
        if node.tag in _TEXT_TAGS:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise YamlProblem(_line(node), path, f"YAML tag {_tag(node)} is not supported; "
                                                 "write plain text, numbers or true/false")
        try:
            value = self.constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError) as e:
            raise YamlProblem(_line(node), path, f"cannot read {_short(node.value)}: {e}") from None
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise YamlProblem(_line(node), path, f"the number {_short(node.value, 30)} is too large "
                                                 f"(at most {MAX_INT})")
        if isinstance(value, str):
            _check_text(value, path, node)
        else:
            self.written[path] = node.value
        return value

    @staticmethod
    def _check_tag(node: Node, path: str) -> None:
        if node.tag != _KIND_TAGS[type(node)]:
            raise YamlProblem(_line(node), path, f"YAML tag {_tag(node)} is not supported")


def _check_text(text: str, path: str, node: Node) -> None:
    """Refuse invisible characters anywhere: format characters (Unicode Cf: U+202E right-to-left
    override, U+2066 isolates, U+200B zero width space ...) make a reviewer read something else than
    what a tool reads ("trojan source"), and C1 controls (U+0080..U+009F) act as terminal escapes.
    C0 controls are left to the schema, which allows a tab or newline only where they are harmless."""
    for ch in text:
        if ch >= "\x80" and (ch <= "\x9f" or unicodedata.category(ch) == "Cf"):
            name = unicodedata.name(ch, "a control character")
            raise YamlProblem(_line(node), path, f"contains the invisible character U+{ord(ch):04X} ({name}); "
                                                 "it would show reviewers other text than tools read: remove it")


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def _tag(node: Node) -> str:
    """The tag as written: !!binary, not tag:yaml.org,2002:binary."""
    return node.tag.replace(_TAG, "!!", 1) if node.tag.startswith(_TAG) else node.tag


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"
