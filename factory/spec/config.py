"""Invocation settings: factory.yaml, then environment overrides, validated in one place.

The JSON Schema in ``schema/config.schema.json`` is the only definition of the keys and their
defaults; this module fills defaults from it, so that a default is declared once.

The file is read like a manifest (``factory.yaml`` may come from a pull request): the safe YAML
reader with its budgets, duplicate keys and line numbers, then the schema (single-line text where a
value reaches a rendered file or a command), then meaning: platforms parse, and the folders that
`factory render` writes to and deletes from stay inside the repository. Every problem is reported
at once, as ``factory.yaml:LINE: key.path: message``, or naming the environment variable it came from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from factory.core import platforms
from factory.core.errors import ConfigError, Problem, RepoFileError
from factory.core.reference import Ref, normalise_registry
from factory.spec import repofs, schemas, yamlload
from factory.spec.schemas import quote

CONFIG_FILE = "factory.yaml"


def _registry_host(value: str) -> str:
    """FACTORY_REGISTRY as given, but ``user:password@`` replaced: the schema refuses the value
    and its message quotes it, and a password must never be printed."""
    return f"<credentials removed>@{value.rpartition('@')[2]}" if "@" in value else value


# Environment variable -> (key path, parser). Declared once; documented in docs/config.md.
ENV_OVERRIDES: dict[str, tuple[tuple[str, ...], Callable[[str], object]]] = {
    "FACTORY_REGISTRY": (("registry",), _registry_host),
    "FACTORY_REPOSITORY": (("repository",), str),
    "FACTORY_PLATFORMS": (("platforms",), lambda v: [p.strip() for p in v.split(",") if p.strip()]),
    "FACTORY_STATE": (("state_dir",), str),
    "FACTORY_TOOLS_PATH": (("tools_path",), lambda v: [p for p in v.split(os.pathsep) if p]),
    "FACTORY_BUILDER": (("builder",), str),
    "FACTORY_SCANNER_DB_UNAVAILABLE": (("policy", "scanner_db_unavailable"), str),
    "FACTORY_SCANNER_DB_REPOSITORY": (("scanner", "db_repository"), str),
    # not a number: left as text, for the schema to name the variable and the expected type
    "FACTORY_SCANNER_DB_MAX_AGE_HOURS": (("scanner", "db_max_age_hours"),
                                         lambda v: int(v) if v.strip().isdigit() and len(v) < 6 else v),
    "COSIGN_KEY": (("signing", "key"), str),
    "FACTORY_KEYLESS": (("signing", "keyless"), lambda v: v.lower() in ("1", "true", "yes")),
    "FACTORY_TLOG_UPLOAD": (("signing", "tlog_upload"), lambda v: v.lower() in ("1", "true", "yes")),
    "FACTORY_CERTIFICATE_IDENTITY_REGEXP": (("signing", "certificate_identity_regexp"), str),
    "FACTORY_CERTIFICATE_OIDC_ISSUER": (("signing", "certificate_oidc_issuer"), str),
}


def _defaults(node: dict[str, Any]) -> Any:
    if "default" in node:
        return node["default"]
    if node.get("type") == "object" and "properties" in node:
        return {k: _defaults(v) for k, v in node["properties"].items()}
    return node.get("default")


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass(frozen=True)
class Policy:
    allowed_registries: tuple[str, ...]
    eol_warning_days: int
    certificates_warning_days: int
    max_added_layers: int
    max_total_layers: int
    max_size_overhead_percent: float
    fail_on_severities: tuple[str, ...]
    scanner_db_unavailable: str
    security_fixes: str  # require | warn | off (docs/security-fixes.md)
    license_deny: tuple[str, ...]
    license_warn: tuple[str, ...]


# The architectures Ubuntu publishes on archive.ubuntu.com and security.ubuntu.com; the rest are on ports.
UBUNTU_PRIMARY_ARCHES = frozenset({"amd64", "i386"})
SYSTEM_KEYRING = "/usr/share/keyrings/{distro}-archive-keyring.gpg"  # where Debian's packages install them
SYSTEM_APK_KEYS = Path("/etc/apk/keys")


@dataclass(frozen=True)
class AptArchive:
    """One apt distro's mirrors: suites ``<codename>`` and ``-updates`` from ``mirror``, ``-security`` from
    ``security_mirror``; ``ports_mirror`` (Ubuntu) serves all three for architectures not on the primary."""

    mirror: str
    security_mirror: str
    keyring: Path
    components: tuple[str, ...]
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
    repositories: tuple[str, ...]


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on every archive download: seconds per request, bytes on the wire and decompressed per file."""

    timeout: float = 30.0
    max_download: int = 64 * 1024 * 1024
    max_unpacked: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class ArchiveSettings:
    """factory.yaml's ``archives``: where each distribution's indexes are read (config.schema.json)."""

    debian: AptArchive
    ubuntu: AptArchive
    alpine: AlpineArchive
    limits: ArchiveLimits

    def apt(self, distro: str) -> AptArchive:
        if distro == "debian":
            return self.debian
        if distro == "ubuntu":
            return self.ubuntu
        raise ValueError(f"{distro!r} is not an apt distro")


