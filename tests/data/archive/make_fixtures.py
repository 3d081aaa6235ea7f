"""Make the archive test fixtures (run once; commit what it writes): `python tests/data/archive/make_fixtures.py`.

Writes, next to this script:

- ``debian/``: a Packages file and a Release file in Debian's real formats (plain, unsigned) for parsing.
- ``ubuntu/``: an invented Ubuntu mirror (``mirror/``, ``security/``, ``ports/``) for suites jammy,
  jammy-updates and jammy-security, each InRelease clearsigned by a throw-away GPG key made in a temporary
  GNUPGHOME (needs ``gpg``); ``keyring.gpg`` holds that key, ``wrong-keyring.gpg`` another one, and
  ``tampered/InRelease`` is jammy's with one byte of the signed text changed.
- ``alpine/``: APKINDEX.tar.gz of an invented mirror's v3.20 main (``.SIGN.RSA.``, SHA1) and community
  (``.SIGN.RSA256.``, SHA256) for x86_64, signed by a throw-away RSA key whose public half is in ``keys/``;
  ``tampered/APKINDEX.tar.gz`` is main's with a version changed under the original signature.

The private keys are discarded: new fixtures mean new keys, and the tests read only what is committed.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HERE = Path(__file__).resolve().parent
DATE = "Tue, 01 Dec 2026 06:00:00 UTC"
MTIME = 1796112000  # 2026-12-01 08:00:00 UTC, the APKINDEX member times

# --- Debian-format Packages and Release ---------------------------------------------------------------

DEBIAN_PACKAGES = """\
Package: apt
Version: 2.6.1
Installed-Size: 4135
Maintainer: APT Development Team <deity@lists.debian.org>
Architecture: amd64
Replaces: apt-transport-https (<< 1.5~alpha4~), apt-utils (<< 1.3~exp2~)
Provides: apt-transport-https (= 2.6.1)
Depends: adduser, gpgv | gpgv2 | gpgv1, libapt-pkg6.0 (>= 2.6.1), debian-archive-keyring, libc6 (>= 2.34)
Recommends: ca-certificates
Suggests: apt-doc, aptitude | synaptic | wajig, dpkg-dev (>= 1.17.2), gnupg | gnupg2 | gnupg1, powermgmt-base
Breaks: apt-transport-https (<< 1.5~alpha4~), apt-utils (<< 1.3~exp2~), aptitude (<< 0.8.10)
Description: commandline package manager
Multi-Arch: foreign
Homepage: https://salsa.debian.org/apt-team/apt
Description-md5: 9fb97a88cb7383934ef963352b53b4a7
Tag: admin::package-management, devel::lang:ruby, hardware::storage,
 hardware::storage:cd, implemented-in::c++, implemented-in::perl,
 role::program, scope::application, suite::debian, works-with::software:package
Section: admin
Priority: required
Filename: pool/main/a/apt/apt_2.6.1_amd64.deb
Size: 1378408
MD5sum: 3c6cf0ae5c5aa2e5a1a1f0e6d1c7e2c5
SHA256: 9fa3c7ee3b0e1c3a9f7c3a4d2b6f4fe1f8ef9b1c6a5c8e2d7f0a3b4c5d6e7f80

Package: libc6
Source: glibc
Version: 2.36-9+deb12u7
Installed-Size: 12986
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Replaces: libc6-amd64
Depends: libgcc-s1
Recommends: libidn2-0 (>= 2.0.5~)
Suggests: glibc-doc, debconf | debconf-2.0, libc-l10n, locales, libnss-nis, libnss-nisplus
Breaks: aide (<< 0.17.3-4+b3), busybox (<< 1.30.1-6), chrony (<< 4.2-3~)
Description: GNU C Library: Shared libraries
Multi-Arch: same
Homepage: https://www.gnu.org/software/libc/libc.html
Description-md5: fc3001b0b90a1c8e6690b283a619d57f
Section: libs
Priority: optional
Filename: pool/main/g/glibc/libc6_2.36-9+deb12u7_amd64.deb
Size: 2757036
MD5sum: 0b6e3f2a9c7b8d1e4f5a6b7c8d9e0f1a
SHA256: 1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809

