"""The org-ca-trusted image check, on filesystem exports made here (no docker): it passes only when the
bundle the image's TLS stack reads holds every org CA, and names the ones it lacks."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from factory.build import imagetest
from tests.certgen import make_ca

PASSWD = b"root:x:0:0:root:/root:/sbin/nologin\napp:x:1001:1001::/nonexistent:/sbin/nologin\n"


def export(tmp_path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    path = tmp_path / "fs.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def expect(*fingerprints: str) -> imagetest.Expectations:
    return imagetest.Expectations(1001, 1001, "UTC", (), True, False, (), fingerprints)


def org_ca_check(fs: Path, expectations: imagetest.Expectations) -> tuple[str, bool, str]:
    return next(c for c in imagetest.filesystem_checks(fs, expectations) if c[0] == "org-ca-trusted")


def test_the_check_passes_when_every_org_ca_is_in_the_bundle(tmp_path):
    public, org = make_ca("Public Root"), make_ca("Org Root")
    fs = export(tmp_path, {"etc/passwd": PASSWD, "etc/ssl/certs/ca-certificates.crt": public.pem + org.pem})
    assert org_ca_check(fs, expect(org.sha256)) == (
        "org-ca-trusted", True, "all 1 org CA(s) in /etc/ssl/certs/ca-certificates.crt")


def test_the_check_fails_naming_the_missing_ca(tmp_path):
    public, org, other = make_ca("Public Root"), make_ca("Org Root"), make_ca("Other Org CA")
    fs = export(tmp_path, {"etc/passwd": PASSWD, "etc/ssl/certs/ca-certificates.crt": public.pem + org.pem})
    _name, passed, detail = org_ca_check(fs, expect(org.sha256, other.sha256))
    assert not passed and detail == f"not in /etc/ssl/certs/ca-certificates.crt: sha256 {other.sha256}"


def test_the_bundle_is_read_through_a_symlink_and_a_missing_one_fails(tmp_path):
    org = make_ca("Org Root")
    linked = export(tmp_path, {"etc/passwd": PASSWD, "etc/pki/tls/bundle.pem": org.pem},
                    {"etc/ssl/certs/ca-certificates.crt": "../../pki/tls/bundle.pem"})
    assert org_ca_check(linked, expect(org.sha256))[1]
    missing = export(tmp_path, {"etc/passwd": PASSWD})
    assert not org_ca_check(missing, expect(org.sha256))[1]


def test_no_org_cas_no_check(tmp_path):
    fs = export(tmp_path, {"etc/passwd": PASSWD, "etc/ssl/certs/ca-certificates.crt": make_ca("Public").pem})
    assert "org-ca-trusted" not in [c[0] for c in imagetest.filesystem_checks(fs, expect())]
