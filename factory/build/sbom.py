"""SBOMs: one CycloneDX JSON document per platform of a built OCI layout, and the license policy on it.

Two generators sit behind the small ``SbomGenerator`` protocol, so that syft and trivy are
interchangeable: syft when it is installed, else trivy (``choose_generator``).

Neither tool can pick one platform out of the layout that buildx writes. That layout's
``index.json`` holds one entry, the image index, which lists one manifest per platform:

- ``trivy image --input DIR`` ignores ``--platform`` for a layout and takes the first manifest of
  the nested index (verified: the linux/arm64 "SBOM" listed amd64 packages);
- syft (stereoscope) refuses ``--platform`` for any local source, and older versions accept only a
  layout whose single entry is an image manifest.

So each run gets a *platform view*: a temporary layout whose ``index.json`` points straight at that
platform's manifest and whose ``blobs`` is a symlink to the real blobs (nothing is copied). Both
tools then read exactly the image that will be pushed, attested and run for that platform.

The license policy (``license_findings``) reads SPDX expressions: ``GPL-2.0-or-later OR MIT`` is
satisfied by MIT, ``A AND B`` needs both; several license entries on one package all apply (a
Debian package lists the licenses of its different files).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import json
import re
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeAlias
from urllib.parse import unquote

from packageurl import PackageURL

from factory.adapters.tools import INSTALL_HINT, Runner
from factory.core import labels
from factory.core.errors import EnvironmentProblem, SbomError
from factory.oci.layout import OCI_INDEX, Descriptor, OciLayout

SBOM_TIMEOUT = 900  # seconds; a large image under a slow disk still finishes well within this


# --- generators --------------------------------------------------------------------------------


class SbomGenerator(Protocol):
    name: str

    def generate(self, layout_dir: Path, platform: str) -> dict[str, Any]:
        """CycloneDX JSON for one platform of the OCI layout in ``layout_dir``."""
        ...


class TrivySbom:
    """``trivy image --input VIEW --format cyclonedx``, offline, with the factory's cache dir."""

    name = "trivy"

    def __init__(self, runner: Runner, cache_dir: Path) -> None:
        self.runner = runner
        self.cache_dir = cache_dir

    def argv(self, view: Path) -> list[str]:
        # No --platform: trivy ignores it for --input; the view already holds one platform.
        # --offline-scan and the two skips keep trivy from reaching the network at all.
        return ["trivy", "image", "--input", str(view), "--format", labels.CYCLONEDX,
                "--cache-dir", str(self.cache_dir), "--offline-scan", "--quiet",
                "--skip-version-check", "--disable-telemetry"]

    def generate(self, layout_dir: Path, platform: str) -> dict[str, Any]:
        with platform_view(layout_dir, platform) as view:
            proc = self.runner.run(self.argv(view), step=f"sbom {platform}", timeout=SBOM_TIMEOUT)
        return parse_cyclonedx(proc.stdout, tool=self.name, platform=platform)


class SyftSbom:
    """``syft oci-dir:VIEW -o cyclonedx-json``. Not installed on the reference machine: only its
    command line is unit-tested."""

    name = "syft"
    # syft asks the network for a newer version on every run unless told not to.
    ENV: ClassVar[dict[str, str]] = {"SYFT_CHECK_FOR_APP_UPDATE": "false"}

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def argv(self, view: Path) -> list[str]:
        # No --platform: stereoscope rejects it for local sources ("does not support selecting
        # platform"); the view holds exactly one platform's manifest.
        return ["syft", f"oci-dir:{view}", "-o", "cyclonedx-json", "-q"]

    def generate(self, layout_dir: Path, platform: str) -> dict[str, Any]:
        with platform_view(layout_dir, platform) as view:
            proc = self.runner.run(self.argv(view), step=f"sbom {platform}", env=self.ENV,
                                   timeout=SBOM_TIMEOUT)
        return parse_cyclonedx(proc.stdout, tool=self.name, platform=platform)


def choose_generator(runner: Runner, cache_dir: Path) -> SbomGenerator:
    """syft when it is on the search path, else trivy; one clear error when neither is."""
    if runner.which("syft"):
        return SyftSbom(runner)
    if runner.which("trivy"):
        return TrivySbom(runner, cache_dir)
    raise EnvironmentProblem(f"no SBOM generator: neither syft nor trivy was found in {runner.searched}",
                             hint=INSTALL_HINT)


