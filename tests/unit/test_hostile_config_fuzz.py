"""Property tests over untrusted input, end to end: load, validate, render.

Whatever factory.yaml holds, loading gives Settings or a ConfigError; whatever a manifest holds, and
under whatever settings loaded, loading and rendering give build contexts or a ManifestError naming
a key. Never another exception: that would be a traceback for the user (exit 70).
"""

from __future__ import annotations

import copy
import tempfile
from functools import cache
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from factory.core.errors import ConfigError, ManifestError
from factory.render import contexts as render
from factory.spec import config, manifest
from tests.unit.test_manifest_property import (
    GOOD,
    KEY_PATHS,
    _set,
    json_like,
    value,
    yaml_tokens,
)

GOOD_CONFIG = {
    "registry": "ghcr.io", "repository": "myorg/base", "insecure_registries": ["127.0.0.1:5000"],
    "platforms": ["linux/amd64", "linux/arm64"], "manifests_dir": "manifests", "images_dir": "images",
    "state_dir": "/var/lib/factory", "tools_path": None, "builder": None, "vendor": "myorg",
    "source_url": "https://github.com/myorg/base-images",
    "helper_image": "docker.io/library/debian:bookworm-slim@sha256:" + "ab" * 32,
    "registry_client": {"retries": 2, "backoff_seconds": 0.1, "timeout_seconds": 10},
    "defaults": {"timezone": "Europe/Berlin", "user": {"name": "app", "uid": 1001, "gid": 1001},
                 "ca_certificates": True, "licenses": "Apache-2.0"},
    "policy": {"eol_warning_days": 90, "max_added_layers": 3, "max_size_overhead_percent": 50.0,
               "fail_on_severities": ["CRITICAL"], "scanner_db_unavailable": "warn",
               "license_deny": ["AGPL-3.0"], "allowed_registries": ["docker.io"]},
    "signing": {"key": "cosign.key", "keyless": False, "tlog_upload": False},
}
CONFIG_KEY_PATHS = [
    "registry", "repository", "insecure_registries", "insecure_registries.0", "platforms", "platforms.1",
    "manifests_dir", "images_dir", "state_dir", "tools_path", "builder", "vendor", "source_url", "helper_image",
    "registry_client", "registry_client.retries", "registry_client.backoff_seconds", "defaults",
    "defaults.timezone", "defaults.user", "defaults.user.name", "defaults.user.uid", "defaults.licenses",
    "policy.eol_warning_days", "policy.max_size_overhead_percent", "policy.fail_on_severities.0",
    "policy.license_deny.0", "signing.key", "signing.keyless", "unknown",
]
# Values aimed at the config's own checks, beside the manifest tests' generic ones.
config_value = value | st.sampled_from([
    "..", "../outside", "/etc", ".", "", "images", "manifests", "ghcr.io:443", "-x", "https://ok.example/x",
    "javascript:alert(1)", "https://x.example/\"\\", float("nan"), float("inf"), 10**40, -1, None,
])


@cache
def _folder() -> Path:
    # One folder for the whole run: hypothesis calls each test hundreds of times.
    return Path(tempfile.mkdtemp(prefix="factory-fuzz-"))


def _load_config(data: bytes) -> config.Settings | None:
    path = _folder() / "factory.yaml"
    path.write_bytes(data)
    try:
        return config.load(path, environ={})
    except ConfigError as e:
        assert e.message.strip()
        return None


def _render(m, settings: config.Settings) -> None:
    try:
        image = render.render_manifest(m, settings)
    except ManifestError as e:
        assert e.problems and all(p.key for p in e.problems), str(e)
        return
    assert image.files and image.context_digest.startswith("sha256:")


# No deadline: the machine is shared with builds; speed is the corpus test's business, not this one's.
FUZZ = hyp_settings(deadline=None)
MANY = hyp_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_any_config_bytes(data):
    _load_config(data)


@FUZZ
@given(st.lists(yaml_tokens, max_size=60).map("".join))
def test_yaml_ish_config(text):
    _load_config(text.encode("utf-8"))


@FUZZ
@given(st.dictionaries(st.text(max_size=12), json_like, max_size=8))
def test_any_json_like_config(data):
    _load_config(yaml.safe_dump(data, allow_unicode=True).encode("utf-8"))


@MANY
@given(st.lists(st.tuples(st.sampled_from(CONFIG_KEY_PATHS), config_value), min_size=1, max_size=3))
def test_a_good_config_with_values_replaced_loads_and_renders_or_is_refused(changes):
    doc = copy.deepcopy(GOOD_CONFIG)
    for path, new in changes:
        _set(doc, path, new)
    settings = _load_config(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8"))
    if settings is None:
        return
    try:  # the config's defaults flow into the manifest (timezone, user, licenses)
        m = manifest.parse(yaml.safe_dump(GOOD).encode(), Path("good.yaml"), settings)
    except ManifestError as e:
        assert e.problems
        return
    _render(m, settings)


@MANY
@given(st.lists(st.tuples(st.sampled_from(KEY_PATHS), value), min_size=1, max_size=3))
def test_a_good_manifest_with_values_replaced_renders_or_is_refused(changes):
    doc = copy.deepcopy(GOOD)
    for path, new in changes:
        _set(doc, path, new)
    settings = _good_settings()
    try:
        m = manifest.parse(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8"), Path("good.yaml"), settings)
    except ManifestError as e:
        assert e.problems
        return
    _render(m, settings)


@cache
def _good_settings() -> config.Settings:
    settings = _load_config(yaml.safe_dump(GOOD_CONFIG).encode())
    assert settings is not None
    return settings


def test_the_good_config_and_manifest_render():
    m = manifest.parse(yaml.safe_dump(GOOD).encode(), Path("good.yaml"), _good_settings())
    image = render.render_manifest(m, _good_settings())
    assert b'org.opencontainers.image.vendor="myorg"' in image.files["Dockerfile"]