@dataclass(frozen=True)
class Signing:
    key: str | None
    keyless: bool
    tlog_upload: bool
    certificate_identity_regexp: str = ""  # keyless: who must have signed (cosign --certificate-identity-regexp)
    certificate_oidc_issuer: str = ""


@dataclass(frozen=True)
class Scanner:
    """factory.yaml's ``scanner``: where the vulnerability database comes from, and how old it may be."""

    db_repository: str = "ghcr.io/aquasecurity/trivy-db:2"  # "": the cache's database as it is, never fetched
    db_max_age_hours: int = 48


@dataclass(frozen=True)
class Retention:
    """factory.yaml's ``retention``: what `factory prune` keeps."""

    keep_patches: int = 3
    keep_days: int = 90


@dataclass(frozen=True)
class RegistryClient:
    """Retries with exponential backoff for 429/5xx and connection failures, and the request timeout."""

    retries: int = 5
    backoff_seconds: float = 0.5
    timeout_seconds: float = 30


@dataclass(frozen=True)
class Settings:
    root: Path  # the repository root (folder holding factory.yaml)
    registry: str
    repository: str
    insecure_registries: tuple[str, ...]
    platforms: tuple[platforms.Platform, ...]
    manifests_dir: Path
    images_dir: Path
    state_dir: Path
    builder: str | None
    vendor: str
    source_url: str
    defaults: dict[str, Any] = field(hash=False)
    policy: Policy = field(hash=False)
    signing: Signing = field(hash=False)
    # pinned apt-based image for the helper stage of no-shell images (see config.schema.json)
    helper_image: str = ""
    # the org's CA files (PEM, relative to root) every image trusts; checked by factory.certs
    certificates: tuple[str, ...] = ()
    registry_client: RegistryClient = field(default_factory=RegistryClient, hash=False)
    scanner: Scanner = field(default_factory=Scanner, hash=False)
    retention: Retention = field(default_factory=Retention, hash=False)
    # When set, the only folders external tools are looked up in (a hermetic toolchain).
    tools_path: tuple[Path, ...] | None = None
    # Package archives of each distribution, for security fixes (None: the schema's defaults).
    archives: ArchiveSettings = field(default_factory=lambda: default_archives(), hash=False)  # noqa: PLW0108  (defined below)

    @property
    def target(self) -> str:
        """registry/repository, the prefix of every published reference."""
        return f"{self.registry}/{self.repository}"

    @property
    def tools_bin(self) -> Path:
        return self.state_dir / "tools" / "bin"

    @property
    def dev_key(self) -> Path:
        return self.state_dir / "keys" / "cosign.key"

    @property
    def signing_key(self) -> str:
        return self.signing.key or str(self.dev_key)

    def registry_is_insecure(self, registry: str | None = None) -> bool:
        return (registry or self.registry) in self.insecure_registries