def parse_cyclonedx(text: str, *, tool: str, platform: str) -> dict[str, Any]:
    """The generator's stdout as a CycloneDX document; anything else is an error, never {}."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SbomError(f"sbom {platform}: {tool} did not write JSON ({e}); "
                        f"output starts with {text[:80]!r}") from None
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX" or "specVersion" not in doc:
        raise SbomError(f"sbom {platform}: {tool} wrote JSON that is not a CycloneDX BOM "
                        "(no bomFormat: CycloneDX / specVersion)")
    return doc


# --- the single-platform view of a layout -------------------------------------------------------


def view_index(manifest: Descriptor) -> dict[str, Any]:
    """The ``index.json`` of a layout holding only ``manifest`` (one platform's image)."""
    entry: dict[str, Any] = {"mediaType": manifest.media_type, "digest": manifest.digest,
                             "size": manifest.size}
    if manifest.platform:
        entry["platform"] = dict(manifest.platform)
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}


@contextmanager
def platform_view(layout_dir: Path, platform: str) -> Iterator[Path]:
    """A temporary OCI layout with just ``platform``'s manifest, sharing ``layout_dir``'s blobs."""
    image = OciLayout.from_dir(layout_dir).image(platform)  # names the platforms it has if absent
    with tempfile.TemporaryDirectory(prefix="factory-view-") as tmp:
        view = Path(tmp) / image.platform.replace("/", "-")  # trivy names the SBOM after it
        # trivy reads "--input PATH@ref" and "PATH:tag": either character in the path breaks it.
        if set(str(view)) & {"@", ":"}:
            raise EnvironmentProblem(f"temporary folder {tmp!r} contains '@' or ':', which trivy "
                                     "reads as an image reference", hint="set TMPDIR to a plain path")
        view.mkdir()
        (view / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        (view / "index.json").write_text(json.dumps(view_index(image.manifest)))
        (view / "blobs").symlink_to(Path(layout_dir).resolve() / "blobs", target_is_directory=True)
        yield view


# --- what the published SBOM says about the image -----------------------------------------------

# The CycloneDX version of the index SBOM the factory writes itself (cyclonedx-python-lib validates 1.0-1.7).
INDEX_SBOM_SPEC = "1.6"
FACTORY_PROPERTY = "io.github.base-image-factory:"  # prefix of the properties the factory adds
MAX_ORG_FILES = 512  # an org layer of a no-shell image holds tens of files; more is not a file list any more
MAX_ORG_FILE = 64 << 20  # bytes of one file hashed


def image_purl(name: str, digest: str, platform: str | None = None) -> str:
    """The package URL of an image (purl-spec's ``oci`` type): ``pkg:oci/<last path segment>@<digest>``
    with ``repository_url`` (registry/repository) and, for one platform's image, ``arch``."""
    qualifiers = {"repository_url": name}
    if platform:
        qualifiers["arch"] = platform.split("/")[1]
    return PackageURL(type="oci", name=name.rsplit("/", 1)[-1].lower(), version=digest,
                      qualifiers=qualifiers).to_string()


def describe_image(doc: dict[str, Any], *, name: str, digest: str, platform: str) -> dict[str, Any]:
    """``doc`` with ``metadata.component`` naming the image it describes: ``name`` (registry/repository),
    the platform manifest's ``digest`` as version, its purl. The generator named the temporary platform
    view it read; its bom-ref is replaced in ``dependencies`` too, so the graph still starts at the image."""
    metadata = doc.setdefault("metadata", {})
    component = dict(metadata.get("component") or {})
    old_ref = component.get("bom-ref")
    purl = image_purl(name, digest, platform)
    component.update({"type": "container", "bom-ref": purl, "name": name, "version": digest, "purl": purl})
    metadata["component"] = component
    if old_ref:
        for dep in doc.get("dependencies") or []:
            if dep.get("ref") == old_ref:
                dep["ref"] = purl
            dep["dependsOn"] = [purl if d == old_ref else d for d in dep.get("dependsOn") or []]
    return doc


@dataclass(frozen=True)
class CopiedFile:
    """A regular file of the layer the factory added (path inside the image, its SHA-256)."""

    path: str
    sha256: str


def org_layer_files(layout: OciLayout, platform: str) -> list[CopiedFile]:
    """The regular files of ``platform``'s top layer: in an image without a shell, the one layer the
    factory adds (``COPY --from=helper /rootfs/ /``: passwd, group, the CA bundle, zone files), which no
    package database lists and so no SBOM tool reports. Bounded in files and bytes."""
    layer = layout.layers(platform)[-1]
    if "zstd" in layer.media_type:  # buildx writes gzip unless told otherwise; never read zstd as a tar
        raise SbomError(f"sbom {platform}: the org layer {layer.digest} is {layer.media_type}, not read here")
    out: list[CopiedFile] = []
    with layout.blob(layer.digest).open("rb") as raw:
        stream = gzip.GzipFile(fileobj=raw) if layer.media_type.endswith("gzip") else raw
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if not member.isreg() or member.size > MAX_ORG_FILE:
                    continue
                if len(out) >= MAX_ORG_FILES:
                    raise SbomError(f"sbom {platform}: the org layer {layer.digest} has more than "
                                    f"{MAX_ORG_FILES} files")
                data = tar.extractfile(member)
                if data is not None:
                    path = member.name.removeprefix("./").lstrip("/")
                    out.append(CopiedFile(path, hashlib.sha256(data.read()).hexdigest()))
    return sorted(out, key=lambda f: f.path)


def with_files(doc: dict[str, Any], files: Sequence[CopiedFile]) -> dict[str, Any]:
    """``doc`` with a ``file`` component for each file the factory copied in (those the generator already
    lists are left alone)."""
    listed = {str(c.get("name")) for c in components(doc)}
    added = [{"type": "file", "bom-ref": f"file:/{f.path}", "name": f"/{f.path}",
              "hashes": [{"alg": "SHA-256", "content": f.sha256}],
              "properties": [{"name": FACTORY_PROPERTY + "layer", "value": "org"}]}
             for f in files if f"/{f.path}" not in listed and f.path not in listed]
    if added:
        doc["components"] = [*(doc.get("components") or []), *added]
    return doc


def index_sbom(*, name: str, index_digest: str, platforms: Mapping[str, str], tool_version: str) -> dict[str, Any]:
    """The SBOM of a multi-platform index, as Chainguard's images carry one: the index is the BOM's
    subject, each platform image a ``container`` component (its digest, its purl with ``arch``) that the
    index depends on. Each platform image's own SBOM (its packages) is attested on its manifest."""
    subject = image_purl(name, index_digest)
    children = [{"type": "container", "bom-ref": image_purl(name, d, p), "name": name, "version": d,
                 "purl": image_purl(name, d, p), "properties": [{"name": FACTORY_PROPERTY + "platform", "value": p}]}
                for p, d in sorted(platforms.items())]
    return {
        "$schema": f"http://cyclonedx.org/schema/bom-{INDEX_SBOM_SPEC}.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": INDEX_SBOM_SPEC,
        "serialNumber": uuid.uuid5(uuid.NAMESPACE_URL, subject).urn,  # one index, one serial number
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "base-image-factory", "version": tool_version}]},
            "component": {"type": "container", "bom-ref": subject, "name": name, "version": index_digest,
                          "purl": subject},
        },
        "components": children,
        "dependencies": [{"ref": subject, "dependsOn": [c["bom-ref"] for c in children]},
                         *({"ref": c["bom-ref"], "dependsOn": []} for c in children)],
    }


