"""A throw-away PKI for trying TLS and mutual TLS locally, and for the security tests.

    .venv/bin/python -m scripts.dev_pki pki/        # then see docs/security.md

Writes, with `cryptography` (installed by `make install`): a CA (test-ca.pem), a
server certificate for localhost / 127.0.0.1 (server.pem, server-key.pem), a
client certificate from the same CA (client.pem, client-key.pem), and a second,
unrelated CA with its own client certificate (other-*: the "wrong CA" cases).
Keys are written 0600 and are for testing only: never commit them, never deploy them.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _certificate(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool = False,
                 server: bool = False, names: tuple[str, ...] = ()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    elif server:
        # Every name callers use: localhost for `make up`, service names in compose or Kubernetes.
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            + [x509.DNSName(name) for name in names]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _authority(folder: Path, label: str):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(f"synesthesia test {label} CA", key, _name(f"synesthesia test {label} CA"), key, ca=True)
    (folder / f"{label}-ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _leaf(folder: Path, label: str, ca_key, ca_cert, *, server: bool,
          names: tuple[str, ...] = ()) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(label, key, ca_cert.subject, ca_key, server=server, names=names)
    cert_path, key_path = folder / f"{label}.pem", folder / f"{label}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


def make_pki(folder: Path, server_names: tuple[str, ...] = ()) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _authority(folder, "test")
    other_key, other_cert = _authority(folder, "other")
    server_cert, server_key = _leaf(folder, "server", ca_key, ca_cert, server=True, names=server_names)
    client_cert, client_key = _leaf(folder, "client", ca_key, ca_cert, server=False)
    other_client_cert, other_client_key = _leaf(folder, "other-client", other_key, other_cert, server=False)
    return Pki(folder / "test-ca.pem", server_cert, server_key, client_cert, client_key, folder / "other-ca.pem",
               other_client_cert, other_client_key)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m scripts.dev_pki", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--name", action="append", default=[],
                        help="extra DNS name for the server certificate (repeatable), e.g. captioning")
    args = parser.parse_args(argv)
    pki = make_pki(args.folder, tuple(args.name))
    for label, path in vars(pki).items():
        print(f"{label}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
