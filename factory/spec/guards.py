"""Manifest values validate refuses because render would, or because they quietly undo a guarantee.

The renderer refuses some values only when it meets them (a reserved label, ``env.TZ``, packages on an
image without a package manager); these checks run in ``factory validate`` too, from the same lists,
so that a pull request is refused with the file, line and key before anything is rendered. Others no
schema pattern can say: environment variables that turn TLS verification off or make every program
load a library (the list is documented in docs/reliability.md), an apt modifier at the end of a
package name, a waiver without a real reason, and a child whose user clashes with its parent's.

Each check takes the document as read (it may have problems of structure: values are type-checked
here again) and gives ``(key path, message)`` pairs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from factory.core.labels import RESERVED_LABEL_PREFIXES
from factory.core.model import NO_SHELL_DISTROS, User

# Variables that change whom an image trusts or what every process loads. No reason makes these safe in
# a base image every app inherits, so they are refused, not warned about (docs/reliability.md).
REFUSED_ENV: dict[str, str] = {
    **dict.fromkeys(("NODE_TLS_REJECT_UNAUTHORIZED", "PYTHONHTTPSVERIFY", "GIT_SSL_NO_VERIFY",
                     "CURL_INSECURE", "PIP_TRUSTED_HOST", "NPM_CONFIG_STRICT_SSL"),
                    "turns TLS certificate verification off for every app built on the image"),
    **dict.fromkeys(("LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH"),
                    "makes every program of the image load libraries the image did not link; install "
                    "the library in the standard paths instead"),
}
# Trust store variables may only point at the image's own trust store, which the factory builds
# (public CAs and the org's); /dev/null or a file of the app's would replace it. Another CA belongs in
# certificates.additional, where it is checked (docs/certificates.md).
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # public CAs and the org's: what OpenSSL, curl, Go read
ORG_BUNDLE = "/etc/ssl/org-ca-certificates.crt"  # the org CAs alone: for NODE_EXTRA_CA_CERTS and the like
TRUST_STORE_FILES = frozenset({SYSTEM_BUNDLE, ORG_BUNDLE, "/etc/ssl/cert.pem", "/etc/ssl/certs"})
TRUST_STORE_ENV = frozenset({"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                             "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "PIP_CERT",
                             "AWS_CA_BUNDLE"})


def refused_env(name: str, value: object) -> str | None:
    """Why ``name=value`` may not be set in an image, or None."""
    if name in REFUSED_ENV:
        return f"{name} {REFUSED_ENV[name]}"
    if name in TRUST_STORE_ENV and value not in TRUST_STORE_FILES:
        return (f"{name}={value!r} would replace the image's trust store; it may only name "
                f"{', '.join(sorted(TRUST_STORE_FILES))} (another CA goes under certificates.additional)")
    return None


# Set by the factory from a manifest key, or by the renderer (render refuses them too).
RESERVED_ENV: dict[str, str] = {"TZ": "the timezone key sets TZ: remove env.TZ and set timezone"}
NO_SHELL_DEBUG_RESERVED_ENV = {"PATH": "the debug variant of an image without a shell sets PATH to find busybox"}
DEBUG_SHELL = "busybox"  # the one package a no-shell debug variant may name: it becomes the shell

# apt-get reads a trailing '-' as "remove this package" and a trailing '+' as "install": the name
# `ca-certificates-` would remove the CA bundle. `++` ends real package names (g++), so it is allowed.
_APT_MODIFIER = re.compile(r"^[^=]*(-|(?<!\+)\+)(=|$)")
MIN_REASON = 10  # characters of a waiver reason, not counting spaces


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def value_problems(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every refused value of one manifest document."""
    distro = raw.get("distro")
    debug = _mapping(_mapping(raw.get("variants")).get("debug"))
    found = [*_env_problems(raw.get("env"), "env", RESERVED_ENV)]
    debug_reserved = NO_SHELL_DEBUG_RESERVED_ENV if isinstance(distro, str) and distro in NO_SHELL_DISTROS else {}
    found += _env_problems(debug.get("env"), "variants.debug.env", {**RESERVED_ENV, **debug_reserved})
    found += _label_problems(raw.get("labels"))
    found += _package_problems(raw.get("packages"), "packages", distro, allowed=())
    found += _package_problems(debug.get("packages"), "variants.debug.packages", distro, allowed=(DEBUG_SHELL,))
    found += _reason_problems(raw.get("waivers"))
    return found


def _env_problems(env: Any, key: str, reserved: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    for name, value in _mapping(env).items():
        refused = refused_env(name, value)
        if refused:
            yield f"{key}.{name}", refused
        elif name in reserved:
            yield f"{key}.{name}", f"{name} is set by the factory: {reserved[name]}"


def _label_problems(labels: Any) -> Iterator[tuple[str, str]]:
    for name in _mapping(labels):
        if isinstance(name, str) and name.startswith(RESERVED_LABEL_PREFIXES):
            yield f"labels.{name}", (f"{name} is set by the factory; labels may not use "
                                     f"{' or '.join(RESERVED_LABEL_PREFIXES)}")


def _package_problems(packages: Any, key: str, distro: Any, allowed: Sequence[str]) -> Iterator[tuple[str, str]]:
    names = [p for p in _list(packages) if isinstance(p, str)]
    for i, name in enumerate(_list(packages)):
        if isinstance(name, str) and _APT_MODIFIER.search(name):
            yield f"{key}.{i}", (f"{name!r} ends in '-' or '+', which apt reads as remove or install that "
                                 "package, not as part of the name; write the package's own name")
    extra = [n for n in names if n not in allowed]
    if isinstance(distro, str) and distro in NO_SHELL_DISTROS and extra:
        yield key, (f"{distro} images have no package manager: {', '.join(extra)} cannot be installed "
                    "(use an apt or apk based upstream, or build the files in)")


def _reason_problems(waivers: Any) -> Iterator[tuple[str, str]]:
    for i, waiver in enumerate(_list(waivers)):
        reason = _mapping(waiver).get("reason")
        if isinstance(reason, str) and len("".join(reason.split())) < MIN_REASON:
            yield f"waivers.{i}.reason", (f"a waiver needs a real reason: at least {MIN_REASON} characters besides "
                                          "spaces, saying why the rule does not apply and who checked")


def user_clash(child: User, parent: User, parent_name: str) -> str | None:
    """Why ``child``'s user cannot be added on top of ``parent``'s image, or None. The parent's image
    already has its user: the same entry again is fine; a different one sharing its name, uid or gid
    fails the build ("gid 1001 is already taken") after the parent is published."""
    if child == parent:
        return None
    shared = [what for what, same in (("name", child.name == parent.name), ("uid", child.uid == parent.uid),
                                      ("gid", child.gid == parent.gid)) if same]
    if not shared:
        return None
    return (f"user {child.name}:{child.uid}:{child.gid} shares the {' and '.join(shared)} of parent "
            f"{parent_name!r}'s user {parent.name}:{parent.uid}:{parent.gid}, which its image already has, so "
            "the build would fail; remove user to inherit the parent's, or repeat it exactly")
