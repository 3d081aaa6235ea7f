"""Org CA certificates: the PEM files every image trusts, checked and made ready for the renderer.

Where they are listed (paths relative to the repository root, see docs/certificates.md):

  factory.yaml   certificates: [certs/org-root-ca.pem]                    every image (org-wide)
  a manifest     certificates: {additional: [certs/payments-ca.pem]}      that image as well

A file is accepted when it stays inside the repository (symbolic links are resolved first), is PEM
text holding one or more certificates and no private key, and each certificate

  - parses as X.509 (the ``cryptography`` package),
  - is a CA: basicConstraints CA:TRUE and keyUsage keyCertSign (RFC 5280 4.2.1.9, 4.2.1.3),
  - is valid now: not before its notBefore, not after its notAfter.

A certificate that expires within ``policy.certificates_warning_days`` is a warning: the org needs
time to roll a successor into every image. ``factory validate`` reports all of it as Problems
(``factory.yaml: certificates.0: ...`` or ``manifests/x.yaml:12: certificates.additional.0: ...``);
the renderer refuses errors and ignores warnings.

The renderer gets each certificate alone, re-encoded as canonical PEM (comments and text around
the blocks dropped), under a deterministic name: ``certs/<NN>-<stem>[-<k>].crt``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from factory.core.errors import CertificateError, ConfigError, Problem, RepoFileError
from factory.core.model import CaFile, Manifest
from factory.spec import repofs
from factory.spec.config import CONFIG_FILE, Settings

ERROR, WARNING = "error", "warning"

MAX_FILE_BYTES = 1024 * 1024  # a CA file is a few KiB; a whole public bundle is ~220 KiB
_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


@dataclass(frozen=True)
class CaCertificate:
    """One CA certificate from a listed file."""

    source: str  # the file as listed, relative to the repository root
    key: str  # where it is listed: "certificates.0" (factory.yaml) or "certificates.additional.0" (a manifest)
    org_wide: bool
    index: int  # 1-based position in its file
    count: int  # certificates in its file
    pem: bytes  # this certificate alone, canonical PEM
    sha256: str  # hex SHA-256 of the DER encoding: the fingerprint `openssl x509 -fingerprint -sha256` shows
    subject: str  # RFC 4514, e.g. CN=Example Org Root CA,O=Example
    not_before: datetime
    not_after: datetime

    @property
    def where(self) -> str:
        """The file, and which certificate in it when it holds several."""
        return self.source if self.count == 1 else f"{self.source} (certificate {self.index} of {self.count})"


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" | "warning"
    ca_file: CaFile
    message: str


# --- reading one file -----------------------------------------------------------------------------

def resolve(root: Path, written: str) -> Path:
    """The file a listed path names, symbolic links followed; it must stay inside the repository."""
    if Path(written).is_absolute():
        raise ValueError(f"{written!r} is an absolute path; list the file relative to the repository root")
    repo = root.resolve()
    path = (repo / written).resolve()
    if path != repo and repo not in path.parents:
        raise ValueError(f"{written!r} resolves to {path}, outside the repository {repo}; keep CA files in it "
                         "(e.g. certs/)")
    if not path.exists():
        raise ValueError(f"{written!r}: no such file (looked at {path})")
    if not path.is_file():
        raise ValueError(f"{written!r} is not a regular file")
    return path


def read(root: Path, ca_file: CaFile) -> list[CaCertificate]:
    """Every certificate of one listed file, each checked to be a CA. Raises CertificateError.
    Dates are checked apart (``date_findings``): a file is readable whatever the day."""
    try:
        path = resolve(root, ca_file.written)
        data = repofs.read_bytes(path, root, MAX_FILE_BYTES, "a CA file (a few certificates)")
    except ValueError as e:
        raise CertificateError(ca_file.key, str(e)) from None
    except RepoFileError as e:
        raise CertificateError(ca_file.key, f"{ca_file.written!r}: {e.reason}") from None
    try:
        return parse(data, ca_file)
    except ValueError as e:
        raise CertificateError(ca_file.key, f"{ca_file.written!r}: {e}") from None


# What cryptography raises on a certificate it cannot make sense of (DuplicateExtension is no ValueError).
_PARSE_ERRORS = (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def parse(data: bytes, ca_file: CaFile) -> list[CaCertificate]:
    """The certificates in PEM text; ValueError saying which block is wrong and how."""
    blocks = _pem_blocks(data)
    out = []
    for i, der in enumerate(blocks, 1):
        where = "" if len(blocks) == 1 else f"certificate {i} of {len(blocks)}: "
        try:
            cert = x509.load_der_x509_certificate(der)
            # cryptography parses extensions and names lazily: a duplicate extension or a malformed
            # name raises only here, with exceptions of its own
            problem = _not_a_ca(cert)
            subject = _subject(cert)
            not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        except _PARSE_ERRORS as e:
            raise ValueError(f"{where}not a valid X.509 certificate ({type(e).__name__}: {e})") from None
        if problem:
            raise ValueError(f"{where}{problem} ({subject})")
        out.append(CaCertificate(
            source=ca_file.written, key=ca_file.key, org_wide=ca_file.org_wide, index=i, count=len(blocks),
            pem=cert.public_bytes(serialization.Encoding.PEM), sha256=hashlib.sha256(der).hexdigest(),
            subject=subject, not_before=not_before, not_after=not_after))
    return out


def _pem_blocks(data: bytes) -> list[bytes]:
    """The DER bytes of each CERTIFICATE block. Text around the blocks (comments, `openssl x509 -text`
    output) is allowed; a private key, another kind of block or a broken block is not."""
    if b"\0" in data or not _BEGIN.search(data):
        if data[:1] == b"\x30":  # an ASN.1 SEQUENCE: a DER certificate
            raise ValueError("is DER, not PEM; convert it: openssl x509 -inform der -in FILE -out FILE.pem")
        raise ValueError("holds no PEM certificate (expected -----BEGIN CERTIFICATE----- ... "
                         "-----END CERTIFICATE-----)")
    if len(_BEGIN.findall(data)) != len(_BLOCK.findall(data)):
        raise ValueError("has a PEM block without its matching -----END ...----- line")
    out = []
    for i, match in enumerate(_BLOCK.finditer(data), 1):
        label = match[1].decode()
        if "PRIVATE KEY" in label:
            raise ValueError(f"block {i} is a {label}: never commit a private key; keep only the CA certificate")
        if label != "CERTIFICATE":
            raise ValueError(f"block {i} is a {label}, not a CERTIFICATE")
        try:
            out.append(base64.b64decode(b"".join(match[2].split()), validate=True))
        except binascii.Error:
            raise ValueError(f"block {i} is not valid base64") from None
    return out


def _not_a_ca(cert: x509.Certificate) -> str:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "is not a CA certificate: it has no basicConstraints extension (a CA needs CA:TRUE)"
    except ValueError as e:  # a malformed extension
        return f"has an unreadable extension ({e})"
    if not constraints.ca:
        return "is not a CA certificate: basicConstraints says CA:FALSE (a server or client certificate?)"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "is not a CA certificate: it has no keyUsage extension (a CA needs keyCertSign)"
    if not usage.key_cert_sign:
        return "is not a CA certificate: its keyUsage lacks keyCertSign"
    return ""


def _subject(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()
    except ValueError:
        return "subject unreadable"


# --- dates ------------------------------------------------------------------------------------------

def date_findings(cert: CaCertificate, now: datetime, warning_days: int) -> list[tuple[str, str]]:
    """(severity, message) for a certificate that is expired, not yet valid, or expires soon."""
    what = f"{cert.where} ({cert.subject})"
    if now > cert.not_after:
        return [(ERROR, f"{what} expired on {cert.not_after:%Y-%m-%d}; replace it with the CA's current "
                        "certificate, or remove it")]
    if now < cert.not_before:
        return [(ERROR, f"{what} is not valid before {cert.not_before:%Y-%m-%d %H:%M} UTC; images would "
                        "not trust it until then")]
    days = (cert.not_after - now).days
    if days < warning_days:
        return [(WARNING, f"{what} expires on {cert.not_after:%Y-%m-%d}, in {days} days (warning window: "
                          f"policy.certificates_warning_days = {warning_days}); add its successor now so every "
                          "image trusts it before this one expires")]
    return []


# --- what one image trusts ----------------------------------------------------------------------

def for_image(m: Manifest, settings: Settings, now: datetime | None = None) -> list[CaCertificate]:
    """The CA certificates one image trusts, in listed order, without repeats (by fingerprint).

    Raises ConfigError for a bad org-wide file (factory.yaml) and CertificateError for a bad file of
    the manifest (its ``key`` says which), so that the message points at the right file.
    """
    now = now or datetime.now(UTC)
    out: dict[str, CaCertificate] = {}
    for ca_file in m.certificates:
        try:
            certs = read(settings.root, ca_file)
            errors = [msg for cert in certs for sev, msg in date_findings(cert, now, 0) if sev == ERROR]
            if errors:
                raise CertificateError(ca_file.key, errors[0])
        except CertificateError as e:
            if ca_file.org_wide:
                raise ConfigError(f"{CONFIG_FILE}: {e.key}: {e.reason}", hint="docs/certificates.md") from None
            raise
        for cert in certs:
            out.setdefault(cert.sha256, cert)
    return list(out.values())


def context_names(certs: Iterable[CaCertificate]) -> list[str]:
    """File names in the build context, one per certificate: ``<NN>-<stem>[-<k>].crt``. NN keeps
    the listed order; the stem comes from the file name, reduced to [a-z0-9._-] so that it is safe
    in a Dockerfile and a shell; k is the position in a file holding several."""
    names = []
    for n, cert in enumerate(certs, 1):
        stem = re.sub(r"[^a-z0-9._-]+", "-", Path(cert.source).stem.lower()).strip("-._") or "ca"
        suffix = f"-{cert.index}" if cert.count > 1 else ""
        names.append(f"{n:02d}-{stem[:60]}{suffix}.crt")
    return names


# --- factory validate -------------------------------------------------------------------------------

def findings(ca_files: Iterable[CaFile], root: Path, now: datetime, warning_days: int) -> list[Finding]:
    out = []
    for ca_file in ca_files:
        try:
            certs = read(root, ca_file)
        except CertificateError as e:
            out.append(Finding(ERROR, ca_file, e.reason))
            continue
        out += [Finding(sev, ca_file, msg) for cert in certs for sev, msg in date_findings(cert, now, warning_days)]
    return out


def problems(catalog: Mapping[str, Manifest], settings: Settings, now: datetime | None = None) -> list[Problem]:
    """Every problem with the listed CA files, as ``factory validate`` prints them: the org-wide ones
    once, against factory.yaml; a manifest's own against its file and line."""
    now = now or datetime.now(UTC)
    days = settings.policy.certificates_warning_days
    org = [CaFile(settings.root / w, w, f"certificates.{i}", True) for i, w in enumerate(settings.certificates)]
    out = [Problem(str(settings.root / CONFIG_FILE), None, f.ca_file.key, f.message, f.severity)
           for f in findings(org, settings.root, now, days)]
    for m in catalog.values():
        own = [c for c in m.certificates if not c.org_wide]
        out += [Problem(str(m.path), m.line_of(f.ca_file.key), f.ca_file.key, f.message, f.severity)
                for f in findings(own, settings.root, now, days)]
    return out


