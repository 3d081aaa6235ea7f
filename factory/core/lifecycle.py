"""Known end-of-life dates of the distro releases org images are built on.

One row per (distro, release). The date each row means is the last day on which the *public*
image and archive still receive security fixes without a paid subscription, because that is what
a rebuilt base image can pick up:

- Debian: the end of Debian LTS (https://wiki.debian.org/LTS). LTS fixes go to the ordinary
  public security archive and the official images keep being rebuilt, so LTS counts. Regular
  security-team support ends earlier (Debian 12: 2026-06-10); the guide's "Bookworm supported
  until 2028" is the LTS date used here.
- Ubuntu: the end of standard security maintenance (https://ubuntu.com/about/release-cycle,
  https://wiki.ubuntu.com/Releases). Expanded Security Maintenance (ESM, e.g. 22.04 until
  2032-04-09) needs an Ubuntu Pro token and never reaches the public ``ubuntu`` image, so it is
  not counted, although the guide quotes the ESM date. Where Canonical publishes only a month,
  the first day of that month is used (the conservative reading).
- Alpine: "End of support" on https://alpinelinux.org/releases/ (about two years per branch).
- distroless: Google builds these from the Debian release in their name (static-debian12) and
  publishes no dates of their own; a row carries the date of that Debian release. Google may
  stop rebuilding a flavour earlier: a manifest's ``eol`` can always tighten the date.

A manifest's ``eol`` may tighten a row's date, never extend it (see ``factory.policy``).
Dates were checked against the pages above and https://endoflife.date in November 2026.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Lifecycle:
    distro: str
    release: str  # as written in a manifest's `release` key: "12", "22.04", "3.20"
    codename: str
    eol: date
    basis: str  # which end date this is, in words
    source: str  # where the date is published

    @property
    def label(self) -> str:
        """"debian 12 bookworm", for messages."""
        return f"{self.distro} {self.release}" + (f" {self.codename}" if self.codename else "")


_DEBIAN_SOURCE = "https://wiki.debian.org/LTS"
_UBUNTU_SOURCE = "https://ubuntu.com/about/release-cycle"
_ALPINE_SOURCE = "https://alpinelinux.org/releases/"

_DEBIAN = (
    Lifecycle("debian", "11", "bullseye", date(2026, 8, 31), "end of Debian LTS", _DEBIAN_SOURCE),
    Lifecycle("debian", "12", "bookworm", date(2028, 6, 30), "end of Debian LTS", _DEBIAN_SOURCE),
    Lifecycle("debian", "13", "trixie", date(2030, 6, 30), "end of Debian LTS", _DEBIAN_SOURCE),
)

LIFECYCLE: tuple[Lifecycle, ...] = (
    *_DEBIAN,
    Lifecycle("ubuntu", "20.04", "focal", date(2025, 5, 31), "end of standard security maintenance", _UBUNTU_SOURCE),
    Lifecycle("ubuntu", "22.04", "jammy", date(2027, 4, 1), "end of standard security maintenance", _UBUNTU_SOURCE),
    Lifecycle("ubuntu", "24.04", "noble", date(2029, 5, 31), "end of standard security maintenance", _UBUNTU_SOURCE),
    Lifecycle("alpine", "3.17", "", date(2024, 11, 22), "end of support", _ALPINE_SOURCE),
    Lifecycle("alpine", "3.18", "", date(2025, 5, 9), "end of support", _ALPINE_SOURCE),
    Lifecycle("alpine", "3.19", "", date(2025, 11, 1), "end of support", _ALPINE_SOURCE),
    Lifecycle("alpine", "3.20", "", date(2026, 4, 1), "end of support", _ALPINE_SOURCE),
    Lifecycle("alpine", "3.21", "", date(2026, 11, 1), "end of support", _ALPINE_SOURCE),
    Lifecycle("alpine", "3.22", "", date(2027, 5, 1), "end of support", _ALPINE_SOURCE),
    Lifecycle("alpine", "3.23", "", date(2027, 11, 1), "end of support", _ALPINE_SOURCE),
    # distroless: the Debian release it is built on, with that release's date.
    *(
        Lifecycle("distroless", d.release, d.codename, d.eol, f"built on Debian {d.release}: {d.basis}", d.source)
        for d in _DEBIAN
    ),
)


def normalise_release(distro: str, release: str) -> str:
    """Debian (and distroless) releases are named by their major number: "12.5" is release 12."""
    if distro in ("debian", "distroless"):
        return release.split(".", 1)[0]
    return release


def lookup(distro: str, release: str | None) -> Lifecycle | None:
    """The table row for a distro release, or None when the table does not know it."""
    if release is None:
        return None
    wanted = (distro, normalise_release(distro, release))
    return next((row for row in LIFECYCLE if (row.distro, row.release) == wanted), None)


def newest(distro: str) -> Lifecycle | None:
    """The release of ``distro`` supported longest: what to suggest moving to."""
    rows = [row for row in LIFECYCLE if row.distro == distro]
    return max(rows, key=lambda row: row.eol, default=None)
