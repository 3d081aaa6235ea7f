"""Bounded downloads: a timeout per request, a byte limit per file read in chunks, bounded decompression.

Every byte the archive code reads from a mirror comes through ``Downloader.get``, which counts requests and
bytes in the run's ``FetchStats``.
"""

from __future__ import annotations

import lzma
import zlib

import requests

from factory.archive.types import FetchStats
from factory.core.errors import ArchiveFormatError, ArchiveUnreachable
from factory.spec.config import ArchiveLimits

CHUNK = 1024 * 1024


class Downloader:
    """GETs files through ``session`` within ``limits``; an HTTP error, a timeout or an oversized body is
    an ``ArchiveUnreachable`` (exit 2)."""

    def __init__(self, session: requests.Session, limits: ArchiveLimits, stats: FetchStats) -> None:
        self.session, self.limits, self.stats = session, limits, stats

    def get(self, url: str) -> bytes:
        self.stats.requests += 1
        self.stats.urls.append(url)
        try:
            with self.session.get(url, stream=True, timeout=self.limits.timeout) as response:
                if response.status_code != 200:
                    raise ArchiveUnreachable(f"HTTP {response.status_code} {response.reason}", url=url,
                                             hint="check the mirror in factory.yaml `archives:`")
                return self._read(response, url)
        except requests.RequestException as e:
            raise ArchiveUnreachable(f"mirror unreachable: {e}", url=url,
                                     hint="check the network and the mirror in factory.yaml `archives:`") from e

    def _read(self, response: requests.Response, url: str) -> bytes:
        limit = self.limits.max_download
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ArchiveUnreachable(f"file of {declared} bytes is over the limit of {limit} bytes", url=url,
                                     hint="raise `archives.max_download` in factory.yaml if the mirror is right")
        parts: list[bytes] = []
        size = 0
        for chunk in response.iter_content(CHUNK):
            size += len(chunk)
            self.stats.bytes += len(chunk)
            if size > limit:
                raise ArchiveUnreachable(f"more than the limit of {limit} bytes", url=url,
                                         hint="raise `archives.max_download` in factory.yaml if the mirror is right")
            parts.append(chunk)
        return b"".join(parts)


def decompress(data: bytes, name: str, limit: int) -> bytes:
    """``data`` unpacked by the compression its file ``name`` ends in (.xz, .gz or none), to at most
    ``limit`` bytes; more is an ``ArchiveFormatError`` (a decompression bomb or a wrong limit)."""
    if name.endswith(".xz"):
        return _bounded(lzma.LZMADecompressor(), data, name, limit)
    if name.endswith(".gz"):
        return gunzip(data, name, limit)
    if len(data) > limit:
        raise _too_big(name, limit)
    return data


def gunzip(data: bytes, name: str, limit: int) -> bytes:
    """The first gzip member of ``data``, at most ``limit`` bytes unpacked."""
    return _bounded(zlib.decompressobj(16 + zlib.MAX_WBITS), data, name, limit)


def _bounded(decoder: lzma.LZMADecompressor | zlib._Decompress, data: bytes, name: str, limit: int) -> bytes:
    try:
        out = decoder.decompress(data, limit + 1)
    except (lzma.LZMAError, zlib.error) as e:
        raise ArchiveFormatError(f"{name}: not valid compressed data: {e}") from e
    if len(out) > limit:
        raise _too_big(name, limit)
    if not decoder.eof:
        raise ArchiveFormatError(f"{name}: compressed data is truncated")
    return out


def _too_big(name: str, limit: int) -> ArchiveFormatError:
    return ArchiveFormatError(f"{name}: unpacks to more than the limit of {limit} bytes",
                              hint="raise `archives.max_unpacked` in factory.yaml if the mirror is right")
