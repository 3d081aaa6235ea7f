"""The JSON Schemas: one loader, one validator, and one explainer of their errors.

The validator has two fixes over the stock one:

- ``pattern`` with ECMA-262 ``$``: Python's ``$`` also matches before a trailing newline, so
  ``name: "ok\\n"`` would pass ``^[a-z]+$`` and could break out of a Dockerfile line.
- ``number`` means a finite number: YAML's ``.nan`` and ``.inf`` pass every ``minimum`` and ``maximum``
  (a comparison with NaN is always false), so a budget of ``.nan`` would switch a gate off.

``explain`` turns one ``ValidationError`` into (key path, message) pairs that say what is wrong and
what is expected. What differs between files is data, in a :class:`Words` per schema: what each
pattern means in words, hints for required keys, and (the ignore file) a hint per key, which makes
every message of that file read ``<what is wrong>: <what to do>`` (docs/gates.md shows that form).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal

import jsonschema
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator as ValidatorType

# A JSON Schema, or a document read from JSON or YAML: its values are whatever the file holds.
Schema = dict[str, Any]
Name = Literal["manifest", "config", "catalog"]


@cache
def load(name: Name) -> Schema:
    """factory/spec/schema/<name>.schema.json, parsed once."""
    text = resources.files("factory.spec.schema").joinpath(f"{name}.schema.json").read_text()
    loaded: Schema = json.loads(text)
    return loaded


def _strict_pattern(validator: ValidatorType, pattern: str, instance: object,
                    schema_: Schema) -> Iterator[ValidationError]:
    if not isinstance(instance, str) or not validator.is_type(instance, "string"):
        return
    match = re.search(pattern, instance)
    if match is None or (pattern.endswith("$") and match.end() != len(instance)):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _finite_number(checker: object, instance: object) -> bool:
    is_number: bool = jsonschema.Draft202012Validator.TYPE_CHECKER.is_type(instance, "number")
    # an int is always finite; math.isfinite(10**400) would raise OverflowError (no float is that large)
    return is_number and (isinstance(instance, int) or (isinstance(instance, float) and math.isfinite(instance)))


# jsonschema compares every pair of a list's items when they cannot be sorted (mixed types): 20,000
# items take minutes. Longer lists are left to maxItems, which every uniqueItems in the schemas sets
# at most this high (a unit test checks).
MAX_UNIQUE_ITEMS = 1000
_UNIQUE_ITEMS = jsonschema.Draft202012Validator.VALIDATORS["uniqueItems"]


def _bounded_unique(validator: ValidatorType, unique: object, instance: object,
                    schema_: Schema) -> Iterator[ValidationError]:
    if isinstance(instance, list) and len(instance) > MAX_UNIQUE_ITEMS:
        return iter(())
    errors: Iterator[ValidationError] | None = _UNIQUE_ITEMS(validator, unique, instance, schema_)
    return iter(errors or ())


# jsonschema.validators.extend() carries no annotations; what it returns is a Validator class.
Validator: type[ValidatorType] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator, {"pattern": _strict_pattern, "uniqueItems": _bounded_unique},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("number", _finite_number),
)


@cache
def validator(name: Name) -> ValidatorType:
    return Validator(load(name))


def resolve_ref(node: Schema, schema: Schema) -> Schema:
    """A schema node with its local $ref (#/$defs/x) followed; keywords beside the $ref win."""
    ref = node.get("$ref", "")
    if not ref.startswith("#/$defs/"):
        return node
    return {**schema["$defs"][ref.rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}


# ---------------------------------------------------------------------------------------------
# The explainer


@dataclass(frozen=True)
class Words:
    """The words one schema's errors are explained with."""

    schema: Schema = field(hash=False)
    patterns: Mapping[str, str] = field(default_factory=dict, hash=False)  # pattern -> what it means
    required: Mapping[str, str] = field(default_factory=dict, hash=False)  # key -> hint when missing
    # key name -> what to do; when given, every message is '<what is wrong>: <what to do>'
    hints: Mapping[str, str] = field(default_factory=dict, hash=False)
    one_of: str = ""  # the root oneOf, when neither key is there: what each one means
    secrets: str = ""  # for an unknown key that looks like a secret: where secrets go instead
    pattern_hint: Callable[[str, str], str] | None = field(default=None, hash=False)  # (value, pattern)

    @cached_property
    def key_homes(self) -> dict[str, list[str]]:
        """Key name -> every key path where the schema allows it (for 'it belongs at user.uid')."""
        homes: dict[str, list[str]] = {}

        def walk(node: Schema, path: str) -> None:
            node = resolve_ref(node, self.schema)
            for key, sub in node.get("properties", {}).items():
                homes.setdefault(key, []).append(_join(path, key))
                walk(sub, _join(path, key))
            if isinstance(node.get("items"), dict):
                walk(node["items"], f"{path}[]")  # tests[].name, as docs/manifests.md writes it

        walk(self.schema, "")
        return homes


_TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a finite number",
               "boolean": "true or false", "array": "a list", "object": "a mapping of keys",
               "null": "nothing (null)"}


@dataclass(frozen=True)
class _Error:
    """What an explanation reads of a ``ValidationError`` (which types all of it ``Any | Unset``)."""

    path: str  # key path of the failing value, "user.uid"
    kind: str  # the failing keyword: "type", "pattern" ...
    value: Any  # the failing value: whatever the file holds there
    limit: Any  # the keyword's value in the schema: a type name, a pattern, a bound ...
    node: Schema  # the schema node holding the keyword
    message: str  # jsonschema's own words, for keywords not phrased here
    key_name: bool  # the value is a key that failed propertyNames
    field: str  # the nearest key name on the path ("reason" for ignores.0.reason)

    @classmethod
    def of(cls, error: ValidationError) -> _Error:
        node = error.schema if isinstance(error.schema, dict) else {}
        return cls(
            path=".".join(str(p) for p in error.absolute_path), kind=str(error.validator),
            value=error.instance, limit=error.validator_value, node=node, message=error.message,
            key_name="propertyNames" in error.relative_schema_path,
            field=next((p for p in reversed(error.absolute_path) if isinstance(p, str)), ""),
        )


def explain(error: ValidationError, words: Words,
            written: Mapping[str, str] = MappingProxyType({})) -> list[tuple[str, str]]:
    """One schema error -> (key path, message) pairs; some errors name several keys.

    ``written``: key path -> the value as the file wrote it, where YAML read something else than text
    (``yamlload.Document.written``), to quote it in hints."""
    e = _Error.of(error)
    if words.hints:
        return _explain_hinted(e, words, written.get(e.path))
    if e.key_name:  # a bad key; the value is the key
        return [(_join(e.path, e.value), f"key {quote(e.value)} is not valid: expected {_expected(e, words)}")]
    if e.kind == "additionalProperties":
        allowed = sorted(e.node.get("properties", {}))
        return [(_join(e.path, k), _unknown_key(k, e.path, allowed, words)) for k in e.value if k not in allowed]
    if e.kind == "required":
        return [(_join(e.path, k), f"required key {k!r} is missing{words.required.get(k, '')}")
                for k in e.limit if k not in e.value]
    if e.kind == "oneOf" and not e.path:  # exactly one of two keys (a manifest's upstream or parent)
        a, b = (branch["required"][0] for branch in e.limit)
        both = a in e.value and b in e.value
        detail = "; this manifest has both" if both else f": {words.one_of}" if words.one_of else ""
        return [(b if both else "", f"exactly one of {a!r} or {b!r} is required{detail}")]
    return [(e.path, _value_message(e, words, written.get(e.path)))]


def _value_message(e: _Error, words: Words, written: str | None) -> str:
    value, kind, limit = e.value, e.kind, e.limit
    if kind == "type":
        return f"expected {_type_words(limit)}, got {describe(value, written)}{_quote_hint(limit, value, written)}"
    if kind in ("enum", "const"):
        options = limit if kind == "enum" else [limit]
        return f"expected {_one_of(options)}, got {describe(value, written)}{_enum_hint(value, options)}"
    if kind == "pattern":
        hint = words.pattern_hint(value, limit) if words.pattern_hint else ""
        return f"expected {_expected(e, words)}, got {quote(value)}{hint}"
    if kind == "maxLength":
        return f"is {len(value)} characters long; at most {limit} allowed"
    if kind == "minLength":
        return f"is {len(value)} characters long; at least {limit} needed"
    if kind == "minItems" and limit == 1:
        return "must not be empty"
    if kind in ("maxItems", "minItems"):
        bound = "at most" if kind == "maxItems" else "at least"
        return f"has {len(value)} items; {bound} {limit} allowed"
    if kind == "maxProperties":
        return f"has {len(value)} keys; at most {limit} allowed"
    if kind == "uniqueItems":
        return f"lists {quote(_first_repeat(value))} more than once"
    bounds = {"minimum": "less than the minimum", "maximum": "more than the maximum",
              "exclusiveMinimum": "not more than"}
    if kind in bounds:
        return f"{value!r} is {bounds[kind]} {limit}"
    return e.message[:300]  # a keyword this module does not phrase yet: jsonschema's words


def _explain_hinted(e: _Error, words: Words, written: str | None) -> list[tuple[str, str]]:
    """The short form, for a schema whose every key has a hint: '<what is wrong>: <what to do>'."""
    if e.kind == "required":
        return [(_join(e.path, k), f"missing required key {k!r}: {words.hints[k]}")
                for k in e.limit if k not in e.value]
    if e.kind == "additionalProperties":
        allowed = list(e.node.get("properties", {}))
        return [(_join(e.path, k), f"unknown key {k!r}{_close(k, allowed, ' (did you mean {!r}?)')}; "
                                   f"allowed: {', '.join(allowed)}")
                for k in e.value if k not in allowed]
    hint = words.hints.get(e.field, e.message)
    if written is not None:  # YAML read it as something else: `reason: no` is the boolean false
        return [(e.path, f"{written!r} is read by YAML as {e.value!r}; quote it: {hint}")]
    if e.kind == "minLength":
        return [(e.path, f"{e.field} {e.value!r} is too short: {hint}")]
    if e.kind in ("pattern", "type", "minItems", "uniqueItems", "not"):  # not: a key another one rules out
        return [(e.path, f"{e.value!r} is not valid here: {hint}")]
    return [(e.path, e.message)]


def _expected(e: _Error, words: Words) -> str:
    if e.kind == "pattern":
        return words.patterns.get(e.limit, f"text matching {e.limit}")
    if e.kind == "maxLength":
        return f"at most {e.limit} characters"
    return e.message[:200]


def _unknown_key(key: str, path: str, allowed: list[str], words: Words) -> str:
    message = f"unknown key {quote(key)}"
    if words.secrets and any(word in key.lower() for word in ("password", "secret", "token")):
        return f"{message}: {words.secrets}"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if not close:
        close = [a for a in allowed if a.lower() == str(key).lower()]
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    homes = [h for h in words.key_homes.get(key, []) if h.rpartition(".")[0] != path]
    if homes:
        return f"{message} here; it belongs at {' or '.join(homes)}"
    where = f"under {path!r}" if path else "at the top level"
    return f"{message}; allowed {where}: {', '.join(allowed)}"


def _enum_hint(value: object, options: Sequence[object]) -> str:
    """`critical` and `CRITICL` both point at CRITICAL."""
    by_lower = {str(o).lower(): o for o in options}
    return _close(str(value).lower(), list(by_lower), "; did you mean {!r}?", by_lower) if len(options) > 1 else ""


def did_you_mean(value: str, options: list[str]) -> str:
    """'; did you mean 'x'?' for the closest of the options, or nothing."""
    return _close(value.lower(), options, "; did you mean {!r}?")


def _close(text: str, options: list[str], form: str, shown: Mapping[str, object] | None = None) -> str:
    close = difflib.get_close_matches(text, options, n=1, cutoff=0.6)
    if not close:
        return ""
    return form.format(shown[close[0]] if shown else close[0])


def _quote_hint(expected: str | list[str], value: object, written: str | None) -> str:
    """YAML reads 1.10 as a number and yes/no as booleans; the fix is quoting."""
    if expected == "string" and written is not None and value is not None:
        return f'; quote it: "{written}"'
    return ""


def _type_words(expected: str | list[str]) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return " or ".join(_TYPE_WORDS.get(n, n) for n in names)


def describe(value: object, written: str | None = None) -> str:
    """How YAML read a value, in words: `a number (1.10)`, `true/false (yes)`, `text 'x'`."""
    if value is None:
        return "nothing (the key has no value)"
    if isinstance(value, str):
        return f"text {quote(value)}"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    if isinstance(value, bool):
        shown = written if written is not None else str(value).lower()
        return f"true/false ({shown})"
    if isinstance(value, int | float):
        return f"a number ({written if written is not None else repr(value)})"
    return quote(value)


def _one_of(options: Sequence[object]) -> str:
    texts = [repr(o) for o in options]
    return texts[0] if len(texts) == 1 else "one of " + ", ".join(texts)


def _first_repeat(items: list[object]) -> object:
    seen: list[object] = []  # a list, not a set: items may be unhashable (lists, mappings)
    for item in items:
        if item in seen:
            return item
        seen.append(item)
    return None


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


# user:password@ in a URL: a message quotes the value as written, and a password is never printed.
_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/\s@]*@")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced."""
    return _USERINFO.sub(r"\1<credentials removed>@", text)


def quote(value: object, limit: int = 80) -> str:
    """repr() of a user value, cut short: messages quote what was written, not a megabyte of it, and
    never the credentials of a URL."""
    text = redact(repr(value))
    return text if len(text) <= limit else f"{text[:limit - 5]}...{text[-1]} ({len(str(value))} characters)"
