"""Cron expressions as crontab(5) reads them: weekdays from Sunday, and cron's OR rule when
both day fields are restricted."""

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from sync import cron

COPENHAGEN = "Europe/Copenhagen"


def fires(expression: str, start: datetime, end: datetime) -> list[str]:
    """The local fire times from `start` up to `end`, as 'YYYY-MM-DD HH:MM (weekday)'."""
    trigger = cron.trigger(expression, COPENHAGEN)
    found, previous, now = [], None, start
    while True:
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None or fire >= end:
            return found
        found.append(fire.astimezone(trigger.timezone).strftime("%Y-%m-%d %H:%M (%a)"))
        previous, now = fire, fire + timedelta(seconds=1)


DECEMBER = (datetime(2026, 11, 30, 23, tzinfo=UTC), datetime(2026, 12, 31, 23, tzinfo=UTC))


def test_restricted_day_and_weekday_fire_on_either_across_a_month():
    # The 1st and the 15th, and every Monday: cron's OR rule (APScheduler alone would fire
    # only on a Monday that is the 1st or the 15th, i.e. never in December 2026).
    assert fires("0 2 1,15 * 1", *DECEMBER) == [
        "2026-12-01 02:00 (Tue)",
        "2026-12-07 02:00 (Mon)",
        "2026-12-14 02:00 (Mon)",
        "2026-12-15 02:00 (Tue)",
        "2026-12-21 02:00 (Mon)",
        "2026-12-28 02:00 (Mon)",
    ]


def test_a_day_that_matches_both_fields_fires_once():
    # 7 December 2026 is a Monday and the 7th: one run, not two.
    assert fires("30 6 7 * mon", *DECEMBER) == [
        "2026-12-07 06:30 (Mon)",
        "2026-12-14 06:30 (Mon)",
        "2026-12-21 06:30 (Mon)",
        "2026-12-28 06:30 (Mon)",
    ]


@pytest.mark.parametrize(
    "expression, days",
    [
        ("0 2 * * 1", ["07", "14", "21", "28"]),  # weekday alone
        ("0 2 1,15 * *", ["01", "15"]),  # day of month alone
        ("0 2 */10 * 1", ["21"]),  # a day field starting with * is unrestricted: both apply
    ],
)
def test_one_unrestricted_day_field_keeps_the_other_alone(expression, days):
    assert [f[8:10] for f in fires(expression, *DECEMBER)] == days


def test_the_either_day_trigger_survives_the_job_store():
    trigger = cron.trigger("0 2 1,15 * 1", COPENHAGEN)

    copy = pickle.loads(pickle.dumps(trigger))

    start = datetime(2026, 12, 2, tzinfo=UTC)
    assert copy.get_next_fire_time(None, start) == trigger.get_next_fire_time(None, start)


def test_the_either_day_trigger_skips_the_autumn_repeat():
    # 25 October 2026 is the last Sunday of October: 02:30 happens twice in Copenhagen.
    trigger = cron.trigger("30 2 25 * 0", COPENHAGEN)
    first = trigger.get_next_fire_time(None, datetime(2026, 10, 24, 12, tzinfo=UTC))

    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))

    assert second.astimezone(trigger.timezone).date() > first.astimezone(trigger.timezone).date()


@pytest.mark.parametrize(
    ("expression", "named"),
    [
        ("61 * * * *", "The minute field of the schedule is '61': 61 is out of range"),
        ("0 25 * * *", "the hour field takes 0 to 23"),
        ("0 2 32 * *", "the day of month field takes 1 to 31"),
        ("0 2 * 13 *", "the month field takes 1 to 12 (or jan to dec)"),
        ("0 2 * * 8", "the weekday field takes 0 to 7"),
        ("0 2 * * 1-9", "9 is out of range"),
        ("x 2 * * *", "The minute field of the schedule, 'x', is not understood"),
        (
            "0 2 * *",
            "five fields (minute hour day month weekday), e.g. '0 2 * * *'; '0 2 * *' has 4",
        ),
    ],
)
def test_a_wrong_schedule_names_the_field_and_its_range(expression, named):
    problem = cron.problem(expression)

    assert named in problem
    if expression.count(" ") == 4:
        assert "five fields" not in problem, "it has five"


@pytest.mark.parametrize("expression", ["0 2 * * *", "*/15 * * * *", "0 2 1,15 jan mon-fri"])
def test_a_good_schedule_has_no_problem(expression):
    assert cron.problem(expression) == ""
