from pathlib import Path

import pytest

from factory.core.errors import ConfigError
from factory.core.platforms import Platform
from factory.spec import config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "factory.yaml"
    p.write_text(text)
    return p


def test_defaults_come_from_the_schema(tmp_path):
    s = config.load(write(tmp_path, ""), environ={})
    assert s.registry == "127.0.0.1:5000"
    assert s.repository == "myorg/base"
    assert s.platforms == (Platform("linux", "amd64"), Platform("linux", "arm64"))
    assert s.policy.fail_on_severities == ("CRITICAL",)
    assert s.defaults["user"] == {"name": "app", "uid": 1001, "gid": 1001}
    assert s.manifests_dir == tmp_path.resolve() / "manifests"
    assert s.target == "127.0.0.1:5000/myorg/base"


def test_file_values_and_nested_merge(tmp_path):
    s = config.load(write(tmp_path, "registry: reg.example:443\npolicy:\n  eol_warning_days: 30\n"), environ={})
    assert s.registry == "reg.example:443"
    assert s.policy.eol_warning_days == 30
    assert s.policy.max_added_layers == 3  # sibling default kept


def test_environment_overrides_the_file(tmp_path):
    env = {"FACTORY_REGISTRY": "ghcr.io", "FACTORY_PLATFORMS": "linux/arm64, linux/amd64",
           "COSIGN_KEY": "awskms:///alias/x", "FACTORY_SCANNER_DB_UNAVAILABLE": "warn"}
    s = config.load(write(tmp_path, "registry: reg.example\n"), environ=env)
    assert s.registry == "ghcr.io"
    assert [str(p) for p in s.platforms] == ["linux/arm64", "linux/amd64"]
    assert s.signing_key == "awskms:///alias/x"
    assert s.policy.scanner_db_unavailable == "warn"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("registyr: x\n", "factory.yaml:1: registyr: unknown key 'registyr'; did you mean 'registry'?"),
        ("policy:\n  eol_warning_days: -1\n", "policy.eol_warning_days"),
        ("platforms: [linux/mips]\n", "platforms.0: 'linux/mips'"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("registry: [\n", "not valid YAML"),
        ("signing:\n  keyless: yes please\n", "signing.keyless"),
    ],
)
def test_invalid_config_names_file_and_key(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        config.load(path, environ={})
    assert str(path) in str(e.value)
    assert fragment in str(e.value)


def test_invalid_env_override_is_reported(tmp_path):
    with pytest.raises(ConfigError, match=r"FACTORY_SCANNER_DB_UNAVAILABLE|scanner_db_unavailable"):
        config.load(write(tmp_path, ""), environ={"FACTORY_SCANNER_DB_UNAVAILABLE": "maybe"})


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.yaml", environ={})
