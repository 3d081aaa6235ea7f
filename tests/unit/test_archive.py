"""apt archive indexes: parsing Packages and Release in their real formats, hash checks, size bounds,
candidate selection across suites, fetched once per run, settings. gpgv is replaced by a stand-in here
(no processes in unit tests); tests/integration/test_archive.py verifies the same fixtures with gpgv."""

from __future__ import annotations

import gzip
import json
import lzma
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from factory.archive import deb, download
from factory.archive.fetch import Archives, arch_for
from factory.archive.types import ArchiveIndex, FetchStats, Package, Suite
from factory.core.errors import (
    EXIT_ENVIRONMENT,
    ArchiveError,
    ArchiveFormatError,
    ArchiveHashMismatch,
    ArchiveSignatureError,
    ArchiveUnreachable,
    ConfigError,
)
from factory.spec import config
from factory.spec.config import ArchiveLimits, ArchiveSettings, default_archives
from tests.unit.archive_fakes import DATA, UBUNTU, UBUNTU_MIRRORS, FakeGpgv, FileMirror, session_for, ubuntu_settings

SECURITY = Suite("debian", "bookworm", "bookworm-security", "security", None, "http://deb.debian.org/debian")
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def archives(adapter: FileMirror | None = None, settings: ArchiveSettings | None = None, **kw) -> Archives:
    adapter = adapter or FileMirror(UBUNTU_MIRRORS)
    return Archives(settings or ubuntu_settings(), session_for(adapter), FakeGpgv(), clock=lambda: NOW, **kw)


# --- parsing ------------------------------------------------------------------------------------------


def test_packages_parse_name_version_arch_and_source():
    packages = {p.name: p for p in deb.parse_packages((DATA / "debian/Packages").read_bytes(), SECURITY)}
    assert set(packages) == {"apt", "libc6", "libgnutls30", "tzdata"}
    assert (packages["apt"].version, packages["apt"].arch, packages["apt"].source) == ("2.6.1", "amd64", "apt")
    assert packages["libc6"].source == "glibc"
    # "Source: gnutls28 (3.7.9-2+deb12u3)" on a binNMU: the name, without the source version
    assert (packages["libgnutls30"].source, packages["libgnutls30"].version) == ("gnutls28", "3.7.9-2+deb12u3+b1")
    assert packages["tzdata"].arch == "all"
    assert packages["tzdata"].suite is SECURITY


def test_packages_compressed_forms_parse_alike():
    plain = (DATA / "debian/Packages").read_bytes()
    unpacked = download.decompress((DATA / "debian/Packages.xz").read_bytes(), "Packages.xz", 10**6)
    assert unpacked == plain
    assert download.decompress(gzip.compress(plain), "Packages.gz", 10**6) == plain


def test_packages_paragraph_without_version_is_a_format_error():
    with pytest.raises(ArchiveFormatError, match="without Package, Version and Architecture"):
        list(deb.parse_packages(b"Package: x\nArchitecture: all\n", SECURITY, "http://m/Packages"))


def test_release_parse_real_format():
    info = deb.parse_release((DATA / "debian/Release").read_bytes(), "http://m/InRelease")
    assert (info.suite, info.codename) == ("oldstable-security", "bookworm-security")
    assert info.date == datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    assert info.valid_until == datetime(2026, 12, 8, 6, 0, tzinfo=UTC)
    entry = info.files["main/binary-amd64/Packages.xz"]
    assert entry.size == len((DATA / "debian/Packages.xz").read_bytes())
    assert deb.packages_path(info, "main", "amd64", "u").name == "main/binary-amd64/Packages.xz"  # .xz preferred


def test_release_without_sha256_is_refused():
    with pytest.raises(ArchiveFormatError, match="no SHA256 list"):
        deb.parse_release(b"Suite: stable\nCodename: bookworm\nMD5Sum:\n 00 1 main/x\n", "u")


def test_release_checks_suite_and_valid_until():
    info = deb.parse_release((DATA / "debian/Release").read_bytes(), "u")
    deb.check_release(info, "bookworm-security", "bookworm", "u", NOW)
    with pytest.raises(ArchiveSignatureError, match="not 'bookworm-updates'"):
        deb.check_release(info, "bookworm-updates", "trixie", "u", NOW)
    with pytest.raises(ArchiveSignatureError, match="expired"):
        deb.check_release(info, "bookworm-security", "bookworm", "u", datetime(2026, 12, 9, tzinfo=UTC))


