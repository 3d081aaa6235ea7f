"""The renderer: one manifest in, its build contexts out, byte for byte the same for the same input.

``images/<name>/`` is committed, so that reviewers see what a manifest change does to the build:

  Dockerfile, factory-context.json [, prepare-rootfs.sh]      the image's build context
  [certs/<NN>-<stem>.crt ...]                                 the org CAs it trusts, one per file
  debug/Dockerfile, debug/factory-context.json [, ...]        the debug variant's, when it has one

What changes from build to build never enters a file, or the file would change on every build:
the builder passes it as build args. Every image takes ``FACTORY_VERSION`` (x.y.z),
``FACTORY_REVISION`` (git sha), ``FACTORY_CREATED`` (RFC 3339), ``FACTORY_SOURCE`` (the source label:
factory.yaml's ``source_url``, or the git remote) and ``FACTORY_FINGERPRINT``; an image built on another
org image (``parent``) and every debug variant also take ``BASE_REF`` (``<registry>/<repository>@sha256:...``,
the image built FROM), ``BASE_NAME`` (the tag it was resolved from, its base.name label) and
``BASE_DIGEST`` (its base.digest label). ``factory-context.json`` lists them, with the other inputs of the build.

Labels: ``org.opencontainers.image.*`` (title, description, version, revision, source, created,
vendor, licenses, base.name, base.digest), the manifest's own labels, and two of the factory's:

  ``io.github.base-image-factory.fingerprint`` (FINGERPRINT_LABEL): the input fingerprint, a stable
      hash of everything that determines the build. It cannot be written here (the file would have
      to contain its own hash), so it arrives as the FACTORY_FINGERPRINT build arg. The rendered
      context's part of it is ``RenderedImage.context_digest``.
  ``io.github.base-image-factory.variant`` (VARIANT_LABEL): ``prod`` or ``debug``; a debug image
      must never be deployed, and an admission policy can refuse it by this label.

How the org hardening (user, timezone, CA bundle, org CAs, packages) gets in depends on the distro,
always as exactly one layer over the base:

  debian, ubuntu   with packages, one RUN: apt-get install --no-install-recommends, the org CAs
                   (read through a bind mount of certs/), update-ca-certificates, groupadd/useradd,
                   the zone files, then apt lists, logs and caches cleaned
  alpine           with packages, one RUN: apk add --no-cache, the org CAs, addgroup/adduser, the
                   zone files
  debian, ubuntu,  without packages (the org hardening only): a throwaway helper stage FROM the
  alpine           upstream itself, on the target platform, runs prepare-rootfs.sh --upstream: it
                   installs ca-certificates/tzdata there and writes under /rootfs only the files the
                   hardening changes (passwd, group, shadow, gshadow, the CA bundle and the org CA
                   files and links, zone files, setuid programs without the bit); the final stage
                   takes them in one ``COPY --from=helper /rootfs/ /``: no package lists, logs,
                   caches or package database changes (docs/certificates.md measures and explains)
  distroless,      no RUN in the final stage: a throwaway helper stage (``helper_image`` in
  scratch          factory.yaml: a pinned Debian/Ubuntu image, which has a shell and apt) runs
                   prepare-rootfs.sh to write exactly the files the image needs under /rootfs: the
                   upstream's own /etc/passwd and /etc/group (copied from it, so that root and
                   distroless's nonroot stay; scratch has none, so it gets root) plus the user, the
                   CA bundle, and the zone files when the timezone is not UTC. The final stage takes
                   them in one ``COPY --from=helper /rootfs/ /``. A shell is needed to append to the
                   upstream's passwd, and the upstream has none; rendering passwd from here instead
                   would drop the upstream's entries, which the renderer cannot know. The helper runs
                   on the build platform (no emulation): these files are the same on every arch.

Org CAs (factory.yaml ``certificates``, a manifest's ``certificates.additional``; factory.certs
checks them): each certificate goes alone into ``certs/<NN>-<stem>.crt`` of the context, then into
/usr/local/share/ca-certificates and the bundle of the image, and, by ``runtime``, into the
language's own store (NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE/SSL_CERT_FILE, Java's cacerts).

Timezone: ``TZ`` is always set. UTC needs no zone file (glibc and musl read TZ=UTC without one), so
tzdata is installed and /etc/localtime, /etc/timezone written only for another zone.

User: an existing group and user with exactly the manifest's name and ids are kept (an org parent
image already made them); a name or id taken by another entry fails the build, as groupadd/useradd
do: silently running as someone else's account is worse than a failed build.

Safety: nothing a manifest says can add an instruction. Values that reach a shell (package names,
the user name, the timezone) must match the manifest schema's patterns again here and are
shell-quoted; values of ENV and LABEL are double-quoted with ``\\``, ``"`` and ``$`` escaped (so a
``$`` in an env value is literal: no variable expansion); helper arguments use the exec (JSON) form.
A value with a newline, NUL or other control character is refused, never emitted.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shlex
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath

from factory.core import lifecycle, log
from factory.core.errors import (
    CertificateError,
    ConfigError,
    ManifestError,
    Problem,
    RenderError,
    RepoFileError,
)
from factory.core.labels import (
    BASE_DIGEST_LABEL,
    BASE_NAME_LABEL,
    CREATED_LABEL,
    DEBUG,
    DESCRIPTION_LABEL,
    FINGERPRINT_LABEL,
    LICENSES_LABEL,
    NOT_LICENSE_EXPRESSIONS,
    PROD,
    RESERVED_LABEL_PREFIXES,
    REVISION_LABEL,
    SOURCE_LABEL,
    TITLE_LABEL,
    VARIANT_LABEL,
    VENDOR_LABEL,
    VERSION_LABEL,
)
from factory.core.model import Manifest, Parent, Upstream, User
from factory.spec import certs, guards, repofs, schemas
from factory.spec.config import Settings

# Bump when the output changes for the same input: it is part of every context, so of the fingerprint.
RENDER_VERSION = 3

DOCKERFILE = "Dockerfile"
CONTEXT_FILE = "factory-context.json"
HELPER_SCRIPT = "prepare-rootfs.sh"
HELPER_SCRIPT_IN_STAGE = "/usr/local/bin/factory-prepare-rootfs"
# Security fixes (policy.security_fixes, docs/security-fixes.md): the script that adds the configured
# mirrors' suites and upgrades the packages the builder names in SECURITY_FIXES, bind-mounted into the RUN.
FIXES_SCRIPT = "apply-fixes.sh"
FIXES_SCRIPT_IN_BUILD = "/tmp/factory-apply-fixes.sh"
FIXES_SOURCES = "/etc/apt/sources.list.d/factory-fixes.list"  # written by the script, removed by the RUN
FIXES_ARG = "SECURITY_FIXES"  # the package names to upgrade, space-separated; empty: none
ORG_LAYER_ARG = "ORG_LAYER"  # hardening-only images: "copy" (the default) or "run" when fixes are pending
# "image" (the default): the base image's own package sources, as a plain build always used them;
# "configured": also the configured mirrors' release, -updates and -security suites (policy not off).
SUITES_ARG = "ARCHIVE_SUITES"
# A digest of the suites and index dates the fixes were computed from. Unused by the RUN, but a build arg
# of its stage, so it is in BuildKit's cache key: a cached org layer is never reused after the archive moved
# on (the same SECURITY_FIXES may then mean newer versions, and packages the layer installs may have fixes).
STATE_ARG = "ARCHIVE_STATE"

# Org CA certificates: certs/<NN>-<stem>.crt in the context (one certificate each), read in the build
# from CERTS_IN_BUILD (a bind mount in the RUN, a COPY in a helper stage), and in the image:
CERTS_DIR = "certs"
CERTS_IN_BUILD = "/tmp/factory-certs"
LOCAL_CA_DIR = "/usr/local/share/ca-certificates"  # update-ca-certificates reads it, now and in child images
SYSTEM_BUNDLE = guards.SYSTEM_BUNDLE  # public CAs and the org's: what OpenSSL, curl, Go read
ORG_BUNDLE = guards.ORG_BUNDLE  # the org CAs alone: for NODE_EXTRA_CA_CERTS and the like
# The password every JDK ships cacerts with; it protects nothing (the store holds public certificates).
JAVA_CACERTS_PASSWORD = "changeit"
_CERT_NAME = re.compile(r"[0-9]{2,}-[a-z0-9][a-z0-9._-]*[.]crt")

PER_BUILD_ARGS = ("FACTORY_VERSION", "FACTORY_REVISION", "FACTORY_CREATED", "FACTORY_SOURCE", "FACTORY_FINGERPRINT")
BASE_ARGS = ("BASE_REF", "BASE_NAME", "BASE_DIGEST")  # when the base is known only at build time

UTC = "UTC"
# PATH of the debug variant of a no-shell image: the usual one, then busybox's applets.
DEBUG_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/busybox"

# No setuid/setgid programs in a base image (su, passwd, mount ...): a non-root container has no
# business changing identity, and the image tests refuse any that remain. Portable to busybox find.
STRIP_SETUID = r"find / -xdev -type f \( -perm -4000 -o -perm -2000 \) -exec chmod a-s {} +"

APT_CLEAN = (
    "apt-get clean",
    "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old",
    # files only: apt and dpkg in child images expect their log folders to exist
    "find /var/log -type f -delete",
)


@dataclass(frozen=True)
class RenderedImage:
    name: str
    files: dict[str, bytes]  # path relative to images/<name>/ -> content, sorted by path
    context_digest: str  # digest_files() of the image's own context (every file outside debug/)
    debug_context_digest: str | None  # of debug/ (paths relative to it), when there is a debug variant

    def context_files(self, variant: str = PROD) -> dict[str, bytes]:
        """One build context: paths relative to images/<name>/ (prod) or images/<name>/debug/."""
        if variant == PROD:
            return {p: c for p, c in self.files.items() if not p.startswith(f"{DEBUG}/")}
        prefix = f"{variant}/"
        return {p[len(prefix):]: c for p, c in self.files.items() if p.startswith(prefix)}


def digest_files(files: Mapping[str, bytes]) -> str:
    """sha256 over the files sorted by path: for each, ``path NUL length NUL content``."""
    h = hashlib.sha256()
    for path in sorted(files):
        content = files[path]
        h.update(f"{path}\0{len(content)}\0".encode())
        h.update(content)
    return f"sha256:{h.hexdigest()}"


# --- checking and quoting values ------------------------------------------------------------------

@cache
def _patterns() -> dict[str, re.Pattern[str]]:
    """The manifest schema's own patterns, checked again where a value meets a Dockerfile or a shell."""
    schema = schemas.load("manifest")
    props, defs = schema["properties"], schema["$defs"]
    upstream = props["upstream"]["properties"]
    found = {
        "name": defs["name"]["pattern"],
        "package": defs["package"]["pattern"],
        "env key": defs["env"]["propertyNames"]["pattern"],
        "label key": props["labels"]["propertyNames"]["pattern"],
        "image": upstream["image"]["pattern"],
        "tag": upstream["tag"]["pattern"],
        "digest": upstream["digest"]["pattern"],
        "user name": props["user"]["properties"]["name"]["pattern"],
        "timezone": props["timezone"]["pattern"],
    }
    return {kind: re.compile(pattern) for kind, pattern in found.items()}