def load(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read factory.yaml (or the built-in defaults when there is none), apply env overrides, validate."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    if path is None:
        path = Path.cwd() / CONFIG_FILE
        doc = _read(path) if path.exists() else yamlload.Document({})
    else:
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        doc = _read(path)
    raw, from_env = doc.data, {}
    for var, (keys, parse) in ENV_OVERRIDES.items():
        if env.get(var):
            node = raw
            for k in keys[:-1]:
                node = node.setdefault(k, {})
                if not isinstance(node, dict):  # the file has a non-mapping there: the schema says so
                    break
            else:
                node[keys[-1]] = parse(env[var])
                from_env[".".join(keys)] = var
    root = path.parent.resolve()
    problems = _structure_problems(doc, str(path), from_env)
    if not problems:
        problems = _meaning_problems(raw, root, doc, str(path), from_env)
    if problems:
        raise ConfigError("\n".join(str(p) for p in problems),
                          hint="every key, its default and its environment override: "
                               "factory/spec/schema/config.schema.json")
    return _build(_deep_merge(_defaults(schemas.load("config")), raw), root)


def _read(path: Path) -> yamlload.Document:
    try:
        data = repofs.read_bytes(path, path.parent, yamlload.MAX_BYTES, yamlload.CONFIG.noun)
    except RepoFileError as e:
        raise ConfigError(f"{path}: {e.reason}") from None
    doc, problems = yamlload.load(data, str(path), yamlload.CONFIG)
    if problems or doc is None:
        raise ConfigError("\n".join(str(p) for p in problems))
    return doc


# --- structure: the schema ----------------------------------------------------------------------

# What each pattern in the config schema means, in words (a unit test checks every pattern has one).
PATTERN_WORDS: dict[str, str] = {
    r"^[^\u0000-\u0008\u000a-\u001f\u007f\u0085\u2028\u2029]*$":
        "a single line of text (no newline or control character)",
    r"^[^\u0000-\u001f\u007f\u0085\u2028\u2029]*$": "a single line of text (no tab, newline or control character)",
    r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]+)?$": "a registry host[:port] like ghcr.io or 127.0.0.1:5000",
    r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$": "a lowercase repository path like myorg/base",
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$": "a buildx builder name (letters, digits, '_', '.', '-')",
    "^(https?://[^\\s\"'\\\\<>`]+)?$": "an http(s) URL without spaces, quotes or backslashes (or empty)",
    r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$": "a time zone name like UTC or Europe/Berlin",
    r"^[a-z_][a-z0-9_-]{0,31}$": "a user name: lowercase letters, digits, '_' or '-', at most 32 characters",
    r"^[A-Za-z0-9 .+()-]+$": "an SPDX license expression like Apache-2.0 or (MIT OR Apache-2.0)",
    r"^[A-Za-z0-9.+-]+$": "an SPDX license id like AGPL-3.0-only",
    r"^([a-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@sha256:[0-9a-f]{64}$":
        "an image reference pinned by digest, like docker.io/library/debian:bookworm-slim@sha256:<64 hex>",
    r"^[A-Za-z0-9_][A-Za-z0-9._/-]*[.](pem|crt|cer)$":
        "a PEM file path relative to the repository root, like certs/org-root-ca.pem (.pem, .crt or .cer)",
    r"^(https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[A-Za-z0-9._~%+-]+)*/?)?$":
        "an http(s) mirror URL like http://deb.debian.org/debian (or empty)",
    r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$": "a path relative to the repository root, like keys/debian-archive-keyring.gpg",
    r"^[a-z0-9][a-z0-9.+-]*$": "an archive component or repository name like main or universe",
    r"^$|^[a-z0-9][a-z0-9.:\[\]-]*(/[a-z0-9][a-z0-9._/-]*)?(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?$":
        "a repository and tag like ghcr.io/aquasecurity/trivy-db:2 or registry.example.com/security/trivy-db:2 "
        "(or empty)",
}