def test_release_lists_no_packages_for_an_unknown_arch():
    info = deb.parse_release((DATA / "debian/Release").read_bytes(), "u")
    with pytest.raises(ArchiveHashMismatch, match="no main/binary-riscv64/Packages"):
        deb.packages_path(info, "main", "riscv64", "u")


def test_hash_mismatch_is_detected():
    info = deb.parse_release((DATA / "debian/Release").read_bytes(), "u")
    good = (DATA / "debian/Packages.xz").read_bytes()
    deb.check_hash(good, info.files["main/binary-amd64/Packages.xz"], "u")
    bad = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(ArchiveHashMismatch, match="but the signed InRelease lists"):
        deb.check_hash(bad, info.files["main/binary-amd64/Packages.xz"], "u")


# --- bounds --------------------------------------------------------------------------------------------


def test_download_over_the_byte_limit_is_refused():
    adapter = FileMirror(UBUNTU_MIRRORS)
    stats = FetchStats()
    small = download.Downloader(session_for(adapter), ArchiveLimits(max_download=100), stats)
    with pytest.raises(ArchiveUnreachable, match="over the limit of 100 bytes"):
        small.get("http://ubuntu.test/ubuntu/dists/jammy/InRelease")


def test_download_without_content_length_is_bounded_while_reading():
    class NoLength(FileMirror):
        def send(self, request, **kw):
            response = super().send(request, **kw)
            del response.headers["Content-Length"]
            return response

    stats = FetchStats()
    small = download.Downloader(session_for(NoLength(UBUNTU_MIRRORS)), ArchiveLimits(max_download=100), stats)
    with pytest.raises(ArchiveUnreachable, match="more than the limit of 100 bytes"):
        small.get("http://ubuntu.test/ubuntu/dists/jammy/InRelease")


