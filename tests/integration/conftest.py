"""Integration tier: the real dockerd, buildx, registry on 127.0.0.1:5000 and cosign that
`make services` started. Nothing here is mocked."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from factory.adapters.docker import Docker
from factory.adapters.tools import Runner
from factory.spec import config

REPO_ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> config.Settings:
    """Built-in defaults (local registry, dev key under the state dir), independent of the repo's factory.yaml."""
    empty = tmp_path_factory.mktemp("cfg") / "factory.yaml"
    empty.write_text("")
    return config.load(empty)


@pytest.fixture(scope="session")
def runner(settings) -> Runner:
    return Runner(extra_path=(settings.tools_bin,))


@pytest.fixture(scope="session")
def docker(settings, runner) -> Docker:
    d = Docker(runner, builder=settings.builder)
    d.check()
    return d


@pytest.fixture(scope="session")
def seeded(settings, runner, docker):
    """The fast upstream fixtures (busybox, noshell) in the local registry, by name."""
    from factory.ops.seed import Seeder

    return {s.name: s for s in Seeder(settings, runner, docker).seed(["busybox", "noshell"], settings.platforms)}


@pytest.fixture(scope="session")
def seeded_debian(settings, runner, docker):
    """The Debian bookworm minbase upstream (slow the first time: mmdebstrap, arm64 under QEMU; cached after)."""
    from factory.ops.seed import Seeder

    return Seeder(settings, runner, docker).seed(["debian"], settings.platforms)[0]


@pytest.fixture
def unique_repo() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"
