"""Secrets kept in the database (bind passwords, client secrets), encrypted with Fernet.

The key comes from `[security] encryption_key`, or, when that is empty, from the web secret
key. Either is stretched with HKDF under a label of the secret's owner, so any long string will
do and one owner's ciphertext never opens with another's key. Nothing here is ever logged.
"""

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from portal.core.errors import UserError


class SecretBox:
    """Encrypts and decrypts one kind of stored secret.

    `what` names the secret in the error ("The stored bind password"), `remedy` tells the
    reader what to do when the key changed ("Add the source again with its password.").
    """

    def __init__(self, label: bytes, what: str, remedy: str):
        self.label = label
        self.what = what
        self.remedy = remedy

    def _fernet(self) -> Fernet:
        secret = current_app.config["KURSA"]["security"]["encryption_key"]
        secret = secret or current_app.config["SECRET_KEY"]
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=self.label)
        return Fernet(base64.urlsafe_b64encode(hkdf.derive(secret.encode())))

    def encrypt(self, plain: str) -> str:
        return self._fernet().encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet().decrypt(token.encode()).decode()
        except InvalidToken:
            raise UserError(
                f"{self.what} cannot be decrypted: the encryption key changed "
                "([security] encryption_key, or [web] secret_key when that is empty). "
                f"{self.remedy}"
            ) from None