WORDS = schemas.Words(
    schemas.load("config"), PATTERN_WORDS,
    secrets="secrets never go in factory.yaml (it is committed); cosign's key password comes from "
            "COSIGN_PASSWORD, registry credentials from the docker config",
)


def _structure_problems(doc: yamlload.Document, shown: str, from_env: dict[str, str]) -> list[Problem]:
    problems: dict[Problem, None] = {}  # ordered set: jsonschema repeats some errors
    errors = schemas.validator("config").iter_errors(doc.data)
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        for key, message in schemas.explain(error, WORDS, doc.written):
            problems.setdefault(_problem(key, message, doc, shown, from_env))
    return list(problems)


def _problem(key: str, message: str, doc: yamlload.Document, shown: str, from_env: dict[str, str]) -> Problem:
    """Where a bad value came from: the environment variable that set it, or the file and line."""
    for set_key, var in from_env.items():
        if key == set_key or key.startswith(set_key + "."):
            return Problem(f"{var} (environment)", None, key, message)
    # A key the file does not have (a list item an override added ...): the line of its mapping.
    line = doc.lines.get(key) or doc.lines.get(key.rpartition(".")[0])
    return Problem(shown, line, key, message)


# --- meaning --------------------------------------------------------------------------------------

def _meaning_problems(raw: dict[str, Any], root: Path, doc: yamlload.Document, shown: str,
                      from_env: dict[str, str]) -> list[Problem]:
    found: list[tuple[str, str]] = []
    for i, text in enumerate(raw.get("platforms", [])):
        try:
            platforms.parse(text)
        except ValueError as e:
            found.append((f"platforms.{i}", str(e)))
    defaults = _defaults(schemas.load("config"))
    given = {key: raw.get(key, defaults[key]) for key in ("manifests_dir", "images_dir")}
    manifests, problem = _inside(root, given["manifests_dir"], root_ok=True)  # only read
    if problem:
        found.append(("manifests_dir", problem))
    images, problem = _inside(root, given["images_dir"], root_ok=False)  # written and cleaned by render
    if problem:
        found.append(("images_dir", problem))
    elif images == manifests or images in manifests.parents:
        found.append(("images_dir", f"{quote(given['images_dir'])} holds manifests_dir "
                                    f"{quote(given['manifests_dir'])}; `factory render` removes files it did not "
                                    "render there: use separate folders"))
    for distro, archive in (raw.get("archives") or {}).items():
        for key in ("keyring", "keys_dir"):
            if isinstance(archive, dict) and isinstance(archive.get(key), str):
                _, problem = _inside(root, archive[key], root_ok=False)  # read: the keys are committed
                if problem:
                    found.append((f"archives.{distro}.{key}", problem))
    if not any(key == "images_dir" for key, _ in found):
        found += _protected_folder_problems(images, given["images_dir"], root)
    merged = _deep_merge(defaults, raw)
    found += _executable_folder_problems(merged, root)
    found += _trust_problems(merged)
    return [_problem(key, message, doc, shown, from_env) for key, message in found]


# --- meaning: what a pull request to factory.yaml must not be able to do (docs/reliability.md) ----------

