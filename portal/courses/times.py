"""Activity times: typed in the customer's zone, stored in UTC, shown in the zone again."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import current_app

from portal.core.errors import UserError


def zone_of(customer) -> ZoneInfo:
    """The customer's zone, else the configured default (Europe/Copenhagen)."""
    name = getattr(customer, "timezone", None)
    return ZoneInfo(name or current_app.config["KURSA"]["directory"]["default_timezone"])


def parse_local(text: str, zone: ZoneInfo) -> datetime:
    """An ISO time as UTC. With an offset it is taken as given; without, in `zone`.

    A wall-clock time that does not exist (skipped when clocks go forward in March) or exists
    twice (when they go back in October) is refused, since guessing would move a course by an
    hour: the message asks for the offset.
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"{text!r} is not a date and time like 2026-03-29T09:00.") from None
    if value.tzinfo is not None:
        return value.astimezone(UTC)

    first = value.replace(tzinfo=zone, fold=0)
    second = value.replace(tzinfo=zone, fold=1)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != value:
        raise UserError(
            f"{text} does not exist in {zone.key} (the clocks go forward that night); "
            "choose another time."
        )
    if first.utcoffset() != second.utcoffset():
        raise UserError(
            f"{text} happens twice in {zone.key} (the clocks go back that night); "
            "add the offset, e.g. +02:00 or +01:00."
        )
    return first.astimezone(UTC)


def shown(value: datetime | None, zone: ZoneInfo) -> str:
    """'2026-10-26 09:00 CET'."""
    return "" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