Package: libgnutls30
Source: gnutls28 (3.7.9-2+deb12u3)
Version: 3.7.9-2+deb12u3+b1
Installed-Size: 3387
Maintainer: Debian GnuTLS Maintainers <pkg-gnutls-maint@lists.alioth.debian.org>
Architecture: amd64
Depends: libc6 (>= 2.34), libgmp10 (>= 2:6.2.1+dfsg1), libhogweed6 (>= 3.6), libidn2-0 (>= 2.0.0)
Description: GNU TLS library - main runtime library
 GnuTLS is a portable library which implements the Transport Layer Security
 (TLS 1.0, 1.1, 1.2, 1.3) and Datagram
 Transport Layer Security (DTLS 1.0, 1.2) protocols.
 .
 This package contains the main runtime library.
Multi-Arch: same
Section: libs
Priority: optional
Filename: pool/main/g/gnutls28/libgnutls30_3.7.9-2+deb12u3+b1_amd64.deb
Size: 1405328
SHA256: 2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a

Package: tzdata
Version: 2026b-0+deb12u1
Installed-Size: 3417
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: all
Multi-Arch: foreign
Depends: debconf (>= 0.5) | debconf-2.0
Provides: tzdata-bookworm
Description: time zone and daylight-saving time data
Section: localization
Priority: required
Filename: pool/main/t/tzdata/tzdata_2026b-0+deb12u1_all.deb
Size: 255896
SHA256: 3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b
"""

# --- the invented Ubuntu mirror: (suite, component) -> packages (name, version, arch, source) ------------

UBUNTU = {
    ("jammy", "main"): [("libssl3", "3.0.2-0ubuntu1", "openssl"), ("openssl", "3.0.2-0ubuntu1", "openssl"),
                        ("tzdata", "2022a-0ubuntu1", "tzdata"), ("bash", "5.1-6ubuntu1", "bash"),
                        ("libfoo1", "1:1.0-1", "foo")],
    ("jammy", "universe"): [("hello", "2.10-2ubuntu4", "hello")],
    ("jammy-updates", "main"): [("tzdata", "2024a-0ubuntu0.22.04", "tzdata"), ("libfoo1", "2.0-1", "foo")],
    ("jammy-updates", "universe"): [],
    ("jammy-security", "main"): [("libssl3", "3.0.2-0ubuntu1.15", "openssl"),
                                 ("openssl", "3.0.2-0ubuntu1.15", "openssl"),
                                 ("tzdata", "2023c-0ubuntu0.22.04.1", "tzdata")],
    ("jammy-security", "universe"): [("hello", "2.10-2ubuntu4.1", "hello")],
}
ARCH_ALL = {"tzdata"}


def packages_text(entries: list[tuple[str, str, str]], arch: str) -> bytes:
    paragraphs = []
    for name, version, source in entries:
        pkg_arch = "all" if name in ARCH_ALL else arch
        lines = [f"Package: {name}"]
        if source != name:
            lines.append(f"Source: {source}")
        lines += [f"Version: {version}", f"Architecture: {pkg_arch}",
                  "Maintainer: Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>",
                  f"Description: {name} (test fixture)", " A package made for the factory's archive tests.",
                  " .", " Second paragraph.",
                  f"Filename: pool/main/{name[0]}/{source}/{name}_{version.split(':')[-1]}_{pkg_arch}.deb"]
        paragraphs.append("\n".join(lines) + "\n")
    return "\n".join(paragraphs).encode()


def release_text(suite: str, files: dict[str, bytes], arches: str, *, valid_until: str | None = None) -> bytes:
    head = ["Origin: Ubuntu", "Label: Ubuntu", f"Suite: {suite}", "Version: 22.04", "Codename: jammy",
            f"Date: {DATE}"]
    if valid_until:
        head.append(f"Valid-Until: {valid_until}")
    head += [f"Architectures: {arches}", "Components: main universe",
             "Description: Ubuntu Jammy 22.04 (factory test fixture)", "MD5Sum:"]
    head += [f" {hashlib.md5(d).hexdigest()} {len(d):>16} {n}" for n, d in sorted(files.items())]
    head.append("SHA256:")
    head += [f" {hashlib.sha256(d).hexdigest()} {len(d):>16} {n}" for n, d in sorted(files.items())]
    return ("\n".join(head) + "\n").encode()


def write_suite(root: Path, suite: str, arch: str, gpg: list[str], key: str) -> None:
    dist = root / "dists" / suite
    files: dict[str, bytes] = {}
    for component in ("main", "universe"):
        plain = packages_text(UBUNTU[(suite, component)], arch)
        files[f"{component}/binary-{arch}/Packages"] = plain
        # main as .xz, universe as .gz: both compressions are exercised
        if component == "main":
            files[f"{component}/binary-{arch}/Packages.xz"] = lzma.compress(plain)
        else:
            files[f"{component}/binary-{arch}/Packages.gz"] = gzip.compress(plain, mtime=0)
    for name, data in files.items():
        if name.endswith((".xz", ".gz")):
            (dist / name).parent.mkdir(parents=True, exist_ok=True)
            (dist / name).write_bytes(data)
    valid = "Fri, 01 Jan 2100 00:00:00 UTC" if suite.endswith("-security") else None
    (dist / "Release").write_bytes(release_text(suite, files, arch, valid_until=valid))
    subprocess.run([*gpg, "--clearsign", "--digest-algo", "SHA256", "-u", key, "-o", str(dist / "InRelease"),
                    str(dist / "Release")], check=True)
    (dist / "Release").unlink()


def make_ubuntu() -> None:
    root = HERE / "ubuntu"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    with tempfile.TemporaryDirectory() as home:
        gpg = ["gpg", "--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
        for uid in ("Factory Test Archive <archive@example.test>", "Someone Else <other@example.test>"):
            subprocess.run([*gpg, "--quick-gen-key", uid, "rsa2048", "sign", "never"], check=True)
        (root / "keyring.gpg").write_bytes(
            subprocess.run([*gpg, "--export", "archive@example.test"], check=True, capture_output=True).stdout)
        (root / "wrong-keyring.gpg").write_bytes(
            subprocess.run([*gpg, "--export", "other@example.test"], check=True, capture_output=True).stdout)
        for arch, mirror, security in (("amd64", "mirror", "security"), ("arm64", "ports", "ports")):
            for suite in ("jammy", "jammy-updates"):
                write_suite(root / mirror, suite, arch, gpg, "archive@example.test")
            write_suite(root / security, "jammy-security", arch, gpg, "archive@example.test")
    signed = (root / "mirror/dists/jammy/InRelease").read_text()
    (root / "tampered").mkdir()
    (root / "tampered/InRelease").write_text(signed.replace("Codename: jammy", "Codename: jammz", 1))


# --- Alpine APKINDEX.tar.gz ------------------------------------------------------------------------------

ALPINE = {
    "main": [("busybox", "1.36.1-r29", "busybox"), ("ssl_client", "1.36.1-r29", "busybox"),
             ("libcrypto3", "3.3.2-r0", "openssl"), ("libssl3", "3.3.2-r0", "openssl"),
             ("musl", "1.2.5-r0", "musl"), ("alpine-baselayout-data", "3.6.5-r0", "alpine-baselayout")],
    "community": [("jq", "1.7.1-r0", "jq"), ("py3-setuptools", "70.3.0-r0", "py3-setuptools")],
}
NOARCH = {"alpine-baselayout-data", "py3-setuptools"}


def apkindex_text(entries: list[tuple[str, str, str]], arch: str) -> bytes:
    records = []
    for name, version, origin in entries:
        records.append("\n".join([
            "C:Q1" + hashlib.sha1(f"{name}{version}".encode()).digest().hex()[:27] + "=",
            f"P:{name}", f"V:{version}", f"A:{'noarch' if name in NOARCH else arch}", "S:509419", "I:958464",
            f"T:{name} (test fixture)", "U:https://example.test/", "L:GPL-2.0-only", f"o:{origin}",
            "m:Factory Tests <tests@example.test>", f"t:{MTIME}", "D:so:libc.musl-x86_64.so.1",
        ]))
    return ("\n\n".join(records) + "\n\n").encode()


def tar_member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = len(data), MTIME, 0o644, "root", "root"
    return info.tobuf(format=tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)


def control_stream(index: bytes) -> bytes:
    tar = (tar_member("DESCRIPTION", b"v3.20.3-100-gfixture") + tar_member("APKINDEX", index)
           + b"\0" * 1024)  # a complete tar: apk's control part keeps its end-of-archive blocks
    return gzip.compress(tar, mtime=0)


def signed_index(index: bytes, key: rsa.RSAPrivateKey, key_name: str, sha256: bool) -> bytes:
    control = control_stream(index)
    algorithm: hashes.HashAlgorithm = hashes.SHA256() if sha256 else hashes.SHA1()
    signature = key.sign(control, padding.PKCS1v15(), algorithm)
    prefix = ".SIGN.RSA256." if sha256 else ".SIGN.RSA."
    # abuild-sign cuts the signature tar's end-of-archive blocks, so that the two tars read as one
    sign_tar = tar_member(prefix + key_name, signature)
    return gzip.compress(sign_tar, mtime=0) + control


def make_alpine() -> None:
    root = HERE / "alpine"
    shutil.rmtree(root, ignore_errors=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_name = "factory-test-5f3a0c1e.rsa.pub"
    (root / "keys").mkdir(parents=True)
    (root / "keys" / key_name).write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for repository, sha256 in (("main", False), ("community", True)):
        out = root / "mirror/v3.20" / repository / "x86_64/APKINDEX.tar.gz"
        out.parent.mkdir(parents=True)
        out.write_bytes(signed_index(apkindex_text(ALPINE[repository], "x86_64"), key, key_name, sha256))
    good = (root / "mirror/v3.20/main/x86_64/APKINDEX.tar.gz").read_bytes()
    signature_part = good[: len(good) - len(control_stream(apkindex_text(ALPINE["main"], "x86_64")))]
    tampered = apkindex_text(ALPINE["main"], "x86_64").replace(b"V:3.3.2-r0", b"V:3.3.9-r0")
    (root / "tampered").mkdir()
    (root / "tampered/APKINDEX.tar.gz").write_bytes(signature_part + control_stream(tampered))


def make_debian() -> None:
    root = HERE / "debian"
    root.mkdir(exist_ok=True)
    packages = DEBIAN_PACKAGES.encode()
    (root / "Packages").write_bytes(packages)
    files = {"main/binary-amd64/Packages": packages, "main/binary-amd64/Packages.xz": lzma.compress(packages)}
    (root / "Packages.xz").write_bytes(files["main/binary-amd64/Packages.xz"])
    release = release_text("bookworm-security", files, "amd64 arm64").decode()
    release = (release.replace("Origin: Ubuntu", "Origin: Debian").replace("Label: Ubuntu", "Label: Debian-Security")
               .replace("Codename: jammy", "Codename: bookworm-security").replace("Version: 22.04", "Version: 12")
               .replace("Description: Ubuntu Jammy 22.04", "Description: Debian 12 - Security Updates")
               .replace("Suite: bookworm-security", "Suite: oldstable-security")
               .replace("Components: main universe", "Components: updates/main updates/contrib\n"
                        "Acquire-By-Hash: yes\nValid-Until: Tue, 08 Dec 2026 06:00:00 UTC"))
    (root / "Release").write_text(release)


if __name__ == "__main__":
    os.umask(0o022)
    make_debian()
    make_ubuntu()
    make_alpine()
