"""factory.spec.certs: which CA files are accepted, what every rejection says, and what the renderer and the
image tests get from them. Certificates are made per test with cryptography (tests/certgen.py)."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from factory import cli
from factory.core.errors import CertificateError, ConfigError
from factory.core.model import CaFile
from factory.spec import certs, config, manifest, policy
from tests.certgen import make_ca, make_server

NOW = datetime.now(UTC)


def ca_file(root: Path, written: str, *, org_wide: bool = True, i: int = 0) -> CaFile:
    key = f"certificates.{i}" if org_wide else f"certificates.additional.{i}"
    return CaFile(root / written, written, key, org_wide)


def write(root: Path, written: str, data: bytes) -> CaFile:
    path = root / written
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return ca_file(root, written)


def refused(root: Path, written: str) -> str:
    with pytest.raises(CertificateError) as e:
        certs.read(root, ca_file(root, written))
    assert e.value.key == "certificates.0"
    return e.value.reason


# --- accepted ------------------------------------------------------------------------------------

def test_a_ca_certificate_is_read_with_its_fingerprint_and_dates(tmp_path):
    root_ca = make_ca("Example Org Root CA")
    [cert] = certs.read(tmp_path, write(tmp_path, "certs/org.pem", root_ca.pem))
    assert cert.sha256 == root_ca.sha256 == hashlib.sha256(root_ca.der).hexdigest()
    assert cert.subject == "CN=Example Org Root CA,O=Factory Tests"
    assert cert.not_after == root_ca.cert.not_valid_after_utc
    assert (cert.source, cert.where, cert.org_wide) == ("certs/org.pem", "certs/org.pem", True)
    assert certs.date_findings(cert, NOW, 180) == []


def test_a_file_of_several_certificates_with_comments_gives_each_in_canonical_pem(tmp_path):
    root_ca = make_ca("Root")
    issuing = make_ca("Issuing", issuer=root_ca)
    text = b"# issuing CA\nSubject: CN=Issuing\n" + issuing.pem + b"\n\n# root\n" + root_ca.pem.replace(b"\n", b"\r\n")
    found = certs.read(tmp_path, write(tmp_path, "certs/chain.pem", text))
    assert [c.sha256 for c in found] == [issuing.sha256, root_ca.sha256]
    assert [c.where for c in found] == ["certs/chain.pem (certificate 1 of 2)", "certs/chain.pem (certificate 2 of 2)"]
    assert [c.pem for c in found] == [issuing.pem, root_ca.pem]  # comments and CRLF gone


def test_a_symlink_that_stays_inside_the_repository_is_followed(tmp_path):
    root_ca = make_ca("Root")
    write(tmp_path, "pki/root.pem", root_ca.pem)
    (tmp_path / "certs").mkdir()
    os.symlink("../pki/root.pem", tmp_path / "certs" / "root.pem")
    assert [c.sha256 for c in certs.read(tmp_path, ca_file(tmp_path, "certs/root.pem"))] == [root_ca.sha256]


# --- refused: each with a message naming the problem ------------------------------------------------

def test_an_expired_ca_is_an_error_naming_the_date(tmp_path):
    old = make_ca("Old Root", not_before=NOW - timedelta(days=800), not_after=NOW - timedelta(days=3))
    [cert] = certs.read(tmp_path, write(tmp_path, "certs/old.pem", old.pem))
    [(severity, message)] = certs.date_findings(cert, NOW, 180)
    assert severity == "error"
    assert message.startswith(f"certs/old.pem (CN=Old Root,O=Factory Tests) expired on "
                              f"{(NOW - timedelta(days=3)):%Y-%m-%d}")


def test_a_ca_not_yet_valid_is_an_error(tmp_path):
    future = make_ca("Future Root", not_before=NOW + timedelta(days=10), not_after=NOW + timedelta(days=900))
    [cert] = certs.read(tmp_path, write(tmp_path, "certs/future.pem", future.pem))
    [(severity, message)] = certs.date_findings(cert, NOW, 180)
    assert severity == "error" and "is not valid before" in message


def test_a_ca_expiring_inside_the_warning_window_is_a_warning(tmp_path):
    soon = make_ca("Soon Root", not_after=NOW + timedelta(days=40, hours=1))
    [cert] = certs.read(tmp_path, write(tmp_path, "certs/soon.pem", soon.pem))
    [(severity, message)] = certs.date_findings(cert, NOW, 180)
    assert severity == "warning"
    assert "in 40 days" in message and "policy.certificates_warning_days = 180" in message
    assert certs.date_findings(cert, NOW, 30) == []


def test_a_server_certificate_is_not_a_ca(tmp_path):
    server = make_server(make_ca("Root"))
    write(tmp_path, "certs/server.pem", server.pem)
    assert refused(tmp_path, "certs/server.pem") == (
        "'certs/server.pem': is not a CA certificate: basicConstraints says CA:FALSE (a server or client "
        "certificate?) (CN=localhost)")


@pytest.mark.parametrize("ca, key_cert_sign, words", [
    (None, True, "it has no basicConstraints extension (a CA needs CA:TRUE)"),
    (True, None, "it has no keyUsage extension (a CA needs keyCertSign)"),
    (True, False, "its keyUsage lacks keyCertSign"),
])
def test_a_certificate_without_the_ca_extensions_is_refused(tmp_path, ca, key_cert_sign, words):
    write(tmp_path, "certs/x.pem", make_ca("Not Quite", ca=ca, key_cert_sign=key_cert_sign).pem)
    assert refused(tmp_path, "certs/x.pem") == f"'certs/x.pem': is not a CA certificate: {words} " \
                                               "(CN=Not Quite,O=Factory Tests)"


def test_the_bad_certificate_of_several_is_named(tmp_path):
    good, bad = make_ca("Good"), make_server(make_ca("Other"))
    write(tmp_path, "certs/chain.pem", good.pem + bad.pem + make_ca("Third").pem)
    assert refused(tmp_path, "certs/chain.pem").startswith("'certs/chain.pem': certificate 2 of 3: is not a CA")


@pytest.mark.parametrize("data, words", [
    (b"", "holds no PEM certificate (expected -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)"),
    (b"hello, I am not a certificate\n", "holds no PEM certificate"),
    (b"-----BEGIN CERTIFICATE-----\nMIIB\n", "has a PEM block without its matching -----END ...----- line"),
    (b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n", "block 1 is not valid base64"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a valid X.509 certificate"),
    (b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", "block 1 is a X509 CRL, not a CERTIFICATE"),
])
def test_unparsable_files_are_refused_saying_why(tmp_path, data, words):
    write(tmp_path, "certs/bad.pem", data)
    assert words in refused(tmp_path, "certs/bad.pem")


def test_a_der_file_is_refused_with_the_command_that_converts_it(tmp_path):
    write(tmp_path, "certs/root.cer", make_ca("Root").der)
    assert "is DER, not PEM; convert it: openssl x509 -inform der" in refused(tmp_path, "certs/root.cer")


def test_a_private_key_in_the_file_is_refused(tmp_path):
    root_ca = make_ca("Root")
    write(tmp_path, "certs/root.pem", root_ca.pem + root_ca.key_pem)
    assert "block 2 is a PRIVATE KEY: never commit a private key" in refused(tmp_path, "certs/root.pem")


def test_a_file_outside_the_repository_is_refused(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "outside.pem").write_bytes(make_ca("Root").pem)
    with pytest.raises(CertificateError, match=r"resolves to .*outside\.pem, outside the repository"):
        certs.read(repo, ca_file(repo, "../outside.pem"))


def test_a_symlink_out_of_the_repository_is_refused(tmp_path):
    repo = tmp_path / "repo"
    (repo / "certs").mkdir(parents=True)
    (tmp_path / "secret.pem").write_bytes(make_ca("Root").pem)
    os.symlink(tmp_path / "secret.pem", repo / "certs" / "root.pem")
    with pytest.raises(CertificateError, match="outside the repository"):
        certs.read(repo, ca_file(repo, "certs/root.pem"))


def test_missing_folder_absolute_and_huge_files_are_refused(tmp_path):
    assert "no such file" in refused(tmp_path, "certs/missing.pem")
    (tmp_path / "certs" / "dir.pem").mkdir(parents=True)
    assert "is not a regular file" in refused(tmp_path, "certs/dir.pem")
    assert "is an absolute path" in refused(tmp_path, "/etc/ssl/certs/ca-certificates.crt")
    write(tmp_path, "certs/huge.pem", b"#" * (certs.MAX_FILE_BYTES + 1))
    assert "larger than 1024 KiB" in refused(tmp_path, "certs/huge.pem")


# --- for one image (the renderer) -----------------------------------------------------------------

@pytest.fixture
def repo(tmp_path) -> Path:
    (tmp_path / "manifests").mkdir()
    return tmp_path


def load(repo: Path, org: list[str], own: list[str] | None = None, days: int | None = None):
    cfg = {"certificates": org, **({"policy": {"certificates_warning_days": days}} if days is not None else {})}
    (repo / "factory.yaml").write_text(json.dumps(cfg))
    settings = config.load(repo / "factory.yaml", environ={})
    extra = "certificates:\n  additional:\n" + "".join(f"    - {p}\n" for p in own) if own else ""
    (repo / "manifests" / "app.yaml").write_text(
        "apiVersion: factory/v1\nname: app\nversion: \"1.0\"\ndescription: app\n"
        f"upstream: {{image: docker.io/library/debian, tag: 12-slim, digest: 'sha256:{'ab' * 32}'}}\n"
        f"distro: debian\n{extra}")
    return settings, manifest.load_all(settings)


def test_an_image_trusts_the_org_cas_then_its_own_without_repeats(repo):
    org, team = make_ca("Org Root"), make_ca("Team Root")
    write(repo, "certs/org.pem", org.pem)
    write(repo, "certs/team.pem", team.pem + org.pem)  # the org root again: trusted once
    settings, catalog = load(repo, ["certs/org.pem"], ["certs/team.pem"])
    m = catalog["app"]
    assert [(c.written, c.key, c.org_wide) for c in m.certificates] == [
        ("certs/org.pem", "certificates.0", True), ("certs/team.pem", "certificates.additional.0", False)]
    found = certs.for_image(m, settings)
    assert [c.sha256 for c in found] == [org.sha256, team.sha256]
    assert certs.context_names(found) == ["01-org.crt", "02-team-1.crt"]
    assert certs.fingerprints(m.certificates) == (org.sha256, team.sha256)


def test_a_bad_org_wide_file_is_a_config_error_and_a_bad_own_file_names_the_manifest_key(repo):
    write(repo, "certs/org.pem", make_ca("Old", not_before=NOW - timedelta(days=90),
                                         not_after=NOW - timedelta(days=1)).pem)
    write(repo, "certs/team.pem", b"nope")
    settings, catalog = load(repo, ["certs/org.pem"], ["certs/team.pem"])
    with pytest.raises(ConfigError, match=r"^factory.yaml: certificates.0: certs/org.pem .* expired on"):
        certs.for_image(catalog["app"], settings)
    settings, catalog = load(repo, [], ["certs/team.pem"])
    with pytest.raises(CertificateError) as e:
        certs.for_image(catalog["app"], settings)
    assert e.value.key == "certificates.additional.0" and "holds no PEM certificate" in e.value.reason


def test_a_warning_does_not_stop_the_renderer(repo):
    write(repo, "certs/org.pem", make_ca("Soon", days=20).pem)
    settings, catalog = load(repo, ["certs/org.pem"])
    assert len(certs.for_image(catalog["app"], settings)) == 1


def test_context_names_are_safe_and_keep_the_listed_order(repo):
    names = ["certs/Org Root (2024).pem", "certs/sub/ünïcode.crt", "certs/....pem"]
    for n in names:
        write(repo, n, make_ca(n).pem)
    found = [certs.read(repo, ca_file(repo, n))[0] for n in names]
    assert certs.context_names(found) == ["01-org-root-2024.crt", "02-n-code.crt", "03-ca.crt"]


# --- factory validate's problems ----------------------------------------------------------------------

def test_problems_point_at_factory_yaml_or_the_manifest_line(repo):
    write(repo, "certs/org.pem", make_ca("Soon", days=30).pem)
    write(repo, "certs/server.pem", make_server(make_ca("Other")).pem)
    settings, catalog = load(repo, ["certs/org.pem"], ["certs/server.pem"], days=90)
    found = certs.problems(catalog, settings, NOW)
    assert [(Path(p.path).name, p.line, p.key, p.severity) for p in found] == [
        ("factory.yaml", None, "certificates.0", "warning"),
        ("app.yaml", 9, "certificates.additional.0", "error"),
    ]
    assert "expires on" in found[0].message and "is not a CA certificate" in found[1].message


def test_no_certificates_no_problems(repo):
    settings, catalog = load(repo, [])
    assert certs.problems(catalog, settings, NOW) == []


# --- what an image's bundle holds ---------------------------------------------------------------------

def test_bundle_fingerprints_reads_every_certificate_and_skips_junk():
    a, b = make_ca("A"), make_ca("B")
    bundle = a.pem + b"garbage\n-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n" + b.pem
    assert certs.bundle_fingerprints(bundle) == {a.sha256, b.sha256}
    assert certs.bundle_fingerprints(b"") == set()


def test_factory_validate_prints_the_certificate_problems_and_fails_on_an_error(repo, capsys, monkeypatch):
    monkeypatch.chdir(repo)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setattr(policy, "evaluate", lambda catalog, settings, today: [])  # policy has its own tests
    write(repo, "certs/org.pem", make_ca("Soon", not_after=NOW + timedelta(days=10, hours=1)).pem)
    write(repo, "certs/team.pem", make_ca("Team", ca=False).pem)
    load(repo, ["certs/org.pem"], ["certs/team.pem"])
    with pytest.raises(SystemExit) as e:
        cli.main(["validate"])
    out = capsys.readouterr().out.splitlines()
    assert e.value.code == 1
    assert out[0].startswith("warning: factory.yaml: certificates.0: certs/org.pem (CN=Soon,O=Factory Tests) "
                             "expires on")
    assert out[1] == ("manifests/app.yaml:9: certificates.additional.0: 'certs/team.pem': is not a CA certificate: "
                      "basicConstraints says CA:FALSE (a server or client certificate?) (CN=Team,O=Factory Tests)")
    assert out[2] == "validated 1 manifests: 1 errors, 1 warnings"
