"""Times typed in Copenhagen, stored in UTC, across the October and March clock changes."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from portal.core.errors import UserError
from portal.courses.operations import create_activity
from portal.courses.times import parse_local, shown, zone_of

CPH = ZoneInfo("Europe/Copenhagen")


@pytest.mark.parametrize(
    "typed, utc",
    [
        ("2026-10-24T10:00", datetime(2026, 10, 24, 8, 0, tzinfo=UTC)),  # CEST, +02:00
        ("2026-10-25T01:59", datetime(2026, 10, 24, 23, 59, tzinfo=UTC)),
        ("2026-10-25T03:00", datetime(2026, 10, 25, 2, 0, tzinfo=UTC)),  # CET, +01:00
        ("2026-10-26T10:00", datetime(2026, 10, 26, 9, 0, tzinfo=UTC)),
        ("2026-03-28T10:00", datetime(2026, 3, 28, 9, 0, tzinfo=UTC)),  # CET
        ("2026-03-29T01:59", datetime(2026, 3, 29, 0, 59, tzinfo=UTC)),
        ("2026-03-29T03:00", datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),  # CEST
        ("2026-03-30T10:00", datetime(2026, 3, 30, 8, 0, tzinfo=UTC)),
        ("2026-10-25T02:30+02:00", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),  # first 02:30
        ("2026-10-25T02:30+01:00", datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),  # second 02:30
        ("2026-10-24T10:00Z", datetime(2026, 10, 24, 10, 0, tzinfo=UTC)),
    ],
)
def test_local_times_become_utc(typed, utc):
    assert parse_local(typed, CPH) == utc


def test_a_time_skipped_in_march_is_refused():
    with pytest.raises(UserError, match="does not exist .* clocks go forward"):
        parse_local("2026-03-29T02:30", CPH)


def test_a_time_that_happens_twice_in_october_asks_for_the_offset():
    with pytest.raises(UserError, match=r"happens twice .* \+02:00 or \+01:00"):
        parse_local("2026-10-25T02:30", CPH)


def test_an_activity_across_the_october_change_lasts_an_hour_longer(app, unit):
    # 22:00 to 06:00 on the wall clock, the night the clocks go back: nine hours, not eight.
    activity = create_activity(
        unit("10"),
        title="Night shift drill",
        starts_at=parse_local("2026-10-24T22:00", CPH),
        ends_at=parse_local("2026-10-25T06:00", CPH),
        capacity=5,
        actor="test",
    )

    assert (activity.ends_at - activity.starts_at).total_seconds() == 9 * 3600
    assert shown(activity.starts_at, CPH) == "2026-10-24 22:00 CEST"
    assert shown(activity.ends_at, CPH) == "2026-10-25 06:00 CET"


def test_an_activity_across_the_march_change_lasts_an_hour_shorter(app, unit):
    activity = create_activity(
        unit("10"),
        title="Night shift drill",
        starts_at=parse_local("2026-03-28T22:00", CPH),
        ends_at=parse_local("2026-03-29T06:00", CPH),
        capacity=5,
        actor="test",
    )

    assert (activity.ends_at - activity.starts_at).total_seconds() == 7 * 3600
    assert shown(activity.starts_at, CPH) == "2026-03-28 22:00 CET"
    assert shown(activity.ends_at, CPH) == "2026-03-29 06:00 CEST"


def test_times_are_stored_in_utc_and_read_back_aware(app, unit):
    from portal.core.db import db
    from portal.courses.models import Activity

    activity = create_activity(
        unit("10"),
        title="Stored",
        starts_at=parse_local("2026-07-01T09:00", CPH),
        ends_at=parse_local("2026-07-01T10:00", CPH),
        capacity=5,
        actor="test",
    )
    db.session.commit()
    db.session.expire_all()

    again = db.session.get(Activity, activity.id)
    assert again.starts_at == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)


def test_the_customer_zone_is_used_when_set_else_copenhagen(app, acme):
    assert zone_of(acme).key == "Europe/Copenhagen"
    acme.timezone = "Atlantic/Faroe"
    assert zone_of(acme).key == "Atlantic/Faroe"
    assert parse_local("2026-10-26T10:00", zone_of(acme)) == datetime(
        2026, 10, 26, 10, 0, tzinfo=UTC
    )
