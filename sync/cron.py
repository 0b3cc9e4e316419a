"""Cron expressions as IT admins write them, turned into APScheduler triggers.

APScheduler 3 numbers weekdays from Monday (0) where cron numbers them from Sunday (0 or 7),
and its `CronTrigger.from_crontab` passes the numbers through unchanged: "1-5" would run
Tuesday to Saturday. Here the weekday field is translated to day names first, so "1-5" is
Monday to Friday, as in crontab(5).

TODO: when both day-of-month and weekday are restricted, cron runs on either and APScheduler
only on days matching both; nobody has asked for such a schedule yet.
"""

from datetime import datetime
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


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


def trigger(cron: str, zone: str) -> LocalCronTrigger:
    """The trigger of a five-field cron expression in time zone `zone`; ValueError if bad."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError("a cron expression has five fields")
    minute, hour, day, month, weekday = fields
    return LocalCronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=weekday_names(weekday),
        timezone=ZoneInfo(zone),
    )


def is_valid(cron: str) -> bool:
    try:
        trigger(cron, "UTC")
    except ValueError:
        return False
    return True


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
