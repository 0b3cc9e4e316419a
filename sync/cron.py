"""Cron expressions as IT admins write them, turned into APScheduler triggers.

APScheduler 3 numbers weekdays from Monday (0) where cron numbers them from Sunday (0 or 7),
and its `CronTrigger.from_crontab` passes the numbers through unchanged: "1-5" would run
Tuesday to Saturday. Here the weekday field is translated to day names first, so "1-5" is
Monday to Friday, as in crontab(5).

When both day-of-month and weekday are restricted ("0 2 1,15 * 1": the 1st, the 15th and every
Monday), cron runs on days matching EITHER, where one CronTrigger runs only on days matching
both. Such an expression becomes two triggers, one per day field, and fires at the earlier of
their next times. As in cron, a field starting with "*" ("*/2" too) counts as unrestricted.
"""

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# A schedule that does not fire within this many years never will ("0 2 31 2 *"); 29 February
# comes round within five.
HORIZON_YEARS = 5
# Each field of an expression: its name, the lowest and highest number, and names it takes.
FIELDS = (
    ("minute", 0, 59, ""),
    ("hour", 0, 23, ""),
    ("day of month", 1, 31, ""),
    ("month", 1, 12, " (or jan to dec)"),
    ("weekday", 0, 7, " (0 and 7 are Sunday; or sun to sat)"),
)


class LocalCronTrigger(CronTrigger):
    """A cron trigger that fires once for a wall-clock time the autumn clock change repeats.

    CronTrigger fires "0 2 * * *" in Europe/Copenhagen twice on the last Sunday of October
    (02:00 summer time, then 02:00 winter time an hour later); this one skips the repeat. A
    time the spring change skips (02:30 on the last Sunday of March) fires when the clock
    jumps, as CronTrigger does.
    """

    def get_next_fire_time(self, previous_fire_time, now):
        fire = super().get_next_fire_time(previous_fire_time, now)
        if fire and previous_fire_time and self._wall(fire) == self._wall(previous_fire_time):
            fire = super().get_next_fire_time(fire, fire)
        return fire

    def _wall(self, moment: datetime) -> datetime:
        return moment.astimezone(self.timezone).replace(tzinfo=None)


class EitherDayTrigger(BaseTrigger):
    """Fires when either trigger does (cron's rule for two restricted day fields)."""

    def __init__(self, by_day: LocalCronTrigger, by_weekday: LocalCronTrigger):
        self.triggers = (by_day, by_weekday)
        self.timezone = by_day.timezone

    def get_next_fire_time(self, previous_fire_time, now):
        times = [t.get_next_fire_time(previous_fire_time, now) for t in self.triggers]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def __str__(self) -> str:
        return " or ".join(str(t) for t in self.triggers)


def trigger(
    cron: str, zone: str, *, year: str | None = None
) -> LocalCronTrigger | EitherDayTrigger:
    """The trigger of a five-field cron expression in time zone `zone`; ValueError if bad.

    `year` (APScheduler's year field) limits the years it fires in; None: every year.
    """
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError("a cron expression has five fields")
    minute, hour, day, month, weekday = fields
    common = {
        "minute": minute,
        "hour": hour,
        "month": month,
        "year": year,
        "timezone": ZoneInfo(zone),
    }
    weekdays = weekday_names(weekday)
    if day.startswith("*") or weekday.startswith("*"):
        return LocalCronTrigger(day=day, day_of_week=weekdays, **common)
    return EitherDayTrigger(
        LocalCronTrigger(day=day, day_of_week="*", **common),
        LocalCronTrigger(day="*", day_of_week=weekdays, **common),
    )


def is_valid(cron: str) -> bool:
    try:
        trigger(cron, "UTC")
    except ValueError:
        return False
    return True


def problem(cron: str) -> str:
    """What is wrong with a cron expression, as a sentence an admin can act on; '' if nothing.

    Names the field that is out of range or unreadable and the values it takes, so that
    "61 * * * *" is not answered with "five fields" (it has five).
    """
    fields = cron.split()
    if len(fields) != 5:
        return (
            "The schedule is a cron expression of five fields (minute hour day month weekday), "
            f"e.g. '0 2 * * *'; {cron.strip()!r} has {len(fields)}."
        )
    for (name, low, high, names), value in zip(FIELDS, fields, strict=True):
        out_of_range = [n for n in _numbers(value) if not low <= n <= high]
        if out_of_range:
            return (
                f"The {name} field of the schedule is {value!r}: {out_of_range[0]} is out of "
                f"range; the {name} field takes {low} to {high}{names}."
            )
    for (name, low, high, names), value in zip(FIELDS, fields, strict=True):
        only = ["*"] * 5
        only[[f[0] for f in FIELDS].index(name)] = value
        if not is_valid(" ".join(only)):
            return (
                f"The {name} field of the schedule, {value!r}, is not understood; the {name} "
                f"takes {low} to {high}{names}, lists (1,15), ranges (1-5) and steps (*/15)."
            )
    if not is_valid(cron):
        return "The schedule is not a cron expression the scheduler reads, e.g. '0 2 * * *'."
    return ""


def _numbers(field: str) -> list[int]:
    """The values a field names, leaving out steps ('*/15' names none; '5-70/5' 5 and 70)."""
    return [int(n) for part in field.split(",") for n in re.findall(r"\d+", part.partition("/")[0])]


def ever_fires(cron: str) -> bool:
    """Whether a valid expression fires within HORIZON_YEARS ("0 2 31 2 *" never does).

    The trigger is limited to those years, so an impossible date is found in a few steps
    instead of APScheduler's search up to the year 9999.
    """
    now = datetime.now(UTC)
    years = f"{now.year}-{now.year + HORIZON_YEARS}"
    return trigger(cron, "UTC", year=years).get_next_fire_time(None, now) is not None


def weekday_names(field: str) -> str:
    """Cron's weekday field ('1-5', '0,6', '*/2', 'mon-fri') as APScheduler day names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"bad step in weekday field {field!r}")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            first, last = (_day(x) for x in span.split("-", 1))
            last = 7 if last == 0 and first > 0 else last  # "1-7" and "5-0" end on Sunday
        else:
            first = _day(span)
            last = 6 if step else first
        if first > last:
            raise ValueError(f"weekday range {span!r} runs backwards")
        days.update(d % 7 for d in range(first, last + 1, step or 1))
    return ",".join(DAY_NAMES[d] for d in sorted(days))


def _day(text: str) -> int:
    if text in DAY_NAMES:
        return DAY_NAMES.index(text)
    if text.isdigit() and int(text) <= 7:
        return int(text)
    raise ValueError(f"{text!r} is not a weekday (0-7 or sun-sat)")
