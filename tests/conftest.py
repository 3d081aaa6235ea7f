"""Test tiers. Unit tests (everything not marked ``integration``) may not start processes or reach
docker: an autouse guard makes subprocess calls raise, so pure logic stays pure and fast.
Integration tests (``@pytest.mark.integration``, under tests/integration/) use the real services
that ``make services`` starts."""

from __future__ import annotations

import subprocess

import pytest
import structlog

from factory.spec import config


class SubprocessInUnitTest(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _no_subprocess_in_unit_tests(request, monkeypatch):
    if request.node.get_closest_marker("integration"):
        return

    class RefusedPopen(subprocess.Popen):
        # Refuse in __new__, so that no half-made Popen object is left for __del__ to trip on.
        def __new__(cls, *args, **kwargs):
            raise SubprocessInUnitTest(
                f"unit test tried to run a process: {args[0] if args else kwargs}; "
                "mark it @pytest.mark.integration or keep the logic pure"
            )

    monkeypatch.setattr(subprocess, "Popen", RefusedPopen)


@pytest.fixture(autouse=True)
def _no_factory_environment_in_unit_tests(request, monkeypatch):
    """The Makefile exports FACTORY_STATE (and a developer may set others): a unit test reads only
    the factory.yaml it wrote, so no override from the calling shell replaces a value it checks."""
    if request.node.get_closest_marker("integration"):
        return
    for var in config.ENV_OVERRIDES:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def _fresh_logging():
    """A CLI test configures logging onto pytest's captured stream, which is closed after that test:
    start every test from structlog's defaults so no later test logs into a closed file."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
