"""Invocation settings: factory.yaml, then environment overrides, validated in one place.

The JSON Schema in ``schema/config.schema.json`` is the only definition of the keys and their
defaults; this module fills defaults from it, so that a default is declared once.

The file is read like a manifest (``factory.yaml`` may come from a pull request): the safe YAML
reader with its budgets, duplicate keys and line numbers, then the schema (single-line text where a
value reaches a rendered file or a command), then meaning: platforms parse, and the folders that
`factory render` writes to and deletes from stay inside the repository. Every problem is reported
at once, as ``factory.yaml:LINE: key.path: message``, or naming the environment variable it came from.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema.exceptions import ValidationError

from factory.core import platforms
from factory.core.errors import ConfigError, Problem
from factory.spec import schemas, yamlload

CONFIG_FILE = "factory.yaml"

# Environment variable -> (key path, parser). Declared once; documented in docs/config.md.
ENV_OVERRIDES: dict[str, tuple[tuple[str, ...], Any]] = {
    "FACTORY_REGISTRY": (("registry",), str),
    "FACTORY_REPOSITORY": (("repository",), str),
    "FACTORY_PLATFORMS": (("platforms",), lambda v: [p.strip() for p in v.split(",") if p.strip()]),
    "FACTORY_STATE": (("state_dir",), str),
    "FACTORY_TOOLS_PATH": (("tools_path",), lambda v: [p for p in v.split(os.pathsep) if p]),
    "FACTORY_BUILDER": (("builder",), str),
    "FACTORY_SCANNER_DB_UNAVAILABLE": (("policy", "scanner_db_unavailable"), str),
    "COSIGN_KEY": (("signing", "key"), str),
    "FACTORY_KEYLESS": (("signing", "keyless"), lambda v: v.lower() in ("1", "true", "yes")),
    "FACTORY_TLOG_UPLOAD": (("signing", "tlog_upload"), lambda v: v.lower() in ("1", "true", "yes")),
}


@cache
def schema() -> dict:
    return json.loads(resources.files("factory.spec.schema").joinpath("config.schema.json").read_text())


def _defaults(node: dict) -> Any:
    if "default" in node:
        return node["default"]
    if node.get("type") == "object" and "properties" in node:
        return {k: _defaults(v) for k, v in node["properties"].items()}
    return node.get("default")


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass(frozen=True)
class Policy:
    allowed_registries: tuple[str, ...]
    eol_warning_days: int
    certificates_warning_days: int
    max_added_layers: int
    max_total_layers: int
    max_size_overhead_percent: float
    fail_on_severities: tuple[str, ...]
    scanner_db_unavailable: str
    license_deny: tuple[str, ...]
    license_warn: tuple[str, ...]


@dataclass(frozen=True)
class Signing:
    key: str | None
    keyless: bool
    tlog_upload: bool


@dataclass(frozen=True)
class RegistryClient:
    """Retries with exponential backoff for 429/5xx and connection failures, and the request timeout."""

    retries: int = 5
    backoff_seconds: float = 0.5
    timeout_seconds: float = 30


@dataclass(frozen=True)
class Settings:
    root: Path  # the repository root (folder holding factory.yaml)
    registry: str
    repository: str
    insecure_registries: tuple[str, ...]
    platforms: tuple[platforms.Platform, ...]
    manifests_dir: Path
    images_dir: Path
    state_dir: Path
    builder: str | None
    vendor: str
    source_url: str
    defaults: dict = field(hash=False)
    policy: Policy = field(hash=False)
    signing: Signing = field(hash=False)
    # pinned apt-based image for the helper stage of no-shell images (see config.schema.json)
    helper_image: str = ""
    # the org's CA files (PEM, relative to root) every image trusts; checked by factory.certs
    certificates: tuple[str, ...] = ()
    registry_client: RegistryClient = field(default_factory=RegistryClient, hash=False)
    # When set, the only folders external tools are looked up in (a hermetic toolchain).
    tools_path: tuple[Path, ...] | None = None

    @property
    def target(self) -> str:
        """registry/repository, the prefix of every published reference."""
        return f"{self.registry}/{self.repository}"

    @property
    def tools_bin(self) -> Path:
        return self.state_dir / "tools" / "bin"

    @property
    def dev_key(self) -> Path:
        return self.state_dir / "keys" / "cosign.key"

    @property
    def signing_key(self) -> str:
        return self.signing.key or str(self.dev_key)

    def registry_is_insecure(self, registry: str | None = None) -> bool:
        return (registry or self.registry) in self.insecure_registries


def load(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read factory.yaml (or the built-in defaults when there is none), apply env overrides, validate."""
    environ = os.environ if environ is None else environ
    if path is None:
        path = Path.cwd() / CONFIG_FILE
        doc = _read(path) if path.exists() else yamlload.Document({})
    else:
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        doc = _read(path)
    raw, from_env = doc.data, {}
    for var, (keys, parse) in ENV_OVERRIDES.items():
        if environ.get(var):
            node = raw
            for k in keys[:-1]:
                node = node.setdefault(k, {})
                if not isinstance(node, dict):  # the file has a non-mapping there: the schema says so
                    break
            else:
                node[keys[-1]] = parse(environ[var])
                from_env[".".join(keys)] = var
    root = path.parent.resolve()
    problems = _structure_problems(doc, str(path), from_env)
    if not problems:
        problems = _meaning_problems(raw, root, doc, str(path), from_env)
    if problems:
        raise ConfigError("\n".join(str(p) for p in problems),
                          hint="every key, its default and its environment override: factory/spec/schema/config.schema.json")
    return _build(_deep_merge(_defaults(schema()), raw), root)


