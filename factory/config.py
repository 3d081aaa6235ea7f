"""Invocation settings: factory.yaml, then environment overrides, validated in one place.

The JSON Schema in ``schema/config.schema.json`` is the only definition of the keys and their
defaults; this module fills defaults from it, so that a default is declared once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from factory import platforms
from factory.errors import ConfigError

CONFIG_FILE = "factory.yaml"

# Environment variable -> (key path, parser). Declared once; documented in docs/config.md.
ENV_OVERRIDES: dict[str, tuple[tuple[str, ...], Any]] = {
    "FACTORY_REGISTRY": (("registry",), str),
    "FACTORY_REPOSITORY": (("repository",), str),
    "FACTORY_PLATFORMS": (("platforms",), lambda v: [p.strip() for p in v.split(",") if p.strip()]),
    "FACTORY_STATE": (("state_dir",), str),
    "FACTORY_BUILDER": (("builder",), str),
    "FACTORY_SCANNER_DB_UNAVAILABLE": (("policy", "scanner_db_unavailable"), str),
    "COSIGN_KEY": (("signing", "key"), str),
    "FACTORY_KEYLESS": (("signing", "keyless"), lambda v: v.lower() in ("1", "true", "yes")),
    "FACTORY_TLOG_UPLOAD": (("signing", "tlog_upload"), lambda v: v.lower() in ("1", "true", "yes")),
}


@cache
def schema() -> dict:
    return json.loads(resources.files("factory.schema").joinpath("config.schema.json").read_text())


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
        raw: dict = _read(path) if path.exists() else {}
    else:
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        raw = _read(path)
    for var, (keys, parse) in ENV_OVERRIDES.items():
        if environ.get(var):
            node = raw
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = parse(environ[var])
    _validate(raw, path)
    return _build(_deep_merge(_defaults(schema()), raw), path.parent.resolve())


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _validate(raw: dict, path: Path) -> None:
    errors = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(raw), key=lambda e: list(e.path))
    if errors:
        lines = [f"{path}: {'.'.join(map(str, e.path)) or '(top level)'}: {e.message}" for e in errors]
        raise ConfigError("\n".join(lines) + "\n(environment overrides: " + ", ".join(ENV_OVERRIDES) + ")")
    for p in raw.get("platforms", []):
        try:
            platforms.parse(p)
        except ValueError as e:
            raise ConfigError(f"{path}: platforms: {e}") from None


def _build(d: dict, root: Path) -> Settings:
    return Settings(
        root=root,
        registry=d["registry"],
        repository=d["repository"],
        insecure_registries=tuple(d["insecure_registries"]),
        platforms=platforms.parse_all(d["platforms"]),
        manifests_dir=(root / d["manifests_dir"]),
        images_dir=(root / d["images_dir"]),
        state_dir=Path(d["state_dir"]),
        builder=d["builder"],
        vendor=d["vendor"],
        source_url=d["source_url"],
        defaults=d["defaults"],
        policy=Policy(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["policy"].items()}),
        signing=Signing(**d["signing"]),
        helper_image=d["helper_image"],
    )
