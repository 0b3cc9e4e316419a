"""Personal iCal feeds: a secret URL per person that calendar apps poll for their courses.

The URL carries a random token (32 bytes, URL-safe); the database keeps only its SHA-256, so
the feed of a person is found by hashing what the URL brings. Renewing replaces the hash, and
the old URL answers 404 from then on.
"""

import hashlib
import logging
import secrets
from datetime import timedelta

from icalendar import Calendar, Event
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from portal.core import audit
from portal.core.db import db, utcnow
from portal.courses.models import (
    SEAT_HOLDING,
    Activity,
    ActivityStatus,
    CalendarFeed,
    Signup,
    SignupStatus,
)
from portal.courses.times import zone_of
from portal.directory.models import Customer, Person

logger = logging.getLogger(__name__)
IN_FEED = (*SEAT_HOLDING, SignupStatus.WAITLISTED)
# A feed shows this much history; calendar apps keep what they fetched before.
HISTORY = timedelta(days=365)


def renew_calendar_feed(person: Person, *, actor: str) -> str:
    """A new token for `person`'s feed (the first, or one replacing the old). Returns the
    token: it is shown once and never stored."""
    token = secrets.token_urlsafe(32)
    feed = db.session.scalar(select(CalendarFeed).where(CalendarFeed.person_id == person.id))
    renewed = feed is not None
    if feed is None:
        feed = CalendarFeed(person_id=person.id)
        db.session.add(feed)
    feed.token_hash, feed.last_used_at = token_hash(token), None
    db.session.flush()

    action = "calendar_feed.renewed" if renewed else "calendar_feed.created"
    audit.record(actor, action, "person", person.id)
    logger.info("calendar feed of person %s %s by %s", person.id, action.split(".")[1], actor)
    return token


def calendar_feed_of(person: Person) -> CalendarFeed | None:
    return db.session.scalar(select(CalendarFeed).where(CalendarFeed.person_id == person.id))


def person_of_token(token: str) -> Person | None:
    """The active person whose feed `token` opens, else None (unknown, renewed or inactive).

    Marks the feed used: an admin can tell a live feed from a forgotten one.
    """
    if not token or len(token) > 100:
        return None
    feed = db.session.scalar(
        select(CalendarFeed).where(CalendarFeed.token_hash == token_hash(token))
    )
    if feed is None:
        return None
    person = db.session.get(Person, feed.person_id)
    if person is None or not person.is_active:
        return None
    feed.last_used_at = utcnow()
    return person


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def calendar_of(person: Person) -> bytes:
    """The person's registered and waiting signups as an iCalendar document.

    Times carry the customer's zone as TZID, with a VTIMEZONE describing it, so a calendar app
    places a course at the same wall-clock time on both sides of a clock change.
    """
    customer = db.session.get(Customer, person.customer_id)
    zone = zone_of(customer)
    signups = db.session.scalars(
        select(Signup)
        .join(Activity, Signup.activity_id == Activity.id)
        .options(selectinload(Signup.activity))
        .where(
            Signup.person_id == person.id,
            Signup.status.in_(IN_FEED),
            Activity.ends_at >= utcnow() - HISTORY,
        )
        .order_by(Activity.starts_at, Signup.id)
    ).all()

    calendar = Calendar()
    calendar.add("prodid", "-//Kursa//Courses//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", "Kursa courses")
    calendar.add("x-wr-timezone", zone.key)
    for signup in signups:
        calendar.add_component(_event(signup, zone, customer))
    if signups:
        first = signups[0].activity.starts_at.astimezone(zone).date() - timedelta(days=1)
        last = max(s.activity.ends_at for s in signups).astimezone(zone).date()
        calendar.add_missing_timezones(first_date=first, last_date=last + timedelta(days=366))
    return calendar.to_ical()


def _event(signup: Signup, zone, customer: Customer) -> Event:
    activity = signup.activity
    event = Event()
    # Stable per signup: a calendar app updates the event in place when anything changes.
    event.add("uid", f"signup-{signup.id}@{customer.slug}.kursa")
    event.add("dtstamp", utcnow())
    event.add("last-modified", max(signup.updated_at, activity.updated_at))
    event.add("dtstart", activity.starts_at.astimezone(zone))
    event.add("dtend", activity.ends_at.astimezone(zone))
    summary = activity.title
    if signup.status == SignupStatus.WAITLISTED:
        summary = f"{summary} (waiting list, number {signup.position})"
    event.add("summary", summary)
    if activity.location:
        event.add("location", activity.location)
    if activity.description:
        event.add("description", activity.description)
    event.add("status", _status(signup, activity))
    return event


def _status(signup: Signup, activity: Activity) -> str:
    if activity.status == ActivityStatus.CANCELLED:
        return "CANCELLED"
    if signup.status == SignupStatus.WAITLISTED:
        return "TENTATIVE"
    return "CONFIRMED"