# --- packages ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    purl: str
    licenses: tuple[str, ...]  # each an SPDX id, a free-text name or an SPDX expression
    type: str  # the purl type (deb, apk, pypi, npm, golang ...), else the CycloneDX component type


def packages(sbom: Mapping[str, Any]) -> dict[str, Package]:
    """The packages of a CycloneDX BOM, keyed by name.

    A name that occurs more than once (a Debian ``six`` and a PyPI ``six``) is keyed
    ``type/name`` for each of its occurrences, and ``type/name@version`` if that still collides,
    so that keys do not depend on the order the generator wrote components in.
    The operating system itself (trivy's ``operating-system`` component) is not a package: see
    ``operating_system``.
    """
    found = [_package(c) for c in components(sbom) if _is_package(c)]
    by_name: dict[str, list[Package]] = {}
    for p in found:
        by_name.setdefault(p.name, []).append(p)
    out: dict[str, Package] = {}
    for name, group in by_name.items():
        if len(group) == 1:
            out[name] = group[0]
            continue
        typed = [f"{p.type}/{p.name}" for p in group]
        for p, key in zip(group, typed, strict=True):
            out[key if typed.count(key) == 1 else f"{key}@{p.version}"] = p
    return dict(sorted(out.items()))


def operating_system(sbom: Mapping[str, Any]) -> str | None:
    """"debian 12.15" from the BOM's operating-system component, when the generator wrote one."""
    for c in components(sbom):
        if c.get("type") == "operating-system":
            return " ".join(str(c[k]) for k in ("name", "version") if c.get(k))
    return None