def _read(path: Path) -> yamlload.Document:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    doc, problems = yamlload.load(data, str(path), yamlload.CONFIG)
    if problems or doc is None:
        raise ConfigError("\n".join(str(p) for p in problems))
    return doc


# --- structure: the schema ----------------------------------------------------------------------

# What each pattern in the config schema means, in words (a unit test checks every pattern has one).
PATTERN_WORDS: dict[str, str] = {
    r"^[^\u0000-\u0008\u000a-\u001f\u007f\u0085\u2028\u2029]*$":
        "a single line of text (no newline or control character)",
    r"^[^\u0000-\u001f\u007f\u0085\u2028\u2029]*$": "a single line of text (no tab, newline or control character)",
    r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]+)?$": "a registry host[:port] like ghcr.io or 127.0.0.1:5000",
    r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$": "a lowercase repository path like myorg/base",
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$": "a buildx builder name (letters, digits, '_', '.', '-')",
    "^(https?://[^\\s\"'\\\\<>`]+)?$": "an http(s) URL without spaces, quotes or backslashes (or empty)",
    r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$": "a time zone name like UTC or Europe/Berlin",
    r"^[a-z_][a-z0-9_-]{0,31}$": "a user name: lowercase letters, digits, '_' or '-', at most 32 characters",
    r"^[A-Za-z0-9 .+()-]+$": "an SPDX license expression like Apache-2.0 or (MIT OR Apache-2.0)",
    r"^[A-Za-z0-9.+-]+$": "an SPDX license id like AGPL-3.0-only",
    r"^([a-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@sha256:[0-9a-f]{64}$":
        "an image reference pinned by digest, like docker.io/library/debian:bookworm-slim@sha256:<64 hex>",
    r"^[A-Za-z0-9_][A-Za-z0-9._/-]*[.](pem|crt|cer)$":
        "a PEM file path relative to the repository root, like certs/org-root-ca.pem (.pem, .crt or .cer)",
}


@cache
def _validator():
    return schemas.Validator(schema())


def _structure_problems(doc: yamlload.Document, shown: str, from_env: dict[str, str]) -> list[Problem]:
    problems: dict[Problem, None] = {}  # ordered set: jsonschema repeats some errors
    for error in sorted(_validator().iter_errors(doc.data), key=lambda e: [str(p) for p in e.absolute_path]):
        for key, message in _explain(error):
            problems.setdefault(_problem(key, message, doc, shown, from_env))
    return list(problems)


def _problem(key: str, message: str, doc: yamlload.Document, shown: str, from_env: dict[str, str]) -> Problem:
    """Where a bad value came from: the environment variable that set it, or the file and line."""
    for set_key, var in from_env.items():
        if key == set_key or key.startswith(set_key + "."):
            return Problem(f"{var} (environment)", None, key, message)
    # A key the file does not have (a list item an override added ...): the line of its mapping.
    line = doc.lines.get(key) or doc.lines.get(key.rpartition(".")[0])
    return Problem(shown, line, key, message)