FACTORY_SOURCE = Path(__file__).resolve().parents[1]  # the factory package: its templates and scripts
# Worst case of one registry request with every retry: (retries + 1) x timeout + the backoffs.
MAX_REGISTRY_REQUEST_SECONDS = 300
MAX_BACKOFF_SECONDS = 30  # the registry client doubles the backoff up to this (config.schema.json)
# Registries of the public internet: never spoken to over plain HTTP (insecure_registries). A host
# ending in one of the suffixes counts too (europe-docker.pkg.dev, <account>.dkr.ecr.<region>.amazonaws.com).
PUBLIC_REGISTRIES = frozenset({
    "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", "gcr.io", "ghcr.io",
    "quay.io", "mcr.microsoft.com", "public.ecr.aws", "cgr.dev", "registry.k8s.io", "k8s.gcr.io",
    "registry.gitlab.com", "nvcr.io", "docker.elastic.co", "registry.access.redhat.com", "registry.redhat.io",
})
PUBLIC_REGISTRY_SUFFIXES = (".docker.io", ".gcr.io", ".pkg.dev", ".azurecr.io", ".amazonaws.com", ".quay.io",
                            ".ghcr.io", ".icr.io", ".ocir.io")


def _protected_folder_problems(images: Path, written: str, root: Path) -> list[tuple[str, str]]:
    """render deletes files it did not render in images_dir: never git's own data or the factory's source."""
    for given, what in ((root / ".git", "git's own data (.git)"), (FACTORY_SOURCE, "the factory's own source")):
        folder = given.resolve()
        if images == folder or folder in images.parents or images in folder.parents:
            return [("images_dir", f"{quote(written)} is or holds {what} ({folder}); `factory render` removes "
                                   "files it did not render there: use a folder of its own, like images")]
    return []


def _executable_folder_problems(merged: dict[str, Any], root: Path) -> list[tuple[str, str]]:
    """Folders the factory runs programs from must not be in the repository: a pull request could put a
    `cosign` or `docker` there, and `factory doctor` or a publish would run it."""
    found = []
    for i, text in enumerate(merged.get("tools_path") or ()):
        folder = (root / text).resolve()
        if folder == root or root in folder.parents:
            found.append((f"tools_path.{i}", f"{quote(text)} is inside the repository ({folder}); the factory runs "
                                             "the programs there, and the repository comes from pull requests: "
                                             "use a folder outside it (e.g. /opt/factory/tools/bin)"))
    state = (root / merged["state_dir"]).resolve()
    if state == root or root in state.parents:
        found.append(("state_dir", f"{quote(merged['state_dir'])} is inside the repository ({state}); it holds "
                                   "the tools the factory runs (tools/bin) and the signing key: use a folder "
                                   "outside it, like the default /var/lib/factory"))
    return found


def _is_public_registry(host: str) -> bool:
    name = host.lower().rsplit(":", 1)[0] if host.count(":") == 1 else host.lower()
    return name in PUBLIC_REGISTRIES or name.endswith(PUBLIC_REGISTRY_SUFFIXES)


