"""Certificates made for tests with ``cryptography``: org CAs (good and bad ones), and server
certificates they issue. Keys are EC P-256: fast to make, and every TLS stack here speaks it.

Nothing here is trusted anywhere but in the test that made it; the committed certificates under
tests/data/certs/ were made with ``python -m tests.certgen`` and their keys thrown away.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def sha256(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()


def _usage(*, cert_sign: bool, digital_signature: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def make_ca(common_name: str, *, issuer: Issued | None = None, not_before: datetime | None = None,
            not_after: datetime | None = None, days: int = 3650, ca: bool | None = True,
            key_cert_sign: bool | None = True) -> Issued:
    """A CA certificate (self-signed unless ``issuer``). ``ca=None`` leaves out basicConstraints,
    ``key_cert_sign=None`` leaves out keyUsage: the ways a certificate can fail to be a CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    not_before = not_before or now - timedelta(days=1)
    not_after = not_after or now + timedelta(days=days)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Factory Tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer.cert.subject if issuer else name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before)
               .not_valid_after(not_after)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if key_cert_sign is not None:
        builder = builder.add_extension(_usage(cert_sign=key_cert_sign, digital_signature=not key_cert_sign),
                                        critical=True)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def make_server(issuer: Issued, *, hosts: tuple[str, ...] = ("localhost", "127.0.0.1"), days: int = 30) -> Issued:
    """A TLS server certificate for ``hosts`` (names and IP addresses), issued by ``issuer``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(issuer.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False, digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                           critical=False)
            .sign(issuer.key, hashes.SHA256()))
    return Issued(cert, key)


def main(folder: str) -> None:
    """Write the committed test certificates (keys discarded): valid from 2024 for a century."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2124, 1, 1, tzinfo=UTC)
    root = make_ca("Factory Tests Org Root CA", not_before=start, not_after=end)
    (out / "test-org-root-ca.pem").write_bytes(root.pem)
    other = make_ca("Factory Tests Team Root CA", not_before=start, not_after=end)
    intermediate = make_ca("Factory Tests Team Issuing CA", issuer=other, not_before=start, not_after=end)
    (out / "test-team-chain.pem").write_bytes(b"# the team's issuing CA and its root\n" + intermediate.pem + other.pem)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/certs")
