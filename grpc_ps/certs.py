"""``pslab certs``: a private CA and one certificate per host, for mutual TLS between hosts.

Each host certificate names its host (a DNS name or an IP address) and serves both ends of
a connection (server and client auth), so one file pair per host is all a multi-host run
needs: servers present it, and with the CA set they require it from their clients.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 365
CA_FILES = ("ca.pem", "ca.key")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def check_host(host: str) -> None:
    """An IP address or a DNS name (RFC 1123 labels), and not ``ca``, the CA's own files.

    The host names the files written (``HOST.pem``), so anything else could write outside
    the directory or over the CA.
    """
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    if host.lower() == "ca":
        raise ValueError("host 'ca' would overwrite the CA's own ca.pem and ca.key")
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"{host!r} is neither an IP address nor a host name (letters, digits, '-', '.')"
        )


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


def _existing_ca(directory: Path) -> tuple[x509.Name, ec.EllipticCurvePrivateKey] | None:
    """The CA already in ``directory`` (its name and key), or None if there is none."""
    pem, key = (directory / name for name in CA_FILES)
    if not pem.exists() and not key.exists():
        return None
    if not (pem.exists() and key.exists()):
        raise ValueError(f"{directory} holds half a CA (ca.pem or ca.key missing): --force")
    ca_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key} is not a pslab CA key: --force replaces it")
    return x509.load_pem_x509_certificate(pem.read_bytes()).subject, ca_key


def write_certs(directory: Path, hosts: list[str], force: bool = False) -> list[Path]:
    """Write ``ca.pem`` (and ``ca.key``) and ``HOST.pem``/``HOST.key`` per host; return them.

    A CA already in ``directory`` signs the new host pairs and is kept, since replacing it
    would silently cut off every host holding a certificate it signed; ``force`` makes a new
    one. Host names are checked (:func:`check_host`) before anything is written.
    """
    if not hosts:
        raise ValueError("expected host names or addresses, got none")
    for host in hosts:
        check_host(host)
    directory.mkdir(parents=True, exist_ok=True)
    existing = None if force else _existing_ca(directory)
    written: list[Path] = []
    if existing is not None:
        ca_name, ca_key = existing
    else:
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
        written = [directory / name for name in CA_FILES]
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
