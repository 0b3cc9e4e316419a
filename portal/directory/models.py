"""Customers, organisation units and persons."""

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.core.db import PathString, TimestampMixin, db, utcnow


class UnitKind(enum.StrEnum):
    CUSTOMER = "customer"
    DEPARTMENT = "department"
    LOCATION = "location"
    DIVISION = "division"


class MatchBy(enum.StrEnum):
    NUMBER = "number"
    NAME = "name"


class Customer(TimestampMixin, db.Model):
    """A tenant. Its root unit is the top of its organisation tree."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(50), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    username_prefix: Mapped[str] = mapped_column(String(30), default="")
    match_by: Mapped[str] = mapped_column(String(10), default=MatchBy.NUMBER.value)
    timezone: Mapped[str | None] = mapped_column(String(60))
    # A first SSO login of someone no sync knows creates the person (customers without sync).
    is_creating_persons_at_login: Mapped[bool] = mapped_column(default=False)
    root_unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("org_units.id", use_alter=True, ondelete="SET NULL")
    )

    root_unit: Mapped["OrgUnit | None"] = relationship(
        foreign_keys=[root_unit_id], post_update=True
    )

    def __repr__(self) -> str:
        return f"<Customer {self.slug}>"


class OrgUnit(TimestampMixin, db.Model):
    """A node of a customer's tree. `path` is '/<root id>/.../<own id>/'."""

    __tablename__ = "org_units"
    __table_args__ = (
        UniqueConstraint("customer_id", "number", name="uq_org_units_customer_number"),
        Index("ix_org_units_path", "path"),
        Index("ix_org_units_customer_anchor", "customer_id", "anchor"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    path: Mapped[str] = mapped_column(PathString, default="")
    depth: Mapped[int] = mapped_column(default=0)
    kind: Mapped[str] = mapped_column(String(20), default=UnitKind.DEPARTMENT.value)
    number: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    anchor: Mapped[str | None] = mapped_column(String(200))
    # The source that created the unit ("ldap:hq-ad", "file"); a full run of one source
    # inactivates only its own empty units. None: created before sources were recorded.
    source: Mapped[str | None] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(default=True)
    active_changed_at: Mapped[datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship(foreign_keys=[customer_id])
    parent: Mapped["OrgUnit | None"] = relationship(remote_side=[id])

    def __repr__(self) -> str:
        return f"<OrgUnit {self.number or self.id} {self.name!r}>"


class Person(TimestampMixin, db.Model):
    """Someone of a customer's staff, in exactly one unit. Never deleted, only inactivated."""

    __tablename__ = "persons"
    __table_args__ = (
        Index("uq_persons_username_lower", text("lower(username)"), unique=True),
        # Matching a login by email and home realm discovery compare lower(email).
        Index("ix_persons_email_lower", text("lower(email)")),
        Index("ix_persons_customer_anchor", "customer_id", "anchor"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    username: Mapped[str] = mapped_column(String(150))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    employee_number: Mapped[str | None] = mapped_column(String(64))
    anchor: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(100), default="manual")
    is_active: Mapped[bool] = mapped_column(default=True)
    active_changed_at: Mapped[datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship()
    unit: Mapped[OrgUnit] = relationship()

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def __repr__(self) -> str:
        return f"<Person {self.id} {self.username}>"
