"""Archive indexes with the real gpgv: the invented Ubuntu mirror's InRelease files (signed by a test key,
see tests/data/archive/make_fixtures.py), tampered and wrong-keyring cases, and the real Debian archive
(bookworm, bookworm-updates, bookworm-security for amd64 and arm64). No docker needed."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import requests

from factory.adapters.tools import Runner
from factory.archive import deb
from factory.archive.fetch import Archives
from factory.core.errors import EXIT_ENVIRONMENT, ArchiveSignatureError, ArchiveUnreachable
from factory.spec.config import default_archives
from tests.unit.archive_fakes import UBUNTU, UBUNTU_MIRRORS, FileMirror, session_for, ubuntu_settings

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
JAMMY = UBUNTU / "mirror/dists/jammy/InRelease"


def test_gpgv_verifies_the_test_mirror_and_returns_only_the_signed_text():
    signed = deb.verify_inrelease(Runner(), UBUNTU / "keyring.gpg", JAMMY.read_bytes(), "u")
    assert signed.startswith(b"Origin: Ubuntu\n")
    assert b"PGP" not in signed
    assert deb.parse_release(signed, "u").codename == "jammy"


def test_ubuntu_index_through_gpgv():
    run = Archives(ubuntu_settings(), session_for(FileMirror(UBUNTU_MIRRORS)), Runner(), clock=lambda: NOW)
    for arch in ("amd64", "arm64"):
        index = run.index("ubuntu", "jammy", arch)
        assert index.candidate("libssl3").suite.name == "jammy-security"
        assert index.candidate("tzdata").suite.name == "jammy-updates"
    assert run.stats.requests == 2 * (3 + 3 * 2)


def test_tampered_inrelease_fails_with_exit_2():
    with pytest.raises(ArchiveSignatureError, match="gpgv reports BADSIG") as caught:
        deb.verify_inrelease(Runner(), UBUNTU / "keyring.gpg", (UBUNTU / "tampered/InRelease").read_bytes(), "u")
    assert caught.value.exit_code == EXIT_ENVIRONMENT


def test_tampered_inrelease_on_the_mirror_fails_the_index():
    url = "http://ubuntu.test/ubuntu/dists/jammy/InRelease"
    adapter = FileMirror(UBUNTU_MIRRORS, replace={url: (UBUNTU / "tampered/InRelease").read_bytes()})
    run = Archives(ubuntu_settings(), session_for(adapter), Runner(), clock=lambda: NOW)
    with pytest.raises(ArchiveSignatureError) as caught:
        run.index("ubuntu", "jammy", "amd64")
    assert caught.value.url == url


def test_wrong_keyring_fails():
    with pytest.raises(ArchiveSignatureError, match="no good signature by a key in the keyring"):
        deb.verify_inrelease(Runner(), UBUNTU / "wrong-keyring.gpg", JAMMY.read_bytes(), "u")


def test_the_debian_keyring_does_not_verify_the_test_mirror():
    with pytest.raises(ArchiveSignatureError):
        deb.verify_inrelease(Runner(), default_archives().debian.keyring, JAMMY.read_bytes(), "u")


def test_unsigned_text_fails():
    with pytest.raises(ArchiveSignatureError):
        deb.verify_inrelease(Runner(), UBUNTU / "keyring.gpg", b"Origin: Ubuntu\nCodename: jammy\n", "u")


def test_unreachable_mirror_is_a_clear_exit_2_error():
    base = default_archives()
    settings = replace(base, debian=replace(base.debian, mirror="http://127.0.0.1:9/debian",
                                            security_mirror="http://127.0.0.1:9/debian-security"),
                       limits=replace(base.limits, timeout=5))
    with requests.Session() as session:
        run = Archives(settings, session, Runner())
        where = r"http://127\.0\.0\.1:9/debian/dists/bookworm/InRelease"
        with pytest.raises(ArchiveUnreachable, match=where) as caught:
            run.index("debian", "bookworm", "amd64")
    assert caught.value.exit_code == EXIT_ENVIRONMENT
    assert "mirror unreachable" in str(caught.value)


def test_real_debian_bookworm_amd64_and_arm64():
    with requests.Session() as session:
        run = Archives(default_archives(), session, Runner())
        start = time.monotonic()
        indexes = [run.index("debian", "bookworm", arch) for arch in ("amd64", "arm64")]
        seconds = time.monotonic() - start
        fetched = (run.stats.requests, run.stats.bytes)
        for index in indexes:
            assert [s.name for s in index.suites()] == ["bookworm", "bookworm-updates", "bookworm-security"]
            security = index.suite("bookworm-security")
            assert security is not None and security.date is not None
            assert security.mirror == "http://security.debian.org/debian-security"
            for name in ("apt", "libc6", "tzdata", "base-files"):
                assert index.candidate(name) is not None, name
            assert index.candidate("tzdata").arch == "all"
            assert {p.suite.name for p in index.candidates("apt")} >= {"bookworm"}
            assert len(index.names()) > 50_000
        # three InRelease files shared by both architectures, then one Packages.xz per suite and arch
        assert run.stats.requests == 3 + 3 * 2
        assert len(set(run.stats.urls)) == len(run.stats.urls)
        # asked again: nothing fetched
        assert run.index("debian", "bookworm", "amd64") is indexes[0]
        assert run.index_for("debian", "bookworm", "linux/arm64") is indexes[1]
        assert (run.stats.requests, run.stats.bytes) == fetched
        print(f"\nbookworm x3 suites x2 arches: {run.stats.requests} requests, {run.stats.bytes} bytes, {seconds:.1f}s")
