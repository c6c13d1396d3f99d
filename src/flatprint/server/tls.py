"""A self-signed certificate for https://localhost, made once and kept under $FLATPRINT_HOME/tls.

neuprint-python refuses plain http, so the server speaks HTTPS by default. Clients trust the
certificate with ``export REQUESTS_CA_BUNDLE=<cert.pem>`` (the certificate is its own CA).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from flatprint.store import flatprint_home


def tls_dir() -> Path:
    return flatprint_home() / "tls"


def ensure_certificate(directory: Path | None = None, extra_hosts: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Return (cert.pem, key.pem), creating them on first use (SANs: localhost, 127.0.0.1, ::1)."""
    from cryptography import x509  # noqa: PLC0415 - only when a certificate is made (start-up time)
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415 - only when a certificate is made (start-up time)
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 - only when a certificate is made (start-up time)
    from cryptography.x509.oid import NameOID  # noqa: PLC0415 - only when a certificate is made (start-up time)

    directory = Path(directory or tls_dir())
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flatprint local server")])
    alt_names = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    for host in extra_hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    # Write both under temporary names, then rename: a half-written pair is never picked up.
    tmp_key, tmp_cert = key_path.with_suffix(".pem.tmp"), cert_path.with_suffix(".pem.tmp")
    tmp_key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(tmp_key, 0o600)
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_key, key_path)
    os.replace(tmp_cert, cert_path)
    return cert_path, key_path