def _checked(value: object, kind: str, key: str) -> str:
    if not isinstance(value, str) or not _patterns()[kind].fullmatch(value):
        raise RenderError(key, f"{value!r} is not a valid {kind} (expected {_patterns()[kind].pattern})")
    return value


def _checked_id(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
        raise RenderError(key, f"{value!r} is not a valid id (expected an integer 0..2147483647)")
    return value


def check_line(value: object, key: str) -> str:
    """A single line of text: no newline, NUL or other control character (tab is fine)."""
    if not isinstance(value, str):
        raise RenderError(key, f"expected text, got {type(value).__name__}")
    for ch in value:
        if ch == "\t":
            continue
        # Cc: control characters (newline, NUL ...); Cs: lone surrogates, not encodable; the Unicode
        # line and paragraph separators would make an editor show two lines where docker sees one;
        # Cf: format characters (U+202E ...) show reviewers other text than docker reads.
        if unicodedata.category(ch) in ("Cc", "Cs", "Cf") or ch in "\u2028\u2029":
            raise RenderError(key, f"contains the character U+{ord(ch):04X}; only a single line of text "
                                   f"is allowed: {value!r}")
    return value


def quote_value(value: str, key: str) -> str:
    """A Dockerfile double-quoted word for ENV and LABEL, read back as exactly ``value``.

    Inside double quotes the Dockerfile lexer treats ``\\`` as an escape only before ``"``, ``$`` and
    ``\\``: escaping exactly those three makes the value literal (``$`` is never expanded).
    """
    check_line(value, key)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _arg_ref(name: str) -> str:
    """A build arg's value in ENV/LABEL: expanded by the Dockerfile at build time."""
    return f'"${{{name}}}"'


def _sh(word: str) -> str:
    """One shell word. Every value reaching a shell was pattern-checked first; quoting is the second guard."""
    return shlex.quote(word)


def _exec_form(argv: Iterable[str]) -> str:
    """The JSON (exec) form of RUN: no shell parses the arguments."""
    return json.dumps(list(argv))


# --- the parts of a Dockerfile --------------------------------------------------------------------

def _run(commands: list[str], mounts: Iterable[str] = ()) -> str:
    options = "".join(f"--mount={m} " for m in mounts)
    return f"RUN {options}" + "; \\\n    ".join(commands)


def _pairs(instruction: str, pairs: list[tuple[str, str]]) -> str:
    """ENV/LABEL with one key=value per line; values are already quoted."""
    indent = " " * (len(instruction) + 1)
    return f"{instruction} " + f" \\\n{indent}".join(f"{k}={v}" for k, v in pairs)


def _user_ref(user: User) -> str:
    return f"{user.uid}:{user.gid}"


# hadolint (at its default settings) passes every rendered Dockerfile; where a rule does not fit, the file
# says why, next to the inline ignore (which must be the line right before the instruction).
_UNPINNED_WHY = ("# Package versions are not pinned: the build takes the archive's version of today, so that a "
                 "rebuild\n# gets the security fixes (a pin would hold them back); the SBOM records each version.")
LINT_WHY = {
    "DL3002": "# hadolint: this stage is thrown away (the next FROM keeps only its files); the image's USER is set "
              "in the final stage.",
    "DL3006": "# hadolint: org-${ORG_LAYER} is a stage of this file (org-copy or org-run), not an image to tag.",
    "DL3008": _UNPINNED_WHY,
    "DL3018": _UNPINNED_WHY,
}


def _lint_ignore(rule: str) -> list[str]:
    """The reason, then hadolint's inline ignore of ``rule`` for the instruction that follows."""
    return [*LINT_WHY[rule].split("\n"), f"# hadolint ignore={rule}"]


@dataclass(frozen=True)
class _Base:
    """What a stage is built FROM, and the base.* labels that say so."""

    ref: str  # a pinned reference, "${BASE_REF}" or "scratch"
    name_label: str | None  # already quoted
    digest_label: str | None
    from_build_args: bool  # BASE_REF and BASE_DIGEST are build args


# FROM the digest (BASE_REF: <registry>/<repository>@sha256:...); base.name the tag that resolved to it
# (BASE_NAME: <registry>/<repository>:<parent>-v<x.y>, or the prod image's tag for a debug variant).
_BASE_FROM_BUILD_ARGS = _Base("${BASE_REF}", _arg_ref("BASE_NAME"), _arg_ref("BASE_DIGEST"), True)


def _prod_base(m: Manifest) -> _Base:
    match m.base:
        case Parent(name):
            _checked(name, "name", "parent")
            return _BASE_FROM_BUILD_ARGS
        case Upstream() as up:
            return _upstream_base(up)


def _upstream_base(up: Upstream) -> _Base:
    image = _checked(up.image, "image", "upstream.image")
    if image == "scratch":  # docker's reserved empty image: nothing to pull, nothing to pin
        return _Base("scratch", None, None, False)
    if up.tag is not None:
        _checked(up.tag, "tag", "upstream.tag")
    if up.digest is None:
        raise RenderError("upstream.digest", "is required: FROM always pins the upstream by digest")
    _checked(up.digest, "digest", "upstream.digest")
    name = f"{image}:{up.tag}" if up.tag else image
    return _Base(up.pinned_ref, quote_value(name, "upstream"), quote_value(up.digest, "upstream.digest"), False)


def _packages(packages: Iterable[str], key: str, implied: Iterable[str] = ()) -> list[str]:
    """Sorted and de-duplicated; an implied package (ca-certificates, tzdata) is added unless listed,
    pinned or not."""
    listed = {_checked(p, "package", f"{key}.{i}") for i, p in enumerate(packages)}
    names = {p.split("=", 1)[0] for p in listed}
    return sorted(listed | {p for p in implied if p not in names})


def _implied_packages(m: Manifest, cas: list[certs.CaCertificate]) -> list[str]:
    """ca-certificates for the public bundle, and for the org CAs: its update-ca-certificates is how the
    distro trusts a CA (and keeps trusting it when a child image runs it again)."""
    wants_store = m.ca_certificates or bool(cas)
    return (["ca-certificates"] if wants_store else []) + (["tzdata"] if m.timezone != UTC else [])


def _cert_names(cas: Sequence[certs.CaCertificate]) -> list[str]:
    names = certs.context_names(cas)
    for name in names:  # made from safe characters; checked again because they reach a shell
        if not _CERT_NAME.fullmatch(name):
            raise RenderError("certificates", f"{name!r} is not a safe certificate file name")
    return names


def _trust_env(m: Manifest, cas: list[certs.CaCertificate]) -> list[tuple[str, str]]:
    """Runtimes that do not read the system trust store (or whose libraries carry their own bundle),
    pointed at the org CAs. A variable the manifest sets itself is left to the manifest."""
    if not cas:
        return []
    wanted = {
        # Node trusts its own built-in Mozilla list; NODE_EXTRA_CA_CERTS adds a PEM file to it.
        "node": [("NODE_EXTRA_CA_CERTS", ORG_BUNDLE)],
        # The stdlib ssl module already reads the system store (OpenSSL's default paths); requests
        # (certifi's bundle) and httpx read these instead.
        "python": [("REQUESTS_CA_BUNDLE", SYSTEM_BUNDLE), ("SSL_CERT_FILE", SYSTEM_BUNDLE)],
    }.get(m.runtime, [])
    own = dict(m.env)
    return [(name, quote_value(value, f"env.{name}")) for name, value in wanted if name not in own]


def _org_ca_commands(m: Manifest, cas: list[certs.CaCertificate]) -> list[str]:
    """In the one RUN of an apt or apk image: the org CAs into the system trust store (and Java's)."""
    if not cas:
        return ["update-ca-certificates"] if m.ca_certificates else []
    mounted = [f"{CERTS_IN_BUILD}/{n}" for n in _cert_names(cas)]
    commands = [
        f"mkdir -p {LOCAL_CA_DIR} /etc/ssl",
        f"install -m 0644 {' '.join(map(_sh, mounted))} {LOCAL_CA_DIR}/",
        "update-ca-certificates",
        f"cat {' '.join(map(_sh, mounted))} > {ORG_BUNDLE}",
    ]
    if m.runtime == "java":
        store = f"-cacerts -storepass {JAVA_CACERTS_PASSWORD}"
        for path in mounted:
            alias = _sh("factory-" + PurePosixPath(path).stem)
            commands.append(f"keytool -list {store} -alias {alias} >/dev/null 2>&1"
                            f" || keytool -importcert -noprompt {store} -alias {alias} -file {_sh(path)}")
    return commands


def _user(m: Manifest) -> User:
    return User(_checked(m.user.name, "user name", "user.name"),
                _checked_id(m.user.uid, "user.uid"), _checked_id(m.user.gid, "user.gid"))


def _timezone(m: Manifest) -> str:
    return _checked(m.timezone, "timezone", "timezone")


def _env(pairs: Iterable[tuple[str, str]], key: str, reserved: Iterable[str] = ()) -> list[tuple[str, str]]:
    out = []
    for name, value in sorted(pairs):
        _checked(name, "env key", f"{key}.{name}")
        if name in reserved:
            raise RenderError(f"{key}.{name}", f"{name} is set by the factory (use the manifest key for it)")
        refused = guards.refused_env(name, value)  # validate refuses it first
        if refused:
            raise RenderError(f"{key}.{name}", refused)
        out.append((name, quote_value(value, f"{key}.{name}")))
    return out


def _labels(m: Manifest, settings: Settings, base: _Base, variant: str) -> list[tuple[str, str]]:
    if variant == DEBUG:
        title = f"{m.name}-{DEBUG}"
        description = f"Debug variant of {m.name} (shell and tools for troubleshooting): never deploy. {m.description}"
    else:
        title, description = m.name, m.description
    labels = [
        (TITLE_LABEL, quote_value(title, "name")),
        (DESCRIPTION_LABEL, quote_value(description, "description")),
        (VERSION_LABEL, _arg_ref("FACTORY_VERSION")),
        (REVISION_LABEL, _arg_ref("FACTORY_REVISION")),
        (CREATED_LABEL, _arg_ref("FACTORY_CREATED")),
    ]
    # source_url, or the git remote when it is empty: known at build time only (render never runs git)
    labels.append((SOURCE_LABEL, _arg_ref("FACTORY_SOURCE")))
    if settings.vendor:
        labels.append((VENDOR_LABEL, quote_value(settings.vendor, "vendor (factory.yaml)")))
    if m.licenses and m.licenses not in NOT_LICENSE_EXPRESSIONS:  # "unknown" is no SPDX expression: omitted
        labels.append((LICENSES_LABEL, quote_value(m.licenses, "licenses")))
    if base.name_label:
        labels.append((BASE_NAME_LABEL, base.name_label))
    if base.digest_label:
        labels.append((BASE_DIGEST_LABEL, base.digest_label))
    labels += [(FINGERPRINT_LABEL, _arg_ref("FACTORY_FINGERPRINT")), (VARIANT_LABEL, quote_value(variant, "variant"))]
    for name, value in sorted(m.labels):
        key = f"labels.{name}"
        _checked(name, "label key", key)
        if name.startswith(RESERVED_LABEL_PREFIXES):
            raise RenderError(key, f"{name} is set by the factory; labels may not use "
                                   f"{' or '.join(RESERVED_LABEL_PREFIXES)}")
        labels.append((name, quote_value(value, key)))
    return labels


def _final_block(env: list[tuple[str, str]], stage_args: list[str], labels: list[tuple[str, str]],
                 user: User) -> list[str]:
    """ENV, the build args the labels read, LABEL and USER: the same closing for every Dockerfile."""
    lines = []
    if env:
        lines += [_pairs("ENV", env), ""]
    lines.append("# Set per build by the builder: kept out of this file, which changes only with the manifest.")
    lines += [f"ARG {a}" for a in stage_args]
    lines += [_pairs("LABEL", labels), "", f"USER {_user_ref(user)}"]
    return lines


def _stage_args(base: _Base) -> list[str]:
    return [*(BASE_ARGS if base.from_build_args else ()), *PER_BUILD_ARGS]


def _global_args(base: _Base, helper: str | None) -> list[str]:
    """ARGs before the first FROM: only those may appear in a FROM line."""
    lines = []
    if base.from_build_args:
        lines.append("ARG BASE_REF")
    if helper:
        lines.append(f"ARG HELPER_REF={helper}")
    return lines


# --- per distro: the hardening --------------------------------------------------------------------

def _apt_commands(m: Manifest, cas: list[certs.CaCertificate], fixes: str | None = None) -> list[str]:
    """``fixes``: the apply-fixes command, when policy.security_fixes applies (it runs apt-get update
    with the configured suites, so every package below comes in its fixed version)."""
    user, tz = _user(m), _timezone(m)
    packages = _packages(m.packages, "packages", _implied_packages(m, cas))
    commands = ["set -eux"]
    if fixes:
        commands += ["export DEBIAN_FRONTEND=noninteractive", fixes]
        if packages:
            commands.append("apt-get install -y --no-install-recommends " + " ".join(map(_sh, packages)))
    elif packages:
        commands += [
            "export DEBIAN_FRONTEND=noninteractive",
            "apt-get update",
            "apt-get install -y --no-install-recommends " + " ".join(map(_sh, packages)),
        ]
    commands += _org_ca_commands(m, cas)
    commands += [
        f"grep -q {_sh(f'^{user.name}:x:{user.gid}:')} /etc/group || groupadd -g {user.gid} {_sh(user.name)}",
        # -l: no lastlog/faillog entry, which for a large uid is a huge sparse file
        f"grep -q {_sh(f'^{user.name}:x:{user.uid}:{user.gid}:')} /etc/passwd"
        f" || useradd -l -u {user.uid} -g {user.gid} -M -d /nonexistent -s /usr/sbin/nologin {_sh(user.name)}",
    ]
    commands += _timezone_commands(tz)
    if fixes:
        commands.append(f"rm -f {FIXES_SOURCES}")
    return [*commands, STRIP_SETUID, *APT_CLEAN]


def _apk_commands(m: Manifest, cas: list[certs.CaCertificate], fixes: str | None = None) -> list[str]:
    user, tz = _user(m), _timezone(m)
    packages = _packages(m.packages, "packages", _implied_packages(m, cas))
    commands = ["set -eux", *([fixes] if fixes else [])]
    if packages:
        commands.append("apk add --no-cache " + " ".join(map(_sh, packages)))
    commands += _org_ca_commands(m, cas)
    commands += [
        f"grep -q {_sh(f'^{user.name}:x:{user.gid}:')} /etc/group || addgroup -g {user.gid} -S {_sh(user.name)}",
        f"grep -q {_sh(f'^{user.name}:x:{user.uid}:{user.gid}:')} /etc/passwd"
        f" || adduser -u {user.uid} -G {_sh(user.name)} -S -D -H -h /nonexistent -s /sbin/nologin {_sh(user.name)}",
    ]
    return commands + _timezone_commands(tz) + [STRIP_SETUID]


def _timezone_commands(tz: str) -> list[str]:
    if tz == UTC:
        return []
    return [f"ln -snf {_sh('/usr/share/zoneinfo/' + tz)} /etc/localtime", f"echo {_sh(tz)} > /etc/timezone"]


_NO_SHELL_HELPER = [
    "# Throwaway helper stage (the image has no shell): it prepares, under /rootfs, exactly the files",
    "# that the final stage copies. See prepare-rootfs.sh.",
]


def _helper_stage(from_line: str, why: list[str], helper_args: list[str], *, copy_from_upstream: bool = False,
                  with_certs: bool = False, as_root: bool = False) -> list[str]:
    """A throwaway stage that runs prepare-rootfs.sh; the final stage copies its /rootfs."""
    lines = [*why, from_line]
    if as_root:
        lines += [*_lint_ignore("DL3002"), "USER 0:0"]
    if copy_from_upstream:
        lines.append("COPY --from=upstream /etc/passwd /etc/group /rootfs/etc/")
    if with_certs:
        lines.append(f"COPY {CERTS_DIR}/ {CERTS_IN_BUILD}/")
    lines += [
        f"COPY {HELPER_SCRIPT} {HELPER_SCRIPT_IN_STAGE}",
        "RUN " + _exec_form(["/bin/sh", HELPER_SCRIPT_IN_STAGE, *helper_args]),
    ]
    return lines


def _helper_args(m: Manifest, cas: list[certs.CaCertificate]) -> list[str]:
    """What prepare-rootfs.sh writes for the prod image: the user, the CA bundle, the zone files."""
    user, tz = _user(m), _timezone(m)
    args = ["--user", f"{user.name}:{user.uid}:{user.gid}"]
    if m.ca_certificates:
        args.append("--ca-certificates")
    if cas:
        args += ["--org-certs", CERTS_IN_BUILD]
        if m.runtime == "java":
            args.append("--java")
    if tz != UTC:
        args += ["--timezone", tz]
    return args


def _helper_image(settings: Settings) -> str:
    if not settings.helper_image:
        raise RenderError("helper_image (factory.yaml)", "no helper image is configured; images without a shell "
                                                        "need one (a pinned Debian or Ubuntu image)")
    # the schema pins it by digest; checked again because it is written into a FROM line
    if re.fullmatch(r"[A-Za-z0-9._:/@-]+", settings.helper_image) is None:
        raise RenderError("helper_image (factory.yaml)", f"{settings.helper_image!r} is not an image reference")
    return settings.helper_image


# --- the Dockerfiles ------------------------------------------------------------------------------

def _header(m: Manifest, settings: Settings, variant: str) -> list[str]:
    source = check_line(_source_name(m, settings), "path")
    what = "the debug variant of the image" if variant == DEBUG else "the image"
    return [
        f"# Rendered by `factory render` from {source}: {what} {m.name} {m.version}.",
        "# Do not edit: change the manifest and run `factory render`.",
    ]


def _source_name(m: Manifest, settings: Settings) -> str:
    path = m.path
    if path.is_absolute():
        try:
            return path.relative_to(settings.root).as_posix()
        except ValueError:
            return path.name  # outside the repository: an absolute path would differ per machine
    return PurePosixPath(path).as_posix()


def _prod_dockerfile(m: Manifest, settings: Settings, cas: list[certs.CaCertificate]) -> str:
    base = _prod_base(m)
    user, tz = _user(m), _timezone(m)
    env = [("TZ", quote_value(tz, "timezone")),
           *sorted(_trust_env(m, cas) + _env(m.env, "env", reserved=tuple(guards.RESERVED_ENV)))]
    labels = _labels(m, settings, base, PROD)
    lines = _header(m, settings, PROD)
    fixes = _fixes_command(m, settings)
    if not m.has_shell:
        lines += _no_shell_stages(m, settings, base, cas)
    elif m.packages:
        lines += _run_stage(m, base, cas, fixes)
    elif fixes:
        lines += _hardening_only_or_fixes_stages(m, base, cas, fixes)
    else:
        lines += _hardening_only_stages(m, base, cas)
    lines += _final_block(env, _stage_args(base), labels, user)
    return "\n".join(lines) + "\n"


def _run_stage(m: Manifest, base: _Base, cas: list[certs.CaCertificate], fixes: str | None) -> list[str]:
    """apt and apk images with packages: everything in one RUN, cleaned of lists, logs and caches."""
    lines = ["", *_global_args(base, None)] if base.from_build_args else []
    return [*lines, "", *_org_run(m, f"FROM {base.ref}", cas, fixes), ""]


def _org_run(m: Manifest, from_line: str, cas: list[certs.CaCertificate], fixes: str | None, *,
             final: bool = True) -> list[str]:
    """The stage whose one RUN is the org layer: packages, security fixes, org CAs, user, time zone.
    ``final``: the final stage (its USER comes below); else a stage the final one is built FROM."""
    commands = _apk_commands(m, cas, fixes) if m.distro == "alpine" else _apt_commands(m, cas, fixes)
    lines = [from_line, "",
             "# As root: an upstream or org parent image may end as a non-root user. USER below resets it.",
             *([] if final else _lint_ignore("DL3002")), "USER 0:0"]
    mounts = []
    if cas:
        lines.append("# The org CAs are read from the context's certs/ through a bind mount: no layer of their own.")
        mounts.append(f"type=bind,source={CERTS_DIR},target={CERTS_IN_BUILD}")
    if fixes:
        lines += ["# Security fixes (docs/security-fixes.md): the builder passes the configured suites and the",
                  "# packages to upgrade; by default the image's own sources, no upgrade. apply-fixes.sh is mounted.",
                  f"ARG {SUITES_ARG}=image", f"ARG {STATE_ARG}", f"ARG {FIXES_ARG}"]
        mounts.append(f"type=bind,source={FIXES_SCRIPT},target={FIXES_SCRIPT_IN_BUILD}")
    return [*lines, *_lint_ignore("DL3018" if m.distro == "alpine" else "DL3008"), _run(commands, mounts)]


def applies_fixes(m: Manifest, settings: Settings) -> bool:
    """Whether the builder computes and passes security fixes for ``m``: policy not off, and an image with a
    package manager (one without has no org layer that could upgrade anything: its upstream must rebuild)."""
    return settings.policy.security_fixes != "off" and _fixes_command(m, settings) is not None


def fixes_build_args(m: Manifest, packages: Iterable[str], archive_state: str) -> dict[str, str]:
    """The build args with which the rendered Dockerfile applies security fixes: the configured suites, the
    packages to upgrade, and for a hardening-only image with any to upgrade the org-run stage (the one COPY
    of the org-copy stage cannot upgrade packages). Without these args a build is what it was before
    security fixes: the image's own sources, nothing upgraded, the COPY."""
    names = sorted(set(packages))
    args = {SUITES_ARG: "configured", STATE_ARG: archive_state, FIXES_ARG: " ".join(names)}
    if names and m.has_shell and not m.packages:
        args[ORG_LAYER_ARG] = "run"
    return args


def _fixes_command(m: Manifest, settings: Settings) -> str | None:
    """The apply-fixes command of an apt or apk image, or None for an image without a package manager.
    Rendered whatever policy.security_fixes says, so that the policy changes the build args and never the
    build context (a policy switch is not a "manifest changed" rebuild)."""
    if not m.has_shell:
        return None
    archives = settings.archives
    if m.distro == "alpine":
        return _script_call(["--apk", f"v{m.release}", archives.alpine.mirror])
    if m.distro not in ("debian", "ubuntu"):
        return None
    life = lifecycle.lookup(m.distro, m.release)
    if life is None or not life.codename:
        raise RenderError("release", f"{m.distro} {m.release}: no codename known, so its archive suites cannot "
                                     "be named (core/lifecycle.py lists the known releases)")
    apt = archives.apt(m.distro)
    args = ["--apt", life.codename, " ".join(apt.components), apt.mirror, apt.security_mirror]
    return _script_call(args + ([apt.ports_mirror] if apt.ports_mirror else []))


def _script_call(args: list[str]) -> str:
    return f"sh {FIXES_SCRIPT_IN_BUILD} " + " ".join(map(_sh, args))


def _hardening_only_stages(m: Manifest, base: _Base, cas: list[certs.CaCertificate]) -> list[str]:
    """apt and apk images that ask for the org hardening only (no packages): one COPY of the changed
    files, prepared by the upstream itself in a helper stage."""
    lines = ["", *_global_args(base, None)] if base.from_build_args else []
    return [*lines, "", *_upstream_helper(m, base, cas), "", f"FROM {base.ref}", "COPY --from=helper /rootfs/ /", ""]


def _upstream_helper(m: Manifest, base: _Base, cas: list[certs.CaCertificate]) -> list[str]:
    why = [
        "# Throwaway helper stage: the upstream itself, on the target platform. The manifest asks for the",
        "# org hardening only, so the image gets exactly the files it changes (prepared under /rootfs, see",
        "# prepare-rootfs.sh) in one COPY: no package lists, logs, caches or package database changes.",
    ]
    return _helper_stage(f"FROM {base.ref} AS helper", why, ["--upstream", *_helper_args(m, cas)],
                         with_certs=bool(cas), as_root=True)


def _hardening_only_or_fixes_stages(m: Manifest, base: _Base, cas: list[certs.CaCertificate],
                                    fixes: str) -> list[str]:
    """Hardening-only apt and apk images when security fixes apply: the one COPY of the hardening files
    (stage org-copy, as without fixes) unless the builder finds fixes pending for the base and passes
    ORG_LAYER=run: the files a COPY carries cannot upgrade packages, so then the org layer is one RUN
    (stage org-run) that upgrades them and applies the same hardening. One added layer either way."""
    lines = ["", *_global_args(base, None), f"ARG {ORG_LAYER_ARG}=copy", "", *_upstream_helper(m, base, cas)]
    lines += ["", f"FROM {base.ref} AS org-copy", "COPY --from=helper /rootfs/ /", ""]
    lines += _org_run(m, f"FROM {base.ref} AS org-run", cas, fixes, final=False)
    return [*lines, "", *_lint_ignore("DL3006"), f"FROM org-${{{ORG_LAYER_ARG}}}", ""]


def _no_shell_stages(m: Manifest, settings: Settings, base: _Base, cas: list[certs.CaCertificate]) -> list[str]:
    _packages_unsupported(m.packages, "packages", m.distro)
    if cas and m.runtime == "java":
        raise RenderError("runtime", f"a {m.distro} java image cannot get the org CAs into Java's cacerts "
                                     "(keytool needs a shell and the image's own JRE); use a Debian-based JRE "
                                     "image, or one whose cacerts already holds them")
    lines = ["", *_global_args(base, _helper_image(settings)), ""]
    if _keeps_upstream_etc(m):
        lines += ["# The upstream's /etc/passwd and /etc/group are kept: the helper adds the user to them.",
                  f"FROM {base.ref} AS upstream", ""]
    why = [*_NO_SHELL_HELPER, "# It runs on the build platform: these files are the same on every architecture."]
    lines += _helper_stage("FROM --platform=$BUILDPLATFORM ${HELPER_REF} AS helper", why, _helper_args(m, cas),
                           copy_from_upstream=_keeps_upstream_etc(m), with_certs=bool(cas))
    return [*lines, "", f"FROM {base.ref}", "COPY --from=helper /rootfs/ /", ""]


def _keeps_upstream_etc(m: Manifest) -> bool:
    """Whether the upstream has an /etc/passwd and /etc/group to keep: distroless images ship them, and an
    org parent got them from the factory. A scratch image is taken to have none (COPY of a missing file
    fails the build), so it gets root and the user only."""
    return m.distro == "distroless" or isinstance(m.base, Parent)


def _packages_unsupported(packages: tuple[str, ...], key: str, distro: str) -> None:
    if packages:
        raise RenderError(key, f"{distro} images have no package manager: {', '.join(packages)} cannot be "
                               "installed (use an apt or apk based upstream, or build the files in)")


def _debug_dockerfile(m: Manifest, settings: Settings) -> str:
    variant = m.variant(DEBUG)
    assert variant is not None
    base = _BASE_FROM_BUILD_ARGS  # the prod image, by digest
    user = _user(m)
    labels = _labels(m, settings, base, DEBUG)
    lines = _header(m, settings, DEBUG)
    if m.has_shell:
        packages = _packages(variant.packages, "variants.debug.packages")
        env = _env(variant.env, "variants.debug.env", tuple(guards.RESERVED_ENV))
        lines += ["", *_global_args(base, None), "", "FROM ${BASE_REF}", ""]
        if packages:
            if m.distro == "alpine":
                commands = ["set -eux", "apk add --no-cache " + " ".join(map(_sh, packages)), STRIP_SETUID]
            else:
                commands = ["set -eux", "export DEBIAN_FRONTEND=noninteractive", "apt-get update",
                            "apt-get install -y --no-install-recommends " + " ".join(map(_sh, packages)),
                            STRIP_SETUID, *APT_CLEAN]
            lines += ["# Tools are installed as root; the image runs as the user again below.",
                      "USER 0:0", *_lint_ignore("DL3018" if m.distro == "alpine" else "DL3008"), _run(commands), ""]
    else:
        # busybox is the shell and the tools: without a package manager nothing else can be added
        _packages_unsupported(tuple(p for p in variant.packages if p != "busybox"), "variants.debug.packages",
                              m.distro)
        reserved = (*guards.RESERVED_ENV, *guards.NO_SHELL_DEBUG_RESERVED_ENV)
        env = [("PATH", quote_value(DEBUG_PATH, "PATH")), *_env(variant.env, "variants.debug.env", reserved)]
        lines += ["", *_global_args(base, _helper_image(settings)), ""]
        why = [*_NO_SHELL_HELPER, "# It runs on the target platform: busybox is a program for that architecture."]
        lines += _helper_stage("FROM ${HELPER_REF} AS helper", why, ["--busybox"])
        lines += ["", "FROM ${BASE_REF}", "COPY --from=helper /rootfs/ /", ""]
    lines += _final_block(env, _stage_args(base), labels, user)
    return "\n".join(lines) + "\n"


def _context_json(m: Manifest, base: _Base, variant: str, helper: str | None,
                  cas: Sequence[certs.CaCertificate] = ()) -> str:
    if variant == DEBUG:
        built_from = {"prod": m.name}
    elif isinstance(m.base, Parent):
        built_from = {"parent": m.base.name}
    else:
        built_from = {"upstream": base.ref}
    doc = {
        "render_version": RENDER_VERSION,
        "name": m.name,
        "version": m.version,
        "variant": variant,
        "distro": m.distro,
        "from": built_from,
        "helper": helper,
        "platforms": [str(p) for p in m.platforms],
        "build_args": _stage_args(base),
        "dockerfile": DOCKERFILE,
    }
    if variant == PROD:  # the debug variant inherits the prod image's trust store
        doc["certificates"] = [
            {"file": f"{CERTS_DIR}/{name}", "source": ca.where, "subject": ca.subject, "sha256": ca.sha256,
             "not_after": ca.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")}
            for name, ca in zip(_cert_names(cas), cas, strict=True)
        ]
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def _helper_script() -> bytes:
    return resources.files("factory.render").joinpath(HELPER_SCRIPT).read_bytes()


def _uses_helper_script(m: Manifest) -> bool:
    """Images without a shell, and apt/apk images asking for the org hardening only (no packages)."""
    return not m.has_shell or not m.packages


def render_manifest(m: Manifest, settings: Settings) -> RenderedImage:
    """The build contexts of one manifest. Pure: the same manifest, settings and CA files give the same
    bytes. Raises ManifestError (a manifest value or one of its CA files), ConfigError (an org CA file)."""
    try:
        _checked(m.name, "name", "name")
        cas = certs.for_image(m, settings)
        helper = None if m.has_shell else _helper_image(settings)
        files = {
            DOCKERFILE: _prod_dockerfile(m, settings, cas).encode(),
            CONTEXT_FILE: _context_json(m, _prod_base(m), PROD, helper, cas).encode(),
        }
        files.update({f"{CERTS_DIR}/{name}": ca.pem for name, ca in zip(_cert_names(cas), cas, strict=True)})
        if _uses_helper_script(m):
            files[HELPER_SCRIPT] = _helper_script()
        if _fixes_command(m, settings):
            files[FIXES_SCRIPT] = resources.files("factory.render").joinpath(FIXES_SCRIPT).read_bytes()
        if m.variant(DEBUG) is not None:
            files[f"{DEBUG}/{DOCKERFILE}"] = _debug_dockerfile(m, settings).encode()
            files[f"{DEBUG}/{CONTEXT_FILE}"] = _context_json(m, _BASE_FROM_BUILD_ARGS, DEBUG, helper).encode()
            if not m.has_shell:
                files[f"{DEBUG}/{HELPER_SCRIPT}"] = _helper_script()
    except (RenderError, CertificateError) as e:
        raise ManifestError([Problem(str(m.path), m.line_of(e.key), e.key, e.reason)]) from None
    image = RenderedImage(m.name, dict(sorted(files.items())), "", None)
    debug = image.context_files(DEBUG)
    return RenderedImage(
        name=m.name,
        files=image.files,
        context_digest=digest_files(image.context_files(PROD)),
        debug_context_digest=digest_files(debug) if debug else None,
    )


def refusals(catalog: Mapping[str, Manifest], settings: Settings, known: Iterable[Problem] = ()) -> list[Problem]:
    """What render would refuse, for `factory validate`: each manifest rendered in memory (nothing is
    written). Problems already in ``known`` (the same file and key) are left out, so a CA file the
    certificate check reported is not reported twice. validate thus refuses everything render does."""
    seen = {(Path(p.path).resolve(), p.key) for p in known}
    found: list[Problem] = []
    for name in sorted(catalog):
        try:
            render_manifest(catalog[name], settings)
        except ManifestError as e:
            found += [p for p in e.problems if (Path(p.path).resolve(), p.key) not in seen]
        except ConfigError:
            pass  # an org CA file of factory.yaml: the certificate check reports it
    return found


def build_args(m: Manifest, variant: str = PROD) -> tuple[str, ...]:
    """The build args a Dockerfile of this manifest expects the builder to pass."""
    needs_base_args = variant == DEBUG or isinstance(m.base, Parent)
    return (BASE_ARGS if needs_base_args else ()) + PER_BUILD_ARGS


# --- images/<name>/ on disk -----------------------------------------------------------------------

def _existing_files(folder: Path) -> dict[str, repofs.Entry]:
    """Files, links and special files under folder (links not followed), by path relative to it."""
    return {entry.rel: entry for entry in repofs.list_tree(folder)}


# A rendered file is a few KiB; the committed one is read at most this far to compare it.
MAX_CONTEXT_FILE = 4 * 1024 * 1024


def _current(entry: repofs.Entry | None, settings: Settings) -> bytes | None:
    """What is committed at a rendered path: its bytes, or a line saying what it is when it is a link
    or a special file (never followed, never read: it is stale whatever it points at)."""
    if entry is None:
        return None
    if not entry.regular:
        return f"({entry.kind}: not followed; `factory render` replaces it with a file)\n".encode()
    try:
        return repofs.read_bytes(entry.path, settings.root, MAX_CONTEXT_FILE)
    except RepoFileError as e:
        return f"({e.reason})\n".encode()


def _write_if_changed(path: Path, content: bytes, entry: repofs.Entry | None, settings: Settings) -> bool:
    if _current(entry, settings) == content:
        return False
    repofs.check_no_links(path.parent, settings.root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    repofs.write_new(tmp, content)  # never through a link a pull request committed at the temporary name
    os.replace(tmp, path)  # readers never see half a file; a link at path is replaced, not followed
    return True


def _remove_empty_dirs(folder: Path) -> None:
    if not folder.is_dir() or folder.is_symlink():
        return
    for top, _, _ in os.walk(folder, topdown=False, followlinks=False):  # deepest first, no link followed
        if Path(top) != folder and not os.listdir(top):
            os.rmdir(top)


def write_all(catalog: Mapping[str, Manifest], settings: Settings) -> list[Path]:
    """Render every manifest into images/<name>/ and remove files there that are no longer rendered.

    Writes only files whose content changed and touches no other folder. Returns the paths created,
    changed or removed (empty when everything was current).
    """
    touched: list[Path] = []
    for name in sorted(catalog):
        image = render_manifest(catalog[name], settings)
        folder = settings.images_dir / name
        repofs.check_no_links(folder, settings.root)  # images/<name> a link: it would write elsewhere
        existing = _existing_files(folder)
        for rel, content in image.files.items():
            if _write_if_changed(folder / rel, content, existing.get(rel), settings):
                touched.append(folder / rel)
        for rel, entry in existing.items():
            if rel not in image.files:
                entry.path.unlink(missing_ok=True)  # a link is removed itself, never what it points at
                touched.append(entry.path)
        _remove_empty_dirs(folder)
        log.get().debug("rendered", image=name, context=image.context_digest)
    return touched


def display_path(path: Path, settings: Settings) -> str:
    """A path as shown to people and in diffs: relative to the repository when inside it."""
    try:
        return path.relative_to(settings.root).as_posix()
    except ValueError:
        return path.as_posix()


def _lines(content: bytes) -> list[str]:
    return content.decode("utf-8", errors="replace").splitlines(keepends=True)


def _diff(old: bytes | None, new: bytes | None, shown: str) -> str:
    before = f"a/{shown}" if old is not None else "/dev/null"
    after = f"b/{shown}" if new is not None else "/dev/null"
    chunks = difflib.unified_diff(_lines(old or b""), _lines(new or b""), before, after)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in chunks)


def check(catalog: Mapping[str, Manifest], settings: Settings) -> str:
    """A unified diff from the files in images/<name>/ to what the manifests render: missing, changed
    and no-longer-rendered files. Empty when everything is current."""
    out = []
    for name in sorted(catalog):
        image = render_manifest(catalog[name], settings)
        folder = settings.images_dir / name
        existing = _existing_files(folder)
        for rel in sorted(set(image.files) | set(existing)):
            old = _current(existing.get(rel), settings)
            new = image.files.get(rel)
            if old != new:
                out.append(_diff(old, new, display_path(folder / rel, settings)))
    return "".join(out)


def stale_files(diff: str) -> int:
    """How many files a diff from ``check`` covers."""
    return sum(1 for line in diff.splitlines() if line.startswith("+++ "))