def _explain(error: ValidationError) -> list[tuple[str, str]]:
    path = ".".join(str(p) for p in error.absolute_path)
    kind, value, limit = error.validator, error.instance, error.validator_value
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return [(_join(path, k), _unknown_key(k, path, allowed)) for k in value if k not in allowed]
    if kind == "type":
        expected = " or ".join(_TYPE_WORDS.get(t, t) for t in ([limit] if isinstance(limit, str) else limit))
        return [(path, f"expected {expected}, got {_describe(value)}")]
    if kind == "enum":
        options = {str(o).lower(): o for o in limit}  # `critical` and `CRITICL` both mean CRITICAL
        close = difflib.get_close_matches(str(value).lower(), list(options), n=1, cutoff=0.6)
        hint = f"; did you mean {options[close[0]]!r}?" if close else ""
        return [(path, f"expected one of {', '.join(map(repr, limit))}, got {_describe(value)}{hint}")]
    if kind == "pattern":
        words = PATTERN_WORDS.get(limit, f"text matching {limit}")
        return [(path, f"expected {words}, got {_quote(value)}")]
    if kind in ("maxLength", "minLength"):
        bound = "at most" if kind == "maxLength" else "at least"
        return [(path, f"is {len(value)} characters long; {bound} {limit} allowed")]
    if kind in ("maxItems", "minItems"):
        bound = "at most" if kind == "maxItems" else "at least"
        return [(path, f"has {len(value)} items; {bound} {limit} allowed")]
    if kind in ("minimum", "maximum", "exclusiveMinimum"):
        words = {"minimum": "less than the minimum", "maximum": "more than the maximum",
                 "exclusiveMinimum": "not more than"}[kind]
        return [(path, f"{value!r} is {words} {limit}")]
    if kind == "uniqueItems":
        return [(path, "lists the same value more than once")]
    return [(path, error.message[:300])]


_TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a finite number", "boolean": "true or false",
               "array": "a list", "object": "a mapping of keys", "null": "nothing (null)"}


def _unknown_key(key: str, path: str, allowed: list[str]) -> str:
    if any(word in key.lower() for word in ("password", "secret", "token")):
        return (f"unknown key {_quote(key)}: secrets never go in factory.yaml (it is committed); cosign's "
                "key password comes from COSIGN_PASSWORD, registry credentials from the docker config")
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key {_quote(key)}; did you mean {close[0]!r}?"
    where = f"under {path!r}" if path else "at the top level"
    return f"unknown key {_quote(key)}; allowed {where}: {', '.join(allowed)}"


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (the key has no value)"
    if isinstance(value, bool):
        return f"true/false ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"text {_quote(value)}"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    return _quote(value)


def _quote(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# --- meaning --------------------------------------------------------------------------------------

def _meaning_problems(raw: dict, root: Path, doc: yamlload.Document, shown: str,
                      from_env: dict[str, str]) -> list[Problem]:
    found: list[tuple[str, str]] = []
    for i, text in enumerate(raw.get("platforms", [])):
        try:
            platforms.parse(text)
        except ValueError as e:
            found.append((f"platforms.{i}", str(e)))
    defaults = _defaults(schema())
    given = {key: raw.get(key, defaults[key]) for key in ("manifests_dir", "images_dir")}
    manifests, problem = _inside(root, given["manifests_dir"], root_ok=True)  # only read
    if problem:
        found.append(("manifests_dir", problem))
    images, problem = _inside(root, given["images_dir"], root_ok=False)  # written and cleaned by render
    if problem:
        found.append(("images_dir", problem))
    elif images == manifests or images in manifests.parents:
        found.append(("images_dir", f"{_quote(given['images_dir'])} holds manifests_dir "
                                    f"{_quote(given['manifests_dir'])}; `factory render` removes files it did not "
                                    "render there: use separate folders"))
    return [_problem(key, message, doc, shown, from_env) for key, message in found]


def _inside(root: Path, text: str, *, root_ok: bool) -> tuple[Path, str]:
    """(the folder, resolved), and a problem when it is outside the repository (or is the repository
    itself, unless ``root_ok``). Symbolic links are followed before checking."""
    folder = (root / text).resolve()
    if folder == root and not root_ok:
        return folder, (f"{_quote(text)} is the repository itself; use a folder inside it "
                        "(`factory render` writes and removes files there)")
    if folder != root and root not in folder.parents:
        return folder, f"{_quote(text)} resolves to {folder}, outside the repository {root}; use a folder inside it"
    return folder, ""


def _build(d: dict, root: Path) -> Settings:
    return Settings(
        root=root,
        registry=d["registry"],
        repository=d["repository"],
        insecure_registries=tuple(d["insecure_registries"]),
        platforms=platforms.parse_all(d["platforms"]),
        manifests_dir=(root / d["manifests_dir"]),
        images_dir=(root / d["images_dir"]),
        state_dir=root / d["state_dir"],  # an absolute state_dir stays as it is
        builder=d["builder"],
        vendor=d["vendor"],
        source_url=d["source_url"],
        defaults=d["defaults"],
        policy=Policy(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["policy"].items()}),
        signing=Signing(**d["signing"]),
        helper_image=d["helper_image"],
        certificates=tuple(d["certificates"]),
        registry_client=RegistryClient(**d["registry_client"]),
        tools_path=None if d["tools_path"] is None else tuple(root / p for p in d["tools_path"]),
    )
