"""Local accounts. Passwords exist only for platform admins (break-glass); staff use SSO."""

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.db import TimestampMixin, db

ACTOR_PREFIX = "account:"  # an account as audit entries and runs name it: account:<username>


class Account(UserMixin, TimestampMixin, db.Model):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(300))
    is_platform_admin: Mapped[bool] = mapped_column(default=False)
    is_enabled: Mapped[bool] = mapped_column(default=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"))
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    last_login_at: Mapped[datetime | None] = mapped_column()

    @property
    def is_active(self) -> bool:  # Flask-Login's name
        return self.is_enabled

    @property
    def actor(self) -> str:
        """How this account is named in audit entries and logs."""
        return f"{ACTOR_PREFIX}{self.username}"


class Role(enum.StrEnum):
    """Roles granted at a unit; each reaches the unit's whole branch."""

    HR = "hr"
    IT_ADMIN = "it_admin"
    COURSE_ADMIN = "course_admin"


class RoleGrant(TimestampMixin, db.Model):
    """`role` for `person` over the branch of `unit`. Granted to the person, not to an account,
    so it holds whichever way the person logs in (SSO later); an Account links by person_id."""

    __tablename__ = "role_grants"
    __table_args__ = (
        UniqueConstraint("person_id", "role", "unit_id", name="uq_role_grants_person_role_unit"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    granted_by: Mapped[str] = mapped_column(String(200))


class LoginSession(db.Model):
    """One login, server-side: the cookie holds only its random id.

    Ending a row (logout, timeout, an IdP's logout request) ends the login on every device
    that holds its cookie. SSO logins keep what the IdP needs to end its own session: the
    provider, the SAML NameID and SessionIndex, or the OIDC ID token (for id_token_hint).
    """

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # local, saml or oidc
    # identity_providers.id; no foreign key so that portal stays free of the sso tables.
    provider_id: Mapped[int | None] = mapped_column(index=True)
    name_id: Mapped[str] = mapped_column(String(1024), default="", index=True)
    name_id_format: Mapped[str] = mapped_column(String(255), default="")
    session_index: Mapped[str] = mapped_column(String(255), default="")
    id_token: Mapped[str] = mapped_column(Text, default="")
    logout_state: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column(index=True)
    end_reason: Mapped[str] = mapped_column(String(20), default="")

    @property
    def is_ended(self) -> bool:
        return self.ended_at is not None
