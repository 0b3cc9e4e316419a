"""Local accounts. Passwords exist only for platform admins (break-glass); staff use SSO."""

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.db import TimestampMixin, db


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
        return f"account:{self.username}"


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
