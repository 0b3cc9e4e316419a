"""Times are stored in UTC and shown in the customer's zone."""

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app


def local(value: datetime | None, zone: str | None = None) -> datetime | None:
    if value is None:
        return None
    zone = zone or current_app.config["KURSA"]["directory"]["default_timezone"]
    return value.astimezone(ZoneInfo(zone))


def format_local(value: datetime | None, zone: str | None = None) -> str:
    """'2024-01-05 18:34 CET': with the zone's abbreviation, so nobody has to guess it."""
    shown = local(value, zone)
    return "" if shown is None else shown.strftime("%Y-%m-%d %H:%M %Z")
