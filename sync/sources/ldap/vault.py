"""Bind passwords of LDAP sources, encrypted at rest (see portal.core.secrets)."""

from portal.core.secrets import SecretBox

_box = SecretBox(
    b"kursa: stored secrets of sync sources",
    "The stored bind password",
    "Add the source again with its password.",
)
encrypt = _box.encrypt
decrypt = _box.decrypt
