"""A self-signed SP key pair for tests and demos. Production configures [sso] key_file."""

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

logger = logging.getLogger(__name__)


def write_self_signed_pair(folder: Path, common_name: str, days: int = 3650) -> tuple[str, str]:
    """Write key.pem (mode 600) and cert.pem into `folder`; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / "key.pem", folder / "cert.pem"
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as fh:
        fh.write(pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)


def ensure_self_signed_pair(folder: Path) -> tuple[str, str]:
    """The pair in `folder`, generated on first use (instance/sso when no key is configured)."""
    key_path, cert_path = folder / "key.pem", folder / "cert.pem"
    if not (key_path.is_file() and cert_path.is_file()):
        logger.warning(
            "no [sso] key_file configured: generated a self-signed SAML key pair in %s "
            "(fine for tests and demos; production must configure its own)",
            folder,
        )
        return write_self_signed_pair(folder, "Kursa SAML service provider")
    return str(key_path), str(cert_path)
