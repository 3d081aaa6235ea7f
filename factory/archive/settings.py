"""Where the archives are and how much the factory reads from them: mirrors, keyrings and bounds.

factory.yaml keys (all optional; each default is the distro's public mirror and keyring)::

    archives:
      debian:
        mirror: http://deb.debian.org/debian
        security_mirror: http://security.debian.org/debian-security
        keyring: /usr/share/keyrings/debian-archive-keyring.gpg
        components: [main]
      ubuntu:
        mirror: http://archive.ubuntu.com/ubuntu
        security_mirror: http://security.ubuntu.com/ubuntu
        ports_mirror: http://ports.ubuntu.com/ubuntu-ports   # archive and security for arm64 & co.
        keyring: /usr/share/keyrings/ubuntu-archive-keyring.gpg
        components: [main, universe]
      alpine:
        mirror: https://dl-cdn.alpinelinux.org/alpine
        keys_dir: /etc/apk/keys
        repositories: [main, community]
      timeout: 30              # seconds per request
      max_download: 67108864   # bytes per file, on the wire
      max_unpacked: 536870912  # bytes per file, decompressed

An air-gapped org points ``mirror``/``security_mirror`` at its own mirror and ``keyring``/``keys_dir``
at the keys that sign it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from factory.core.errors import ConfigError

# The architectures Ubuntu publishes on archive.ubuntu.com/security.ubuntu.com; the rest are on ports.
UBUNTU_PRIMARY_ARCHES = frozenset({"amd64", "i386"})


@dataclass(frozen=True)
class AptArchive:
    """One apt distro's mirrors: suites ``<codename>`` and ``-updates`` from ``mirror``, ``-security`` from
    ``security_mirror``; ``ports_mirror`` (Ubuntu) serves both for architectures not on the primary."""

    mirror: str
    security_mirror: str
    keyring: Path
    components: tuple[str, ...] = ("main",)
    ports_mirror: str | None = None

    def mirrors_for(self, arch: str) -> tuple[str, str]:
        """(archive mirror, security mirror) for ``arch`` (a Debian architecture name)."""
        if self.ports_mirror and arch not in UBUNTU_PRIMARY_ARCHES:
            return self.ports_mirror, self.ports_mirror
        return self.mirror, self.security_mirror


@dataclass(frozen=True)
class AlpineArchive:
    mirror: str
    keys_dir: Path
    repositories: tuple[str, ...] = ("main", "community")


@dataclass(frozen=True)
class Limits:
    """Bounds on every download: seconds per request, bytes on the wire and bytes decompressed per file."""

    timeout: float = 30.0
    max_download: int = 64 * 1024 * 1024
    max_unpacked: int = 512 * 1024 * 1024


def _debian() -> AptArchive:
    return AptArchive("http://deb.debian.org/debian", "http://security.debian.org/debian-security",
                      Path("/usr/share/keyrings/debian-archive-keyring.gpg"))


def _ubuntu() -> AptArchive:
    return AptArchive("http://archive.ubuntu.com/ubuntu", "http://security.ubuntu.com/ubuntu",
                      Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg"), ("main", "universe"),
                      "http://ports.ubuntu.com/ubuntu-ports")


def _alpine() -> AlpineArchive:
    return AlpineArchive("https://dl-cdn.alpinelinux.org/alpine", Path("/etc/apk/keys"))


@dataclass(frozen=True)
class ArchiveSettings:
    debian: AptArchive = field(default_factory=_debian)
    ubuntu: AptArchive = field(default_factory=_ubuntu)
    alpine: AlpineArchive = field(default_factory=_alpine)
    limits: Limits = field(default_factory=Limits)

    def apt(self, distro: str) -> AptArchive:
        if distro == "debian":
            return self.debian
        if distro == "ubuntu":
            return self.ubuntu
        raise ValueError(f"{distro!r} is not an apt distro")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, *, where: str = "archives") -> ArchiveSettings:
        """Read factory.yaml's ``archives:`` mapping (keys in the module docstring) over the defaults.
        The structure is the schema's to check; this checks what it needs and names the key otherwise."""
        data = dict(data or {})
        base = cls()
        _no_unknown(data, {"debian", "ubuntu", "alpine", "timeout", "max_download", "max_unpacked"}, where)
        limits = Limits(
            timeout=float(_positive(data.get("timeout", base.limits.timeout), f"{where}.timeout")),
            max_download=int(_positive(data.get("max_download", base.limits.max_download), f"{where}.max_download")),
            max_unpacked=int(_positive(data.get("max_unpacked", base.limits.max_unpacked), f"{where}.max_unpacked")),
        )
        return cls(
            debian=_apt_from(data.get("debian"), base.debian, f"{where}.debian"),
            ubuntu=_apt_from(data.get("ubuntu"), base.ubuntu, f"{where}.ubuntu"),
            alpine=_alpine_from(data.get("alpine"), base.alpine, f"{where}.alpine"),
            limits=limits,
        )


def _no_unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}", hint=f"known keys: {', '.join(sorted(known))}")


def _positive(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{key}: expected a positive number, got {value!r}")
    return value


def _section(data: object, where: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    return dict(data)


def _url(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(f"{key}: expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _names(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key}: expected a non-empty list of names, got {value!r}")
    return tuple(value)


def _path(value: object, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a path, got {value!r}")
    return Path(value)


_CONVERT: dict[str, Callable[[object, str], Any]] = {
    "mirror": _url, "security_mirror": _url, "ports_mirror": _url, "keyring": _path,
    "keys_dir": _path, "components": _names, "repositories": _names,
}


def _apt_from(data: object, base: AptArchive, where: str) -> AptArchive:
    section = _section(data, where)
    _no_unknown(section, {f.name for f in fields(AptArchive)}, where)
    return replace(base, **{k: _CONVERT[k](v, f"{where}.{k}") for k, v in section.items()})


def _alpine_from(data: object, base: AlpineArchive, where: str) -> AlpineArchive:
    section = _section(data, where)
    _no_unknown(section, {f.name for f in fields(AlpineArchive)}, where)
    return replace(base, **{k: _CONVERT[k](v, f"{where}.{k}") for k, v in section.items()})
