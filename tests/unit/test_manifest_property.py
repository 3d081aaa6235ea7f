"""Property tests: whatever the input, loading gives a Manifest or a ManifestError, never another
exception; and whatever loads holds only single-line text where a Dockerfile line could carry it."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from factory.core.errors import ManifestError
from factory.core.model import Manifest
from factory.spec import config, manifest

GOOD = {
    "apiVersion": "factory/v1", "name": "good", "version": "1.2", "description": "A good image",
    "upstream": {"image": "docker.io/library/debian", "tag": "12-slim", "digest": "sha256:" + "0f" * 32},
    "distro": "debian", "release": "12", "platforms": ["linux/amd64"], "timezone": "UTC",
    "user": {"name": "app", "uid": 1001, "gid": 1001}, "ca_certificates": True,
    "env": {"A": "1"}, "packages": ["curl"], "labels": {"org.example.x": "y"}, "eol": "2028-06-30",
    "variants": {"debug": {"packages": ["jq"]}}, "tests": [{"name": "t", "run": ["true"]}],
    "waivers": [{"rule": "POL-001", "reason": "a good reason", "expires": "2027-01-01"}],
}
KEY_PATHS = ["name", "version", "description", "upstream", "upstream.image", "upstream.tag",
             "upstream.digest", "distro", "release", "runtime", "platforms", "platforms.0", "timezone",
             "user", "user.name", "user.uid", "ca_certificates", "env", "env.A", "packages", "packages.0",
             "labels", "labels.org.example.x", "eol", "variants", "variants.debug", "tests", "tests.0.run",
             "tests.0.expect_exit", "waivers", "waivers.0.expires", "waivers.0.reason", "parent", "extra"]

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
# Values that are often valid somewhere, so that replaced manifests also load and build the model.
plausible = st.sampled_from([
    "x", "1.2", "12", "UTC", "Europe/Paris", "linux/arm64", "linux/arm/v7", "2029-01-01", "2028-02-30",
    0, 1, 255, 1001, True, False, [], {}, ["curl"], ["jq=1.6-2"], {"B": "2"}, {"packages": ["jq"]},
    "sha256:" + "ab" * 32, "debian", "alpine", "scratch", "python", "none", "a\tb", "multi\nline",
    "docker.io/library/alpine", "ghcr.io/x/y", "POL-002", "tab\there", "ünïcödé", "$(id)", "a\\b",
]) | st.text(st.characters(codec="utf-8"), max_size=12)
value = plausible | json_like
yaml_tokens = st.sampled_from([
    "a", "name", "apiVersion", "factory/v1", ":", ": ", " ", "\n", "\n  ", "- ", "[", "]", "{", "}", ",",
    "&x ", "*x", "!!str ", "!!binary ", "'", '"', "#", "2028-06-30", "1.2", "<<: ", "? ", "|\n", ">",
    "\t", "\\", "\\n", "\x00", "\ufeff", "---\n", "...", "%YAML 1.2\n", "~", "yes", "0o17", "1e9",
])


@cache
def _settings() -> config.Settings:
    return config.load(None, environ={})  # ./factory.yaml if there is one, else built-in defaults


def _load(data: bytes, stem: str = "good") -> Manifest | None:
    try:
        m = manifest.parse(data, Path(f"{stem}.yaml"), _settings())
    except ManifestError as e:
        assert e.problems and all(p.message for p in e.problems)
        return None
    assert isinstance(m, Manifest)
    return m


@given(st.binary(max_size=300))
def test_any_bytes(data):
    _load(data)


@given(st.text(max_size=300))
def test_any_text(text):
    _load(text.encode("utf-8", "replace"))  # "replace": hypothesis text may hold lone surrogates


@given(st.lists(yaml_tokens, max_size=60).map("".join))
def test_yaml_ish_text(text):
    _load(text.encode("utf-8"))


@given(st.dictionaries(st.text(max_size=12), json_like, max_size=8))
def test_any_json_like_mapping(data):
    _load(yaml.safe_dump(data, allow_unicode=True).encode("utf-8"))


def _set(doc: dict, path: str, value) -> None:
    """Replace the value at a key path; a path an earlier change made unreachable is skipped."""
    keys: list = ["labels", path[len("labels."):]] if path.startswith("labels.") else \
        [int(k) if k.isdigit() else k for k in path.split(".")]
    node = doc
    try:
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    except (KeyError, IndexError, TypeError):
        pass


@hyp_settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KEY_PATHS), value), min_size=1, max_size=3))
def test_a_good_manifest_with_values_replaced(changes):
    doc = copy.deepcopy(GOOD)
    for path, value in changes:
        _set(doc, path, value)
    m = _load(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8"))
    if m is not None:
        single_line = [m.name, m.version, m.description, m.timezone, m.user.name, m.licenses,
                       *(m.upstream.image, m.upstream.tag or "", m.upstream.digest or ""),
                       *(k + v for k, v in m.env + m.labels), *m.packages,
                       *(t.name for t in m.tests), *(w.reason for w in m.waivers)]
        assert all(isinstance(s, str) and "\n" not in s and "\r" not in s for s in single_line)
        assert isinstance(m.user.uid, int) and m.user.uid >= 0


def test_the_unchanged_good_manifest_loads():
    assert _load(yaml.safe_dump(GOOD).encode()).name == "good"
