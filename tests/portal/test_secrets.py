"""Secrets at rest: round trip, one owner's ciphertext never opens under another's label, and a
changed key gives a plain error instead of a traceback."""

import pytest

from portal.core.errors import UserError
from sso import vault as sso_vault
from sync.sources.ldap import vault as ldap_vault

PLAIN = "correct horse battery staple"


def test_a_secret_comes_back_and_is_not_stored_in_clear(app):
    token = ldap_vault.encrypt(PLAIN)

    assert PLAIN not in token
    assert ldap_vault.decrypt(token) == PLAIN
    assert ldap_vault.encrypt(PLAIN) != token  # Fernet: a fresh IV each time


def test_a_bind_password_does_not_open_as_a_client_secret(app):
    token = ldap_vault.encrypt(PLAIN)

    with pytest.raises(UserError, match="The stored OIDC client secret cannot be decrypted"):
        sso_vault.decrypt(token)


def test_a_changed_key_is_named_with_what_to_do(app):
    token = sso_vault.encrypt(PLAIN)
    security = app.config["KURSA"]["security"]
    before = security["encryption_key"]
    security["encryption_key"] = "another key, long enough to be a key"
    try:
        with pytest.raises(UserError) as refused:
            sso_vault.decrypt(token)
    finally:
        security["encryption_key"] = before

    assert str(refused.value) == (
        "The stored OIDC client secret cannot be decrypted: the encryption key changed "
        "([security] encryption_key, or [web] secret_key when that is empty). "
        "Add the provider again with its secret."
    )
    assert sso_vault.decrypt(token) == PLAIN