def _trust_problems(merged: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for i, host in enumerate(merged["insecure_registries"]):
        if _is_public_registry(host):
            found.append((f"insecure_registries.{i}", f"{quote(host)} is a public registry; it is never spoken to "
                                                      "over plain HTTP (insecure_registries is for a local "
                                                      "registry such as 127.0.0.1:5000)"))
    allowed = {normalise_registry(r) for r in merged["policy"]["allowed_registries"]}
    helper = merged["helper_image"]
    registry = normalise_registry(Ref.parse(helper).registry)
    if registry not in allowed:
        found.append(("helper_image", f"registry {quote(registry)} of {quote(helper)} is not on "
                                      "policy.allowed_registries; the helper stage writes /etc/passwd and the CA "
                                      "bundle of no-shell images: mirror it into an allowed registry"))
    for key in ("source_url",):
        if _userinfo(merged[key]):
            found.append((key, "holds a user name or password (https://user:password@host/...); it is written "
                               "into every image's labels: remove the credentials from the URL"))
    if _userinfo(merged["signing"]["certificate_oidc_issuer"]):
        found.append(("signing.certificate_oidc_issuer", "holds a user name or password (https://user@host); "
                                                         "name the issuer's plain URL"))
    found += _retry_problems(merged["registry_client"])
    return found


def _userinfo(url: str) -> bool:
    return "@" in urlsplit(url).netloc if url else False


def _retry_problems(client: dict[str, Any]) -> list[tuple[str, str]]:
    retries, backoff = int(client["retries"]), float(client["backoff_seconds"])
    timeout = float(client["timeout_seconds"])
    waits = sum(min(backoff * 2**i, MAX_BACKOFF_SECONDS) for i in range(retries))
    worst = (retries + 1) * timeout + waits
    if worst > MAX_REGISTRY_REQUEST_SECONDS:
        return [("registry_client", f"retries {retries}, timeout_seconds {timeout:g} and backoff_seconds "
                                    f"{backoff:g} let one request take up to {worst:.0f} s against a registry "
                                    f"that does not answer; at most {MAX_REGISTRY_REQUEST_SECONDS} s: lower them")]
    return []


def _inside(root: Path, text: str, *, root_ok: bool) -> tuple[Path, str]:
    """(the folder, resolved), and a problem when it is outside the repository (or is the repository
    itself, unless ``root_ok``). Symbolic links are followed before checking."""
    folder = (root / text).resolve()
    if folder == root and not root_ok:
        return folder, (f"{quote(text)} is the repository itself; use a folder inside it "
                        "(`factory render` writes and removes files there)")
    if folder != root and root not in folder.parents:
        return folder, f"{quote(text)} resolves to {folder}, outside the repository {root}; use a folder inside it"
    return folder, ""


def _build(d: dict[str, Any], root: Path) -> Settings:
    policy: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d["policy"].items()}
    return Settings(
        root=root,
        registry=d["registry"],
        repository=d["repository"],
        insecure_registries=tuple(d["insecure_registries"]),
        platforms=platforms.parse_all(d["platforms"]),
        manifests_dir=(root / d["manifests_dir"]),
        images_dir=(root / d["images_dir"]),
        state_dir=root / d["state_dir"],  # an absolute state_dir stays as it is
        builder=d["builder"],
        vendor=d["vendor"],
        source_url=d["source_url"],
        defaults=d["defaults"],
        policy=Policy(**policy),
        signing=Signing(**d["signing"]),
        helper_image=d["helper_image"],
        certificates=tuple(d["certificates"]),
        registry_client=RegistryClient(**d["registry_client"]),
        scanner=Scanner(**d["scanner"]),
        retention=Retention(**d["retention"]),
        tools_path=None if d["tools_path"] is None else tuple(root / p for p in d["tools_path"]),
        archives=_archives(d["archives"], root),
    )


def _archives(a: dict[str, Any], root: Path) -> ArchiveSettings:
    """From the schema-validated ``archives`` (defaults merged in): a key file given is inside the
    repository (checked by _meaning_problems); none given means the system's."""
    def apt(distro: str) -> AptArchive:
        d = a[distro]
        keyring = (root / d["keyring"]).resolve() if d.get("keyring") else Path(SYSTEM_KEYRING.format(distro=distro))
        return AptArchive(mirror=d["mirror"].rstrip("/"), security_mirror=d["security_mirror"].rstrip("/"),
                          keyring=keyring, components=tuple(d["components"]),
                          ports_mirror=d.get("ports_mirror", "").rstrip("/") or None)

    alpine = a["alpine"]
    keys_dir = (root / alpine["keys_dir"]).resolve() if alpine.get("keys_dir") else SYSTEM_APK_KEYS
    return ArchiveSettings(
        debian=apt("debian"), ubuntu=apt("ubuntu"),
        alpine=AlpineArchive(mirror=alpine["mirror"].rstrip("/"), keys_dir=keys_dir,
                             repositories=tuple(alpine["repositories"])),
        limits=ArchiveLimits(timeout=float(a["timeout_seconds"]), max_download=int(a["max_download_bytes"]),
                             max_unpacked=int(a["max_unpacked_bytes"])))


def default_archives() -> ArchiveSettings:
    """The schema's defaults: the distributions' public mirrors and the system's keys."""
    return _archives(_defaults(schemas.load("config"))["archives"], Path.cwd())
