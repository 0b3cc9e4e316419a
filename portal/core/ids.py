"""Ids from outside (addresses, query strings, form fields): only those a row can have.

Every id column is an `integer`: 64-bit in SQLite but 32-bit in PostgreSQL. A larger number
handed to the database fails there (OverflowError in SQLite, DataError in PostgreSQL), a 500
for what is only an id that names nothing, so such ids are refused before any query.
"""

from werkzeug.routing import IntegerConverter

MAX_ID = 2**31 - 1  # PostgreSQL `integer`, the smallest id column of every engine we run on
MAX_DIGITS = 20  # longer strings of digits are no id, whatever leading zeros they carry


class IdConverter(IntegerConverter):
    """`<id:name>` in a route: an id from 1 to MAX_ID; any other number matches no route,
    so the page answers the plain 404 of an address that does not exist."""

    def __init__(self, map) -> None:
        super().__init__(map, min=1, max=MAX_ID)


def parse_id(value) -> int | None:
    """The id `value` spells (an int, or a str of ASCII digits), or None when no row can have
    it: empty, not a whole number, or outside 1..MAX_ID."""
    if isinstance(value, str):
        value = value.strip()
        # the length first: int() refuses a string of over 4,300 digits with a ValueError
        if not (value.isascii() and value.isdigit()) or len(value) > MAX_DIGITS:
            return None
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return value if 1 <= value <= MAX_ID else None


def register(app) -> None:
    """Make `<id:...>` known to the app's routes (before any blueprint is registered)."""
    app.url_map.converters["id"] = IdConverter