# --- what an image's bundle holds (the image tests) ----------------------------------------------

def bundle_fingerprints(data: bytes) -> set[str]:
    """SHA-256 fingerprints of every certificate in a PEM bundle. Blocks that do not decode are
    skipped: this reads what an image has, it does not judge it."""
    found = set()
    for match in _BLOCK.finditer(data):
        if match[1] != b"CERTIFICATE":
            continue
        try:
            found.add(hashlib.sha256(base64.b64decode(b"".join(match[2].split()), validate=True)).hexdigest())
        except binascii.Error:
            continue
    return found


def fingerprints(ca_files: Iterable[CaFile]) -> tuple[str, ...]:
    """The fingerprints of the certificates in the listed files, read from their absolute paths
    (for the image tests, after the renderer has checked them). Raises CertificateError."""
    out: dict[str, None] = {}
    for ca_file in ca_files:
        # path is <root>/<written>: the root is what is left when the written parts are taken away
        root = ca_file.path.parents[len(Path(ca_file.written).parts) - 1]
        try:
            data = repofs.read_bytes(ca_file.path, root, MAX_FILE_BYTES, "a CA file (a few certificates)")
        except RepoFileError as e:
            raise CertificateError(ca_file.key, f"{ca_file.written!r}: {e.reason}") from None
        try:
            certs = parse(data, ca_file)
        except ValueError as e:
            raise CertificateError(ca_file.key, f"{ca_file.written!r}: {e}") from None
        out.update(dict.fromkeys(c.sha256 for c in certs))
    return tuple(out)
