"""Categories, templates, activities, signups, and the outbox of notifications."""

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.core.db import TimestampMixin, db, utcnow
from portal.directory.models import OrgUnit, Person

Money = Numeric(10, 2)


class ActivityStatus(enum.StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class SignupStatus(enum.StrEnum):
    REGISTERED = "registered"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"
    ATTENDED = "attended"
    NO_SHOW = "no_show"
    COMPLETED = "completed"


# Statuses that hold a seat: attendance is recorded on registered persons, who keep the seat.
SEAT_HOLDING = (
    SignupStatus.REGISTERED,
    SignupStatus.ATTENDED,
    SignupStatus.NO_SHOW,
    SignupStatus.COMPLETED,
)


class Category(TimestampMixin, db.Model):
    """A node of a tree of categories, owned by a unit (its course admins manage it)."""

    __tablename__ = "course_categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    owner_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("course_categories.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))

    owner_unit: Mapped[OrgUnit] = relationship()
    parent: Mapped["Category | None"] = relationship(remote_side=[id])


class ActivityTemplate(TimestampMixin, db.Model):
    """What an activity is made from; an activity made from it keeps the link."""

    __tablename__ = "activity_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    owner_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("course_categories.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    duration_minutes: Mapped[int | None] = mapped_column()
    capacity: Mapped[int | None] = mapped_column()
    price: Mapped[Decimal | None] = mapped_column(Money)
    default_location: Mapped[str] = mapped_column(String(200), default="")

    owner_unit: Mapped[OrgUnit] = relationship()
    category: Mapped[Category | None] = relationship()


class Activity(TimestampMixin, db.Model):
    """A dated course or event. Times are UTC; pages show them in the customer's zone."""

    __tablename__ = "activities"
    __table_args__ = (
        Index("ix_activities_owner_status_start", "owner_unit_id", "status", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    owner_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))
    template_id: Mapped[int | None] = mapped_column(ForeignKey("activity_templates.id"))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("course_categories.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    location: Mapped[str] = mapped_column(String(200), default="")
    capacity: Mapped[int] = mapped_column()
    min_participants: Mapped[int] = mapped_column(default=0)
    signup_opens_at: Mapped[datetime | None] = mapped_column()
    signup_deadline_at: Mapped[datetime | None] = mapped_column()
    cancellation_deadline_at: Mapped[datetime | None] = mapped_column()
    price: Mapped[Decimal | None] = mapped_column(Money)
    instructor: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default=ActivityStatus.DRAFT.value)

    owner_unit: Mapped[OrgUnit] = relationship()
    template: Mapped[ActivityTemplate | None] = relationship()
    category: Mapped[Category | None] = relationship()

    def signup_deadline(self) -> datetime:
        """When signing up (and promotion from the waiting list) stops: the deadline if set,
        else the start."""
        return self.signup_deadline_at or self.starts_at


class Signup(TimestampMixin, db.Model):
    """One person on one activity. `position` is set (1, 2, ...) only while waitlisted."""

    __tablename__ = "signups"
    __table_args__ = (
        UniqueConstraint("activity_id", "person_id", name="uq_signups_activity_person"),
        Index("ix_signups_activity_status_position", "activity_id", "status", "position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    position: Mapped[int | None] = mapped_column()
    signed_up_by: Mapped[str] = mapped_column(String(200))

    activity: Mapped[Activity] = relationship()
    person: Mapped[Person] = relationship()


class OutboxMessage(db.Model):
    """A notification waiting to be sent (by SMTP when configured), so an outage loses none.

    TODO: move to portal/core when a second package notifies; courses are the first sender.
    """

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(50))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    activity_id: Mapped[int | None] = mapped_column(ForeignKey("activities.id"))
    payload: Mapped[dict] = mapped_column(default=dict)
    sent_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    # Not tried again before this (a failed attempt waits longer each time, up to a cap).
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    # Given up: refused for good by the mail server too often, or the person has no address.
    # The row stays with its last error, so nothing is lost silently.
    failed_at: Mapped[datetime | None] = mapped_column()


class CalendarFeed(TimestampMixin, db.Model):
    """A person's personal iCal feed. Only the SHA-256 of its token is kept: the token is a
    bearer credential (anyone holding the URL reads the person's courses), so a leaked backup
    or database read must not hand out working URLs. A 32-byte random token needs no slow hash.
    """

    __tablename__ = "calendar_feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last_used_at: Mapped[datetime | None] = mapped_column()
