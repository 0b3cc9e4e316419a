"""Identity providers, links from a provider's subject to a person, SAML and OIDC request state.

Request state and seen assertion ids live in the database so that any node of a cluster can
finish a login another node started, and so that the IdP's cross-site POST needs no cookie.
"""

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.core.db import TimestampMixin, db, utcnow
from portal.directory.models import Customer, Person


class ProviderKind(enum.StrEnum):
    SAML = "saml"
    OIDC = "oidc"


class MatchRule(enum.StrEnum):
    """Which person field the provider's identifying value is compared with."""

    USERNAME = "username"
    EMAIL = "email"
    EMPLOYEE_NUMBER = "employee_number"
    NAMEID = "nameid"  # the NameID itself is the username


# Defaults of IdentityProvider.settings; the CLI and pages store every key explicitly.
DEFAULT_SETTINGS = {
    "label": "",  # the login button's whole text; "" means "Log in with <name>"
    "metadata_xml": "",  # the IdP's SAML metadata as fetched or uploaded
    "metadata_url": "",  # where it was fetched from ("" when uploaded)
    # A refresh from metadata_url (sso/metadata.py): when it last succeeded, why it last failed.
    "metadata_refreshed_at": "",
    "metadata_error": "",
    "metadata_error_at": "",
    "metadata_signing_cert": "",  # PEM; when set, refreshed metadata must be signed by it
    "entity_id": "",  # the IdP's entity id, read from the metadata
    "match": MatchRule.USERNAME.value,
    "match_attribute": "",  # SAML attribute holding it; "": the rule's usual ones (sso.matching)
    "require_signed_assertion": True,  # False: a signed Response alone is enough
    "allow_idp_initiated": False,
    "clock_skew_seconds": 120,
    # OpenID Connect
    "discovery_url": "",
    "issuer": "",  # read from the discovery document when the provider is added
    "client_id": "",
    "client_secret": "",  # Fernet token (sso/vault.py), never the plain secret
    "scopes": "openid email profile",
    "match_claim": "",  # claim holding the value; "" means the match rule's standard claim
}


class IdentityProvider(TimestampMixin, db.Model):
    """A customer's SAML IdP or OpenID provider."""

    __tablename__ = "identity_providers"
    __table_args__ = (
        UniqueConstraint("customer_id", "name", name="uq_identity_providers_customer_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    name: Mapped[str] = mapped_column(String(50))
    kind: Mapped[str] = mapped_column(String(10))
    is_enabled: Mapped[bool] = mapped_column(default=True)
    settings: Mapped[dict] = mapped_column(default=dict)

    customer: Mapped[Customer] = relationship()

    def setting(self, key: str):
        return self.settings.get(key, DEFAULT_SETTINGS[key])

    @property
    def label(self) -> str:
        """What the login button says: the label as set, else "Log in with <name>"."""
        return self.setting("label") or f"Log in with {self.name}"

    def __repr__(self) -> str:
        return f"<IdentityProvider {self.id} {self.name}>"


class EmailDomain(db.Model):
    """A domain that leads to an enabled provider from the login page; the primary key makes
    the database hold "one provider per domain" even when two saves race. It mirrors the
    `email_domains` setting of enabled providers (sso.domains keeps them in step)."""

    __tablename__ = "sso_email_domains"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("identity_providers.id"), index=True)


class Identity(db.Model):
    """Provider + subject -> person, recorded at the first login so renames keep working."""

    __tablename__ = "sso_identities"
    __table_args__ = (
        UniqueConstraint("provider_id", "subject", name="uq_sso_identities_provider_subject"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("identity_providers.id"))
    subject: Mapped[str] = mapped_column(String(1024))  # linking.MAX_SUBJECT_BYTES
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column()

    person: Mapped[Person] = relationship()


class SamlRequest(db.Model):
    """An AuthnRequest Kursa sent and awaits the answer to (one answer only)."""

    __tablename__ = "saml_requests"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)  # the request's ID
    provider_id: Mapped[int] = mapped_column(ForeignKey("identity_providers.id"), index=True)
    next_url: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    is_used: Mapped[bool] = mapped_column(default=False)


class SamlAssertionSeen(db.Model):
    """An assertion id already used for a login; kept until the assertion has expired."""

    __tablename__ = "saml_assertions_seen"
    __table_args__ = (
        UniqueConstraint(
            "provider_id", "assertion_id", name="uq_saml_assertions_seen_provider_assertion"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("identity_providers.id"))
    assertion_id: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class OidcRequest(db.Model):
    """An authorization request Kursa sent, keyed by its state (one callback only), bound to
    the browser that started it by the SHA-256 of that browser's login cookie."""

    __tablename__ = "oidc_requests"

    state: Mapped[str] = mapped_column(String(100), primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("identity_providers.id"), index=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(100))
    code_verifier: Mapped[str] = mapped_column(String(128))
    next_url: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    is_used: Mapped[bool] = mapped_column(default=False)


class SamlLogoutRequest(db.Model):
    """A LogoutRequest Kursa sent to an IdP; its LogoutResponse must answer it, once.

    Kept apart from SamlRequest so that a logout request's id can never answer a login.
    """

    __tablename__ = "saml_logout_requests"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("identity_providers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    is_used: Mapped[bool] = mapped_column(default=False)
