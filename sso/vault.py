"""OIDC client secrets stored in the database, encrypted with Fernet (as sync's vault).

The key comes from `[security] encryption_key`, or, when that is empty, from the web secret
key, stretched with HKDF under its own label. Nothing here is ever logged.
"""

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from portal.core.errors import UserError

_INFO = b"kursa: stored secrets of identity providers"


def _fernet() -> Fernet:
    secret = current_app.config["KURSA"]["security"]["encryption_key"]
    secret = secret or current_app.config["SECRET_KEY"]
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise UserError(
            "The stored OIDC client secret cannot be decrypted: the encryption key changed "
            "([security] encryption_key, or [web] secret_key when that is empty). "
            "Add the provider again with its secret."
        ) from None
