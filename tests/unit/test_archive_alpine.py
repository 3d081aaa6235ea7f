"""Alpine's APKINDEX.tar.gz: the RSA signature (SHA1 .SIGN.RSA. and SHA256 .SIGN.RSA256.), a tampered
index, missing keys, the APKINDEX format, and the index over main and community."""

from __future__ import annotations

import gzip
import shutil
from datetime import UTC, datetime

import pytest

from factory.adapters.tools import Runner
from factory.archive import apk
from factory.archive.fetch import Archives
from factory.archive.types import Suite
from factory.core.errors import EXIT_ENVIRONMENT, ArchiveFormatError, ArchiveSignatureError
from tests.unit.archive_fakes import ALPINE, ALPINE_MIRRORS, FileMirror, alpine_settings, session_for

MAIN = ALPINE / "mirror/v3.20/main/x86_64/APKINDEX.tar.gz"
COMMUNITY = ALPINE / "mirror/v3.20/community/x86_64/APKINDEX.tar.gz"
SUITE = Suite("alpine", "v3.20", "v3.20/main", "security", None, "https://alpine.test/alpine")


def test_sha1_signature_verifies_and_yields_the_index():
    verified = apk.verify(MAIN.read_bytes(), ALPINE / "keys", 10**6, "u")
    assert verified.key == "factory-test-5f3a0c1e.rsa.pub"
    assert verified.date == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert b"P:busybox\nV:1.36.1-r29\n" in verified.text


def test_sha256_signature_verifies():
    signature, _ = apk.split_streams(COMMUNITY.read_bytes(), "u")
    assert b".SIGN.RSA256.factory-test" in gzip.decompress(signature)
    assert b"P:jq" in apk.verify(COMMUNITY.read_bytes(), ALPINE / "keys", 10**6, "u").text


def test_tampered_index_fails():
    with pytest.raises(ArchiveSignatureError, match="signature does not verify") as caught:
        apk.verify((ALPINE / "tampered/APKINDEX.tar.gz").read_bytes(), ALPINE / "keys", 10**6, "u")
    assert caught.value.exit_code == EXIT_ENVIRONMENT


def test_signature_by_another_key_of_the_same_name_fails(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    (tmp_path / "factory-test-5f3a0c1e.rsa.pub").write_bytes(
        other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ArchiveSignatureError, match="does not verify"):
        apk.verify(MAIN.read_bytes(), tmp_path, 10**6, "u")


def test_missing_key_is_named(tmp_path):
    with pytest.raises(ArchiveSignatureError, match=r"signed by 'factory-test-5f3a0c1e\.rsa\.pub', which is not in"):
        apk.verify(MAIN.read_bytes(), tmp_path, 10**6, "u")


def test_key_that_is_not_pem_is_named(tmp_path):
    (tmp_path / "factory-test-5f3a0c1e.rsa.pub").write_text("not a key")
    with pytest.raises(ArchiveSignatureError, match="is not a PEM public key"):
        apk.verify(MAIN.read_bytes(), tmp_path, 10**6, "u")


def test_unsigned_index_is_refused():
    _, control = apk.split_streams(MAIN.read_bytes(), "u")
    with pytest.raises(ArchiveFormatError, match="no signature stream"):
        apk.verify(control, ALPINE / "keys", 10**6, "u")
    with pytest.raises(ArchiveFormatError, match="not gzip data"):
        apk.verify(b"plain text", ALPINE / "keys", 10**6, "u")


def test_unpacked_size_is_bounded():
    with pytest.raises(ArchiveFormatError, match="more than the limit of 100 bytes"):
        apk.verify(MAIN.read_bytes(), ALPINE / "keys", 100, "u")


def test_apkindex_records():
    text = apk.verify(MAIN.read_bytes(), ALPINE / "keys", 10**6, "u").text
    packages = {p.name: p for p in apk.parse_apkindex(text, SUITE)}
    assert packages["ssl_client"].source == "busybox"  # o: origin
    assert (packages["libssl3"].version, packages["libssl3"].arch) == ("3.3.2-r0", "x86_64")
    assert packages["alpine-baselayout-data"].arch == "noarch"
    assert packages["musl"].suite is SUITE


def test_apkindex_origin_defaults_to_the_name_and_bad_lines_are_named():
    (only,) = apk.parse_apkindex(b"P:zlib\nV:1.3.1-r1\nA:x86_64\n\n", SUITE)
    assert only.source == "zlib"
    with pytest.raises(ArchiveFormatError, match="record 2: 'garbage' is not an `X:value` line"):
        list(apk.parse_apkindex(b"P:a\nV:1-r0\nA:noarch\n\ngarbage\n", SUITE))
    with pytest.raises(ArchiveFormatError, match="record 1 lacks P:, V: or A:"):
        list(apk.parse_apkindex(b"P:a\nA:noarch\n", SUITE))


def test_index_over_main_and_community_needs_no_process():
    run = Archives(alpine_settings(), session_for(FileMirror(ALPINE_MIRRORS)), Runner(only_path=()))
    index = run.index_for("alpine", "v3.20", "linux/amd64")
    assert index.arch == "x86_64"
    assert [(s.name, s.kind) for s in index.suites()] == [("v3.20/main", "security"), ("v3.20/community", "security")]
    assert index.candidate("libcrypto3").version == "3.3.2-r0"
    assert index.candidate("jq").suite.name == "v3.20/community"
    assert index.candidate("py3-setuptools").arch == "noarch"
    assert run.stats.requests == 2
    assert run.index("alpine", "v3.20", "x86_64") is index
    assert run.stats.requests == 2


def test_tampered_index_on_the_mirror_fails_the_whole_index(tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(ALPINE / "mirror", mirror)
    shutil.copy(ALPINE / "tampered/APKINDEX.tar.gz", mirror / "v3.20/main/x86_64/APKINDEX.tar.gz")
    run = Archives(alpine_settings(), session_for(FileMirror({"https://alpine.test/alpine": mirror})), Runner())
    with pytest.raises(ArchiveSignatureError) as caught:
        run.index("alpine", "v3.20", "x86_64")
    assert caught.value.url == "https://alpine.test/alpine/v3.20/main/x86_64/APKINDEX.tar.gz"
