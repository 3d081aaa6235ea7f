"""Where a run publishes: the registry client, the repository in it, and the repository's full name."""

from __future__ import annotations

from dataclasses import dataclass

from factory.oci.registry import Registry
from factory.spec.config import Settings


@dataclass(frozen=True)
class Destination:
    registry: Registry
    repository: str  # myorg/base
    name: str  # registry/repository, as references name it

    @classmethod
    def of(cls, settings: Settings, registry: Registry) -> Destination:
        return cls(registry, settings.repository, settings.target)

    def by_digest(self, digest: str) -> str:
        """The reference everything is signed, attested and verified by: never a tag, which can move."""
        return f"{self.name}@{digest}"