def components(sbom: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every component, depth first (CycloneDX allows components inside components)."""
    stack = list(reversed(sbom.get("components") or []))
    while stack:
        c = stack.pop()
        if isinstance(c, Mapping):
            yield c
            stack.extend(reversed(c.get("components") or []))


def _is_package(c: Mapping[str, Any]) -> bool:
    # A purl marks a package; syft sometimes leaves it out for libraries it cannot name fully.
    # trivy's "application" components (a lock file, a language section) carry no purl.
    return bool(c.get("name")) and (bool(c.get("purl")) or c.get("type") in ("library", "framework"))


def _package(c: Mapping[str, Any]) -> Package:
    purl = str(c.get("purl") or "")
    return Package(name=str(c["name"]), version=str(c.get("version") or ""), purl=purl,
                   licenses=component_licenses(c), type=purl_type(purl) or str(c.get("type") or ""))


def purl_type(purl: str) -> str:
    """``pkg:deb/debian/dpkg@1.21.23?arch=arm64`` -> ``deb``."""
    if not purl.startswith("pkg:"):
        return ""
    return unquote(purl[4:].lstrip("/").split("/", 1)[0]).lower()


def component_licenses(c: Mapping[str, Any]) -> tuple[str, ...]:
    """The license texts of a component, in the three shapes CycloneDX allows:
    ``{license: {id}}``, ``{license: {name}}`` and ``{expression}``."""
    out: list[str] = []
    for entry in c.get("licenses") or []:
        if not isinstance(entry, Mapping):
            continue
        if entry.get("expression"):
            text = entry["expression"]
        else:
            lic = entry.get("license") or {}
            text = lic.get("id") or lic.get("name") or ""
        text = str(text).strip()
        if text and text not in out:
            out.append(text)
    return tuple(out)


# --- license policy ----------------------------------------------------------------------------

OK, WARN, DENY = 0, 1, 2
_SEVERITY = {WARN: "warning", DENY: "error"}


@dataclass(frozen=True)
class LicenseFinding:
    package: str
    version: str
    severity: str  # "error" (deny list) or "warning" (warn list)
    licenses: tuple[str, ...]  # the licenses that caused it
    declared: tuple[str, ...]  # everything the package declares

    @property
    def message(self) -> str:
        which = "denied" if self.severity == "error" else "needs a copyleft-approved image"
        return (f"{self.package} {self.version}: license {', '.join(self.licenses)} {which} "
                f"(declared: {_conjunction(self.declared)})")

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


def _conjunction(texts: Sequence[str]) -> str:
    """``A AND (B OR C)``: how the declared entries combine, parenthesised where needed."""
    return " AND ".join(f"({t})" if " " in t else t for t in texts)


def license_findings(sbom: Mapping[str, Any], deny: Sequence[str], warn: Sequence[str], *,
                     copyleft_approved: bool = False) -> list[LicenseFinding]:
    """One finding per package whose licenses hit the deny list (error) or the warn list (warning,
    unless the image is copyleft-approved). Errors first, then by package name.

    A package's license entries all apply (AND); inside an expression OR lets the licensee pick
    the least restricted option. Packages that declare no license are not findings: nothing is
    known about them (the SBOM shows them with an empty license list).
    """
    policy = LicensePolicy(tuple(deny), () if copyleft_approved else tuple(warn))
    findings = []
    for p in packages(sbom).values():
        if not p.licenses:
            continue
        level, offenders = policy.evaluate(("and", tuple(parse_expression(t) for t in p.licenses)))
        if level > OK:
            findings.append(LicenseFinding(p.name, p.version, _SEVERITY[level], offenders, p.licenses))
    return sorted(findings, key=lambda f: (f.severity != "error", f.package))


# An expression tree: ("license", id, exception | None), ("and", children), ("or", children).
License = tuple[str, str, str | None]
Expr: TypeAlias = "License | tuple[str, tuple[Expr, ...]]"


def parse_expression(text: str) -> Expr:
    """Parse an SPDX license expression (WITH binds tighter than AND, AND tighter than OR).

    Operators are matched in any case; text that does not parse (a free-form name such as
    ``BSD-3-clause-and-or-GPL-3+`` parses fine, an unbalanced parenthesis does not) is kept as
    one license, so that nothing a generator wrote is dropped."""
    tokens = re.findall(r"\(|\)|[^\s()]+", text)
    parser = _Parser(tokens)
    try:
        tree = parser.expression()
        if parser.peek() is not None:
            raise ValueError(f"unexpected {parser.peek()!r}")
        return tree
    except ValueError:
        return ("license", text.strip(), None)


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ValueError("expression ends early")
        self.pos += 1
        return token

    def _is(self, op: str) -> bool:
        token = self.peek()
        return token is not None and token.upper() == op

    def expression(self) -> Expr:
        return self._chain("OR", self.conjunction)

    def conjunction(self) -> Expr:
        return self._chain("AND", self.term)

    def _chain(self, op: str, operand: Callable[[], Expr]) -> Expr:
        parts = [operand()]
        while self._is(op):
            self.take()
            parts.append(operand())
        return parts[0] if len(parts) == 1 else (op.lower(), tuple(parts))

    def term(self) -> Expr:
        token = self.take()
        if token == "(":
            inner = self.expression()
            if self.take() != ")":
                raise ValueError("missing )")
            return inner
        if token == ")" or token.upper() in ("AND", "OR", "WITH"):
            raise ValueError(f"expected a license, got {token!r}")
        exception = None
        if self._is("WITH"):
            self.take()
            exception = self.take()
            if exception in ("(", ")"):
                raise ValueError("WITH needs an exception id")
        return ("license", token, exception)


_GNU = re.compile(r"^(A|L)?GPL-(\d)(?:\.(\d))?(\+|-only|-or-later)?$", re.IGNORECASE)


def normalise_license(text: str) -> str:
    """One spelling per license for matching, case-folded. The GNU family is written many ways
    (SPDX's deprecated ``GPL-2.0`` and ``GPL-2.0+``, Debian's ``GPL-2`` and ``GPL-2+``); each
    becomes the current SPDX id, so that a policy entry matches all its spellings."""
    base, exception = [*re.split(r"\s+with\s+", text.strip(), maxsplit=1, flags=re.IGNORECASE), ""][:2]
    m = _GNU.match(base)
    if m:
        family, major, minor, suffix = m.groups()
        later = suffix in ("+", "-or-later")
        base = f"{(family or '').upper()}GPL-{major}.{minor or '0'}{'-or-later' if later else '-only'}"
    return (f"{base} with {exception}" if exception else base).casefold()


@dataclass(frozen=True)
class LicensePolicy:
    deny: tuple[str, ...]
    warn: tuple[str, ...]

    def level(self, license_id: str, exception: str | None) -> int:
        """A WITH exception does not lift a policy on its base license; an entry may name the
        whole ``X WITH Y`` to target only that combination."""
        names = [license_id, *([f"{license_id} WITH {exception}"] if exception else [])]
        if any(_matches(n, p) for n in names for p in self.deny):
            return DENY
        if any(_matches(n, p) for n in names for p in self.warn):
            return WARN
        return OK

    def evaluate(self, expr: Expr) -> tuple[int, tuple[str, ...]]:
        """(level, the licenses that set it). AND: the worst part; OR: the best option."""
        if len(expr) == 3:  # ("license", id, exception)
            _, license_id, exception = expr
            level = self.level(license_id, exception)
            text = f"{license_id} WITH {exception}" if exception else license_id
            return level, ((text,) if level else ())
        results = [self.evaluate(child) for child in expr[1]]
        level = max(r[0] for r in results) if expr[0] == "and" else min(r[0] for r in results)
        offenders: list[str] = []
        for child_level, names in results:
            if child_level == level:
                offenders.extend(n for n in names if n not in offenders)
        return level, (tuple(offenders) if level else ())


def _matches(license_text: str, pattern: str) -> bool:
    """Case-insensitive equality after normalising; ``*`` and ``?`` in a policy entry are globs
    (``AGPL-*`` denies every AGPL version)."""
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(normalise_license(license_text), pattern.strip().casefold())
    return normalise_license(license_text) == normalise_license(pattern)
