"""The personal iCal feed: a secret URL per person, events with TZID across clock changes."""

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar
from sqlalchemy import select

from portal.core.audit import AuditEntry
from portal.core.db import db, utcnow
from portal.courses.calendar import renew_calendar_feed
from portal.courses.models import CalendarFeed
from portal.courses.operations import cancel_activity, sign_up
from tests.conftest import csrf_token

COPENHAGEN = ZoneInfo("Europe/Copenhagen")


def clock_changes(year: int) -> tuple[date, date]:
    """The last Sundays of October of `year` and of March after it (the EU's changes)."""
    october = max(date(year, 10, d) for d in range(25, 32) if date(year, 10, d).weekday() == 6)
    march = max(date(year + 1, 3, d) for d in range(25, 32) if date(year + 1, 3, d).weekday() == 6)
    return october, march


def at_nine(day: date) -> datetime:
    return datetime.combine(day, time(9), tzinfo=COPENHAGEN).astimezone(UTC)


def feed_url(token: str) -> str:
    return f"/calendar/{token}.ics"


def events(response) -> dict[str, dict]:
    """The feed's events by summary, parsed by icalendar (not by our own code)."""
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    calendar = Calendar.from_ical(response.get_data())
    assert [tz["TZID"] for tz in calendar.walk("VTIMEZONE")] == ["Europe/Copenhagen"]
    return {str(e["SUMMARY"]): e for e in calendar.walk("VEVENT")}


def test_feed_lists_signups_with_tzid_across_both_clock_changes(app, client, make_activity, person):
    anna = person("anna")
    october, march = clock_changes(utcnow().year + 1)
    day = timedelta(days=1)
    # 09:00 local on the Saturday before and the Monday after each change.
    times = {
        "Before October": at_nine(october - day),  # CEST, UTC+2
        "After October": at_nine(october + day),  # CET, UTC+1
        "Before March": at_nine(march - day),  # CET
        "After March": at_nine(march + day),  # CEST
    }
    for title, starts in times.items():
        activity = make_activity("10", title=title, starts_at=starts, location="Room 7")
        sign_up(activity.id, anna, actor="test")
    token = renew_calendar_feed(anna, actor="test")
    db.session.commit()

    found = events(client.get(feed_url(token)))

    assert set(found) == set(times)
    for title, starts in times.items():
        event = found[title]
        start, end = event.decoded("DTSTART"), event.decoded("DTEND")
        assert event["DTSTART"].params["TZID"] == "Europe/Copenhagen"
        assert event["DTEND"].params["TZID"] == "Europe/Copenhagen"
        assert (start.hour, start.minute) == (9, 0), title
        assert start.astimezone(UTC) == starts
        assert (end - start).total_seconds() == 3 * 3600
        assert str(event["LOCATION"]) == "Room 7"
        assert str(event["STATUS"]) == "CONFIRMED"
    assert times["Before October"].hour == 7 and times["After October"].hour == 8
    raw = client.get(feed_url(token)).get_data(as_text=True)
    assert f"DTSTART;TZID=Europe/Copenhagen:{october - day:%Y%m%d}T090000" in raw


def test_uid_is_stable_and_cancelled_activity_is_cancelled(app, client, make_activity, person):
    full = make_activity("10", title="Full", capacity=1)
    other = make_activity("10", title="Other")
    sign_up(full.id, person("hanne"), actor="test")
    sign_up(full.id, person("anna"), actor="test")  # waitlisted
    signup = sign_up(other.id, person("anna"), actor="test")
    token = renew_calendar_feed(person("anna"), actor="test")
    db.session.commit()
    first = events(client.get(feed_url(token)))

    cancel_activity(other.id, actor="test")
    db.session.commit()
    second = events(client.get(feed_url(token)))

    assert first["Other"]["UID"] == second["Other"]["UID"] == f"signup-{signup.id}@acme.kursa"
    assert str(first["Other"]["STATUS"]) == "CONFIRMED"
    assert str(second["Other"]["STATUS"]) == "CANCELLED"
    assert str(second["Full (waiting list, number 1)"]["STATUS"]) == "TENTATIVE"


def test_wrong_token_is_404(app, client, person):
    renew_calendar_feed(person("anna"), actor="test")
    db.session.commit()

    assert client.get(feed_url("not-the-token")).status_code == 404
    assert client.get(feed_url("x" * 43)).status_code == 404


def test_renewed_token_invalidates_the_old_one(app, client, person):
    old = renew_calendar_feed(person("anna"), actor="test")
    db.session.commit()
    new = renew_calendar_feed(person("anna"), actor="test")
    db.session.commit()

    assert client.get(feed_url(old)).status_code == 404
    assert client.get(feed_url(new)).status_code == 200
    feed = db.session.scalar(select(CalendarFeed))
    assert new not in feed.token_hash and len(feed.token_hash) == 64  # only the hash is kept
    actions = db.session.scalars(select(AuditEntry.action)).all()
    assert {"calendar_feed.created", "calendar_feed.renewed"} <= set(actions)


def test_inactive_persons_feed_is_404(app, client, person):
    token = renew_calendar_feed(person("anna"), actor="test")
    person("anna").is_active = False  # as a sync does when the person leaves
    db.session.commit()

    assert client.get(feed_url(token)).status_code == 404


def test_feed_page_shows_the_url_once_and_renews_it(login_as, person, caplog):
    anna = login_as("anna")
    page = anna.get("/courses/calendar").get_data(as_text=True)
    assert "no calendar feed yet" in page

    made = anna.post(
        "/courses/calendar", data={"csrf_token": csrf_token(anna, "/courses/calendar")}
    )

    html = made.get_data(as_text=True)
    url = re.search(r'value="(http://[^"]+\.ics)"', html).group(1)
    assert made.headers["Cache-Control"] == "no-store"
    assert anna.get(url).status_code == 200
    again = anna.get("/courses/calendar").get_data(as_text=True)
    assert url not in again and "Renew the address" in again
    token = url.rsplit("/", 1)[1].removesuffix(".ics")
    assert token not in caplog.text


def test_feed_page_needs_a_login(app, client):
    assert client.get("/courses/calendar").status_code == 302