def test_decompression_is_bounded():
    bomb = lzma.compress(b"\0" * 10**6)
    with pytest.raises(ArchiveFormatError, match="unpacks to more than the limit of 1000 bytes"):
        download.decompress(bomb, "Packages.xz", 1000)
    with pytest.raises(ArchiveFormatError, match="more than the limit"):
        download.decompress(gzip.compress(b"\0" * 10**6), "Packages.gz", 1000)
    with pytest.raises(ArchiveFormatError, match="truncated"):
        download.decompress(bomb[: len(bomb) // 2], "Packages.xz", 10**7)


# --- the index across suites ------------------------------------------------------------------------------


def test_candidates_across_suites_and_the_one_apt_picks():
    index = archives().index("ubuntu", "jammy", "amd64")
    assert [s.name for s in index.suites()] == ["jammy", "jammy-updates", "jammy-security"]
    assert [s.kind for s in index.suites()] == ["release", "updates", "security"]
    assert index.suite("jammy-security").date == datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    assert index.suite("jammy-security").mirror == "http://security.ubuntu.test/ubuntu"

    ssl = index.candidate("libssl3")
    assert (ssl.version, ssl.suite.name, ssl.source) == ("3.0.2-0ubuntu1.15", "jammy-security", "openssl")
    assert [(p.version, p.suite.kind) for p in index.candidates("libssl3")] == [
        ("3.0.2-0ubuntu1.15", "security"), ("3.0.2-0ubuntu1", "release")]
    # updates beats an older security version; Architecture: all is included
    tz = index.candidate("tzdata")
    assert (tz.version, tz.suite.name, tz.arch) == ("2024a-0ubuntu0.22.04", "jammy-updates", "all")
    assert [p.version for p in index.candidates("tzdata")] == [
        "2024a-0ubuntu0.22.04", "2023c-0ubuntu0.22.04.1", "2022a-0ubuntu1"]
    assert index.candidate("libfoo1").version == "1:1.0-1"  # the epoch wins over 2.0-1 in updates
    assert index.candidate("hello").version == "2.10-2ubuntu4.1"  # universe (a .gz index) is read too
    assert index.candidate("bash").suite.kind == "release"
    assert index.candidate("not-a-package") is None
    assert index.candidates("not-a-package") == []
    assert "openssl" in index.names()


def test_arm64_comes_from_the_ports_mirror():
    index = archives().index_for("ubuntu", "jammy", "linux/arm64")
    assert index.arch == "arm64"
    assert {s.mirror for s in index.suites()} == {"http://ports.ubuntu.test/ubuntu-ports"}
    assert index.candidate("libssl3").arch == "arm64"


def test_each_file_is_fetched_once_per_run():
    adapter = FileMirror(UBUNTU_MIRRORS)
    run = archives(adapter)
    first = run.index("ubuntu", "jammy", "amd64")
    requests_after_one = run.stats.requests
    assert requests_after_one == 3 + 3 * 2  # 3 InRelease, 2 components each
    assert run.index("ubuntu", "jammy", "amd64") is first
    assert run.stats.requests == requests_after_one
    assert len(run.stats.urls) == len(set(run.stats.urls)) == len(adapter.seen)


def test_stats_count_bytes_on_the_wire():
    run = archives()
    run.index("ubuntu", "jammy", "amd64")
    on_disk = sum(len((folder / url[len(prefix) + 1:]).read_bytes())
                  for url in run.stats.urls for prefix, folder in UBUNTU_MIRRORS.items() if url.startswith(prefix))
    assert run.stats.bytes == on_disk


def test_a_packages_file_not_matching_its_inrelease_is_a_hash_mismatch():
    url = "http://security.ubuntu.test/ubuntu/dists/jammy-security/main/binary-amd64/Packages.xz"
    tampered = lzma.compress(b"Package: libssl3\nVersion: 9.9-1\nArchitecture: amd64\n")
    with pytest.raises(ArchiveHashMismatch, match=r"main/binary-amd64/Packages\.xz") as caught:
        archives(FileMirror(UBUNTU_MIRRORS, replace={url: tampered})).index("ubuntu", "jammy", "amd64")
    assert caught.value.exit_code == EXIT_ENVIRONMENT
    assert caught.value.url == url


def test_a_bad_signature_is_an_exit_2_error():
    run = Archives(ubuntu_settings(), session_for(FileMirror(UBUNTU_MIRRORS)), FakeGpgv(good=False), clock=lambda: NOW)
    with pytest.raises(ArchiveSignatureError, match="gpgv reports BADSIG") as caught:
        run.index("ubuntu", "jammy", "amd64")
    assert caught.value.exit_code == EXIT_ENVIRONMENT


def test_a_missing_keyring_is_an_exit_2_error_before_gpgv():
    gpgv = FakeGpgv()
    run = Archives(ubuntu_settings(keyring=str(UBUNTU / "absent.gpg")), session_for(FileMirror(UBUNTU_MIRRORS)),
                   gpgv, clock=lambda: NOW)
    with pytest.raises(ArchiveSignatureError, match=r"absent\.gpg not found"):
        run.index("ubuntu", "jammy", "amd64")
    assert gpgv.calls == []


def test_an_expired_security_suite_is_refused():
    run = Archives(ubuntu_settings(), session_for(FileMirror(UBUNTU_MIRRORS)), FakeGpgv(),
                   clock=lambda: datetime(2100, 1, 2, tzinfo=UTC))
    with pytest.raises(ArchiveSignatureError, match="expired"):
        run.index("ubuntu", "jammy", "amd64")


def test_an_unreachable_mirror_is_an_exit_2_error_not_an_empty_index():
    with pytest.raises(ArchiveUnreachable, match="mirror unreachable") as caught:
        archives(FileMirror(UBUNTU_MIRRORS, fail=True)).index("ubuntu", "jammy", "amd64")
    assert caught.value.exit_code == EXIT_ENVIRONMENT
    assert isinstance(caught.value, ArchiveError)


def test_a_missing_suite_is_an_http_error():
    with pytest.raises(ArchiveUnreachable, match="HTTP 404"):
        archives().index("ubuntu", "noble", "amd64")


def test_an_architecture_the_release_lacks_is_named():
    with pytest.raises(ArchiveHashMismatch, match="no main/binary-s390x/Packages"):
        archives(settings=ubuntu_settings(ports_mirror="http://ubuntu.test/ubuntu")).index("ubuntu", "jammy", "s390x")


def test_arch_names_per_distro():
    platforms = ("linux/amd64", "linux/arm64", "linux/arm/v7")
    assert [arch_for("debian", p) for p in platforms] == ["amd64", "arm64", "armhf"]
    assert [arch_for("alpine", p) for p in platforms] == ["x86_64", "aarch64", "armv7"]


def test_index_of_orders_by_version_and_keeps_suite_order_on_ties():
    release = Suite("debian", "bookworm", "bookworm", "release", None, "m")
    security = Suite("debian", "bookworm", "bookworm-security", "security", None, "m")
    index = ArchiveIndex.of("debian", "bookworm", "amd64", [release, security], [
        Package("a", "1.0-1", "amd64", "a", release), Package("a", "1.0-1", "amd64", "a", security),
        Package("a", "1.0-1+deb12u1", "amd64", "a", security), Package("a", "1:0.9", "amd64", "a", release)])
    assert [(p.version, p.suite.name) for p in index.candidates("a")] == [
        ("1:0.9", "bookworm"), ("1.0-1+deb12u1", "bookworm-security"), ("1.0-1", "bookworm"),
        ("1.0-1", "bookworm-security")]


# --- settings --------------------------------------------------------------------------------------------


def _load(tmp_path, archives) -> ArchiveSettings:
    (tmp_path / "factory.yaml").write_text(json.dumps({"archives": archives}))  # JSON is YAML
    return config.load(tmp_path / "factory.yaml", environ={}).archives


def test_default_mirrors(tmp_path):
    settings = default_archives()
    assert settings.debian.mirror == "http://deb.debian.org/debian"
    assert settings.debian.security_mirror == "http://security.debian.org/debian-security"
    assert settings.debian.components == ("main",)
    assert settings.debian.keyring == Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    assert settings.ubuntu.mirrors_for("amd64") == ("http://archive.ubuntu.com/ubuntu", "http://security.ubuntu.com/ubuntu")
    assert settings.ubuntu.mirrors_for("arm64") == ("http://ports.ubuntu.com/ubuntu-ports",) * 2
    assert settings.ubuntu.components == ("main", "universe")
    assert settings.debian.mirrors_for("arm64")[0] == "http://deb.debian.org/debian"
    assert settings.alpine.mirror == "https://dl-cdn.alpinelinux.org/alpine"
    assert settings.alpine.repositories == ("main", "community")
    assert _load(tmp_path, {}) == settings


def test_settings_from_factory_yaml(tmp_path):
    (tmp_path / "keys").mkdir()
    settings = _load(tmp_path, {
        "debian": {"mirror": "https://mirror.example.org/debian/", "keyring": "keys/debian.gpg"},
        "alpine": {"keys_dir": "keys", "repositories": ["main"]},
        "timeout_seconds": 5, "max_download_bytes": 1000,
    })
    assert settings.debian.mirror == "https://mirror.example.org/debian"
    assert settings.debian.security_mirror == "http://security.debian.org/debian-security"
    assert settings.debian.keyring == (tmp_path / "keys" / "debian.gpg").resolve()
    assert settings.alpine.keys_dir == (tmp_path / "keys").resolve()
    assert settings.alpine.repositories == ("main",)
    assert (settings.limits.timeout, settings.limits.max_download) == (5.0, 1000)


@pytest.mark.parametrize(("data", "message"), [
    ({"debain": {}}, "archives.debain: unknown key 'debain'; did you mean 'debian'?"),
    ({"debian": {"mirors": "x"}}, "archives.debian.mirors: unknown key 'mirors'; did you mean 'mirror'?"),
    ({"debian": {"mirror": "ftp://x"}}, "archives.debian.mirror: "),
    ({"ubuntu": {"components": []}}, "archives.ubuntu.components: "),
    ({"alpine": "x"}, "archives.alpine: "),
    ({"timeout_seconds": 0}, "archives.timeout_seconds: "),
    ({"max_download_bytes": True}, "archives.max_download_bytes: "),
    ({"debian": {"keyring": "../outside.gpg"}}, "archives.debian.keyring: expected a path relative to the repository"),
    ({"debian": {"keyring": "keys/../../outside.gpg"}},
     "archives.debian.keyring: 'keys/../../outside.gpg' resolves to"),
    ({"alpine": {"keys_dir": "/etc/apk/keys"}}, "archives.alpine.keys_dir: "),
])
def test_settings_errors_name_the_key(tmp_path, data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _load(tmp_path, data)
