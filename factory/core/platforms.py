"""The one platform table: parse and normalise OCI platform strings (os/arch[/variant])."""

from __future__ import annotations

import platform as _platform
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    """One row of the platform table: an OCI architecture and its names elsewhere."""

    key: str  # OCI arch[/variant], GOARCH spelling: "arm64", "arm/v7"
    aliases: tuple[str, ...]  # what people also write (uname -m, Debian, Alpine ...)
    qemu: str  # QEMU user-mode binary name (qemu-<name>), for checking emulation
    debian: str  # Debian architecture, for fetching fixture packages
    alpine: str  # Alpine architecture (apk's arch), as in dl-cdn.alpinelinux.org paths


# The one platform table (as bashbrew keeps one): every name below is derived from it.
ARCHES = (
    Arch("amd64", ("x86_64", "x86-64"), qemu="x86_64", debian="amd64", alpine="x86_64"),
    Arch("arm64", ("aarch64", "arm64/v8"), qemu="aarch64", debian="arm64", alpine="aarch64"),
    Arch("arm/v7", ("armhf", "armv7", "armv7l", "arm"), qemu="arm", debian="armhf", alpine="armv7"),
    Arch("arm/v6", ("armel",), qemu="arm", debian="armel", alpine="armhf"),
    Arch("ppc64le", (), qemu="ppc64le", debian="ppc64el", alpine="ppc64le"),
    Arch("s390x", (), qemu="s390x", debian="s390x", alpine="s390x"),
    Arch("riscv64", (), qemu="riscv64", debian="riscv64", alpine="riscv64"),
    Arch("386", ("i386",), qemu="i386", debian="i386", alpine="x86"),
)
_BY_KEY = {a.key: a for a in ARCHES}
_BY_NAME = {name: a for a in ARCHES for name in (a.key, *a.aliases)}


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    arch: str  # OCI architecture, e.g. "arm64"
    variant: str = ""

    def __str__(self) -> str:
        return f"{self.os}/{self.arch}" + (f"/{self.variant}" if self.variant else "")

    @property
    def key(self) -> str:
        """The arch[/variant] part, as used in TARGETARCH-style file names."""
        return self.arch + (f"/{self.variant}" if self.variant else "")

    @property
    def slug(self) -> str:
        """Safe in file names and tags: linux-arm64, linux-arm-v7."""
        return str(self).replace("/", "-")

    @property
    def arch_row(self) -> Arch:
        return _BY_KEY[self.key]

    @property
    def qemu_name(self) -> str:
        return self.arch_row.qemu

    @property
    def debian_arch(self) -> str:
        return self.arch_row.debian

    @property
    def alpine_arch(self) -> str:
        return self.arch_row.alpine


def parse(text: str) -> Platform:
    """Parse ``linux/amd64``, ``linux/arm64/v8``, ``linux/aarch64`` ... into the normal form.

    arm64's only variant, v8, is dropped (it is the default) so that equal platforms compare equal.
    """
    parts = text.strip().lower().split("/")
    if len(parts) < 2 or len(parts) > 3 or not all(parts):
        raise ValueError(f"{text!r} is not a platform: expected os/arch[/variant], e.g. linux/arm64")
    os_, rest = parts[0], "/".join(parts[1:])
    if os_ != "linux":
        raise ValueError(f"{text!r}: only linux platforms are supported")
    row = _BY_NAME.get(rest)
    if row is None:
        known = ", ".join(sorted(f"linux/{a.key}" for a in ARCHES))
        raise ValueError(f"{text!r}: unknown architecture; known: {known}")
    arch, _, variant = row.key.partition("/")
    return Platform(os_, arch, variant)


def host() -> Platform:
    """The machine's own platform (what runs without emulation)."""
    return parse(f"linux/{_platform.machine()}")


def parse_all(texts: Iterable[str]) -> tuple[Platform, ...]:
    """Parse, normalise and de-duplicate, keeping the order given."""
    seen: dict[Platform, None] = {}
    for t in texts:
        seen.setdefault(parse(t), None)
    return tuple(seen)
