"""The one platform table: parse and normalise OCI platform strings (os/arch[/variant])."""

from __future__ import annotations

from dataclasses import dataclass

# Aliases people write, mapped to the OCI names (GOARCH spelling).
_ARCH_ALIASES = {
    "x86_64": "amd64", "x86-64": "amd64", "amd64": "amd64",
    "aarch64": "arm64", "arm64": "arm64", "arm64/v8": "arm64",
    "armhf": "arm/v7", "armv7": "arm/v7", "armv7l": "arm/v7", "arm": "arm/v7", "arm/v7": "arm/v7",
    "arm/v6": "arm/v6", "armel": "arm/v6",
    "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "386": "386", "i386": "386",
}
# QEMU user-mode binary names, for checking emulation.
QEMU_NAMES = {"arm64": "aarch64", "arm/v7": "arm", "arm/v6": "arm", "ppc64le": "ppc64le",
              "s390x": "s390x", "riscv64": "riscv64", "amd64": "x86_64", "386": "i386"}
# Debian architecture names, for fetching fixture packages.
DEBIAN_ARCH = {"amd64": "amd64", "arm64": "arm64", "arm/v7": "armhf", "arm/v6": "armel",
               "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64", "386": "i386"}


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
    def qemu_name(self) -> str:
        return QEMU_NAMES[self.key]

    @property
    def debian_arch(self) -> str:
        return DEBIAN_ARCH[self.key]


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
    arch_key = _ARCH_ALIASES.get(rest)
    if arch_key is None:
        known = ", ".join(sorted({f"linux/{v}" for v in _ARCH_ALIASES.values()}))
        raise ValueError(f"{text!r}: unknown architecture; known: {known}")
    arch, _, variant = arch_key.partition("/")
    return Platform(os_, arch, variant)


def host() -> Platform:
    """The machine's own platform (what runs without emulation)."""
    import platform as _platform

    return parse(f"linux/{_platform.machine()}")


def parse_all(texts) -> tuple[Platform, ...]:
    """Parse, normalise and de-duplicate, keeping the order given."""
    seen: dict[Platform, None] = {}
    for t in texts:
        seen.setdefault(parse(t), None)
    return tuple(seen)
