"""``pslab certs``: a private CA and one certificate per host, for mutual TLS between hosts.

Each host certificate names its host (a DNS name or an IP address) and serves both ends of
a connection (server and client auth), so one file pair per host is all a multi-host run
needs: servers present it, and with the CA set they require it from their clients.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 365


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pslab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _subject_alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """A private key, readable by its owner only from the moment it exists."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _sign(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def write_certs(directory: Path, hosts: list[str]) -> list[Path]:
    """Write ``ca.pem`` (and ``ca.key``) and ``HOST.pem``/``HOST.key`` per host; return them."""
    if not hosts or any(not h or "/" in h for h in hosts):
        raise ValueError(f"expected host names or addresses, got {hosts}")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("pslab run CA")
    ca = _sign(
        ca_name,
        ca_key,
        ca_name,
        ca_key,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
        ],
    )
    written = [directory / "ca.pem", directory / "ca.key"]
    written[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(written[1], ca_key)
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    for host in hosts:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _sign(
            _name(host),
            key,
            ca_name,
            ca_key,
            [
                (x509.SubjectAlternativeName([_subject_alt_name(host)]), False),
                (x509.BasicConstraints(ca=False, path_length=None), True),
                (x509.ExtendedKeyUsage(usage), False),
            ],
        )
        pem, key_path = directory / f"{host}.pem", directory / f"{host}.key"
        pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        written += [pem, key_path]
    return written
