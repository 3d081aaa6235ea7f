"""Alpine's index: verify the RSA signature of ``APKINDEX.tar.gz`` and parse the ``APKINDEX`` in it.

APKINDEX.tar.gz is two concatenated gzip streams: first a tar holding one ``.SIGN.RSA.<key>`` (SHA1) or
``.SIGN.RSA256.<key>`` (SHA256) member, the PKCS#1 v1.5 signature over the second stream's *compressed*
bytes; then the control tar with ``DESCRIPTION`` and ``APKINDEX``. ``<key>`` names a public key file in
``keys_dir`` (apk's /etc/apk/keys). The index is a list of blank-line separated records of ``X:value``
lines: ``P`` name, ``V`` version, ``A`` architecture, ``o`` origin (the source package).
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from factory.archive.download import gunzip
from factory.archive.types import Package, Suite
from factory.core.errors import ArchiveFormatError, ArchiveSignatureError

_SIGNATURES: dict[str, type[hashes.HashAlgorithm]] = {".SIGN.RSA256.": hashes.SHA256, ".SIGN.RSA.": hashes.SHA1}


@dataclass(frozen=True)
class ApkIndex:
    """The verified content of an APKINDEX.tar.gz: the APKINDEX text and the newest member time."""

    text: bytes
    date: datetime | None
    key: str


def split_streams(data: bytes, url: str) -> tuple[bytes, bytes]:
    """(signature gzip stream, control gzip stream) of an APKINDEX.tar.gz."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        decoder.decompress(data, 1024 * 1024)  # the signature tar is a few KiB; the bound is generous
    except zlib.error as e:
        raise ArchiveFormatError(f"APKINDEX.tar.gz is not gzip data: {e}", url=url) from e
    if not decoder.eof or not decoder.unused_data:
        raise ArchiveFormatError("APKINDEX.tar.gz has no signature stream before its index: apk would refuse "
                                 "an unsigned index", url=url)
    control = decoder.unused_data
    return data[: len(data) - len(control)], control


def verify(data: bytes, keys_dir: Path, limit: int, url: str) -> ApkIndex:
    """Check the signature of APKINDEX.tar.gz ``data`` with the keys in ``keys_dir`` and return its index.
    A missing key or a signature that does not verify is an ``ArchiveSignatureError``."""
    signature_stream, control = split_streams(data, url)
    name, signature = _signature(gunzip(signature_stream, "signature", limit), url)
    prefix = next(p for p in _SIGNATURES if name.startswith(p))
    key_name = name[len(prefix):]
    key_file = keys_dir / key_name
    if "/" in key_name or not key_name or not key_file.is_file():
        raise ArchiveSignatureError(f"APKINDEX.tar.gz is signed by {key_name!r}, which is not in {keys_dir}", url=url,
                                    hint="put the distro's public keys in `archives.alpine.keys_dir` (apk's "
                                    "/etc/apk/keys)")
    public = _public_key(key_file, url)
    try:
        public.verify(signature, control, padding.PKCS1v15(), _SIGNATURES[prefix]())
    except InvalidSignature as e:
        raise ArchiveSignatureError(f"APKINDEX.tar.gz signature does not verify with {key_file}", url=url,
                                    hint="the mirror is compromised or the index was altered") from e
    text, date = _control(gunzip(control, "APKINDEX.tar.gz", limit), url)
    return ApkIndex(text, date, key_name)


def _signature(tar: bytes, url: str) -> tuple[str, bytes]:
    for member, content in _members(tar, url):
        if member.name.startswith(tuple(_SIGNATURES)):
            return member.name, content
    raise ArchiveSignatureError("APKINDEX.tar.gz carries no .SIGN.RSA signature", url=url)


def _control(tar: bytes, url: str) -> tuple[bytes, datetime | None]:
    text: bytes | None = None
    newest = 0
    for member, content in _members(tar, url):
        newest = max(newest, int(member.mtime))
        if member.name == "APKINDEX":
            text = content
    if text is None:
        raise ArchiveFormatError("APKINDEX.tar.gz has no APKINDEX member", url=url)
    return text, datetime.fromtimestamp(newest, UTC) if newest else None


def _members(tar: bytes, url: str) -> Iterator[tuple[tarfile.TarInfo, bytes]]:
    """The regular files of an (unterminated, as apk writes it) tar."""
    try:
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as archive:
            for member in archive:
                handle = archive.extractfile(member) if member.isfile() else None
                if handle is not None:
                    yield member, handle.read()
    except tarfile.TarError as e:
        raise ArchiveFormatError(f"APKINDEX.tar.gz: not a tar archive: {e}", url=url) from e


def _public_key(path: Path, url: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except ValueError as e:
        raise ArchiveSignatureError(f"{path} is not a PEM public key: {e}", url=url) from e
    if not isinstance(key, rsa.RSAPublicKey):
        raise ArchiveSignatureError(f"{path} is not an RSA public key", url=url)
    return key


def parse_apkindex(text: bytes, suite: Suite, url: str = "") -> Iterator[Package]:
    """Every record of an APKINDEX as a ``Package`` (origin ``o:`` as the source, the name when absent)."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArchiveFormatError(f"APKINDEX is not UTF-8 text: {e}", url=url) from e
    for number, record in enumerate(decoded.split("\n\n"), 1):
        fields: dict[str, str] = {}
        for line in record.splitlines():
            key, sep, value = line.partition(":")
            if not line:
                continue
            if not sep or len(key) != 1:
                raise ArchiveFormatError(f"APKINDEX record {number}: {line[:80]!r} is not an `X:value` line", url=url)
            fields.setdefault(key, value)
        if not fields:
            continue
        if not all(fields.get(k) for k in "PVA"):
            raise ArchiveFormatError(f"APKINDEX record {number} lacks P:, V: or A:", url=url)
        yield Package(fields["P"], fields["V"], fields["A"], fields.get("o") or fields["P"], suite)
