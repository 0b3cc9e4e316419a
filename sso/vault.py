"""OIDC client secrets, encrypted at rest (see portal.core.secrets)."""

from portal.core.secrets import SecretBox

_box = SecretBox(
    b"kursa: stored secrets of identity providers",
    "The stored OIDC client secret",
    "Add the provider again with its secret.",
)
encrypt = _box.encrypt
decrypt = _box.decrypt
