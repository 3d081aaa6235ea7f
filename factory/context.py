"""The run context: what one invocation of `factory` shares between its stages.

Built from the path of factory.yaml and nothing else; every part is made on first use, so that a
command that never needs docker (validate, render) never starts it, and a command that reads
nothing from a registry opens no connection. The stages receive the parts they need: the settings,
the one tool runner, the one docker adapter, and ``registry`` as their ``registry_for``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from factory.adapters.docker import Docker
from factory.adapters.tools import Runner
from factory.oci.registry import Registry, credentials_for
from factory.spec import config


class RunContext:
    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path
        # One client per registry host for this invocation: one connection pool, one token cache.
        self._registries: dict[str, Registry] = {}

    @cached_property
    def settings(self) -> config.Settings:
        return config.load(self.config_path)

    @cached_property
    def runner(self) -> Runner:
        return Runner(extra_path=(self.settings.tools_bin,), only_path=self.settings.tools_path)

    @cached_property
    def docker(self) -> Docker:
        return Docker(self.runner, builder=self.settings.builder)

    def registry(self, host: str) -> Registry:
        """The client for ``host``, made on first use with the settings' retry policy and the
        credentials docker would use for it."""
        if host not in self._registries:
            retry = self.settings.registry_client
            self._registries[host] = Registry(
                host, insecure=self.settings.registry_is_insecure(host),
                auth=credentials_for(host, runner=self.runner), retries=retry.retries,
                backoff=retry.backoff_seconds, timeout=retry.timeout_seconds)
        return self._registries[host]

    def registries(self) -> list[Registry]:
        """Every client made so far (for the request counts `plan --stats` prints)."""
        return list(self._registries.values())

    def registry_requests(self) -> int:
        """Requests sent to all registries so far, retries included."""
        return sum(sum(r.requests_made.values()) for r in self.registries())
