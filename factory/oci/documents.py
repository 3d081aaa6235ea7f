"""The JSON documents a registry sends, read with bounds and checked for shape before anyone indexes them.

A registry that is not ours can send JSON nested 100,000 deep (the json module recurses), a list where
an object belongs, a digest that is a number. ``parse`` bounds the nesting before parsing; the shape
functions check what the factory reads of each document (manifest, index, image config, tag list page,
token answer) and raise ValueError saying what is wrong; the registry client names the request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from factory.oci.layout import INDEX_TYPES

# The OCI digest grammar (image-spec descriptor.md); the factory itself fetches sha256 only.
DESCRIPTOR_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
SHA256 = re.compile(r"sha256:[0-9a-f]{64}")

_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def depth(raw: bytes) -> int:
    """How deep the brackets of a JSON text nest (strings skipped), without recursing."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    level = deepest = 0
    for b in brackets:
        level += 1 if b in b"[{" else -1
        deepest = max(deepest, level)
    return deepest


def parse(raw: bytes, *, max_depth: int = 64) -> Any:
    """The JSON value of ``raw``; ValueError when it is not JSON (UTF-8) or nests deeper than ``max_depth``."""
    if depth(raw) > max_depth:
        raise ValueError(f"the JSON nests deeper than {max_depth} levels")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("the answer is not UTF-8 text") from None
    except RecursionError:  # not reached after the depth check; kept so no input can crash the parser
        raise ValueError(f"the JSON nests deeper than {max_depth} levels") from None
    except ValueError as e:  # JSONDecodeError, and int() of a number over 4300 digits
        raise ValueError(f"the answer is not valid JSON ({str(e)[:100]})") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is {_kind(value)}, expected a JSON object")
    return value


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _optional(doc: Mapping[str, Any], key: str, what: str) -> None:
    """``key`` is a string when present."""
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{what}.{key} is {_kind(value)}, expected a string")


def _strings(value: Any, what: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(f"{what} is not an object of strings")


def descriptor(value: Any, what: str) -> dict[str, Any]:
    d = _object(value, what)
    digest, size = d.get("digest"), d.get("size")
    if not isinstance(digest, str) or not DESCRIPTOR_DIGEST.fullmatch(digest):
        raise ValueError(f"{what}.digest is not a digest like sha256:<64 hex>")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 1 << 53:
        raise ValueError(f"{what}.size is not a byte count")
    _optional(d, "mediaType", what)
    if d.get("platform") is not None:
        platform = _object(d["platform"], f"{what}.platform")
        for key in ("os", "architecture", "variant"):
            _optional(platform, key, f"{what}.platform")
    if d.get("annotations") is not None:
        _strings(d["annotations"], f"{what}.annotations")
    return d


def manifest(raw: bytes, media_type: str, *, max_depth: int = 64) -> dict[str, Any]:
    """An image manifest (config and layers) or an index (manifests), each descriptor checked."""
    doc = _object(parse(raw, max_depth=max_depth), "the manifest")
    _optional(doc, "mediaType", "manifest")
    if media_type in INDEX_TYPES or "manifests" in doc:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise ValueError(f"the index's manifests is {_kind(children)}, expected a list")
        for i, child in enumerate(children):
            descriptor(child, f"manifests[{i}]")
    else:
        descriptor(doc.get("config"), "config")
        layers = doc.get("layers", [])
        if not isinstance(layers, list):
            raise ValueError(f"the manifest's layers is {_kind(layers)}, expected a list")
        for i, layer in enumerate(layers):
            descriptor(layer, f"layers[{i}]")
    if doc.get("annotations") is not None:
        _strings(doc["annotations"], "annotations")
    return doc


def image_config(raw: bytes, *, max_depth: int = 64) -> dict[str, Any]:
    """An image config blob: os/architecture strings, ``config`` an object whose Labels are strings."""
    doc = _object(parse(raw, max_depth=max_depth), "the image config")
    for key in ("os", "architecture", "variant"):
        _optional(doc, key, "image config")
    config = doc.get("config")
    if config is not None:
        _object(config, "the image config's config")
        if config.get("Labels") is not None:
            _strings(config["Labels"], "config.Labels")
    return doc


def names(raw: bytes, key: str, *, max_depth: int = 64) -> list[str]:
    """A tag list or catalog page: ``{"tags": [...]}``; null or missing is none."""
    doc = _object(parse(raw, max_depth=max_depth), "the answer")
    items = doc.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise ValueError(f"{key} is {_kind(items)}, expected a list of names")
    return items


def token(raw: bytes) -> str:
    """A token service's answer: ``{"token": ...}`` or ``{"access_token": ...}``, a header-safe string."""
    doc = _object(parse(raw, max_depth=16), "the token service's answer")
    value = doc.get("token") or doc.get("access_token")
    if not value:
        raise ValueError("the token service answered without a token")
    if not isinstance(value, str) or not re.fullmatch(r"[\x21-\x7e]{1,65536}", value):
        raise ValueError("the token service's token is not a printable string of at most 64 KiB")
    return value


def registry_errors(raw: bytes) -> list[dict[str, str]]:
    """The registry's ``{"errors": [{"code", "message"}]}``; [] for anything else (an error page ...)."""
    try:
        doc = parse(raw, max_depth=16)
    except ValueError:
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return []
    return [{"code": str(e.get("code") or ""), "message": str(e.get("message") or "")}
            for e in errors[:20] if isinstance(e, dict)]
