"""What an address may hold: no control character in a part of the path, no NUL in the query.

A slug, name or id in a route never holds a control character, and PostgreSQL refuses a NUL
in any text parameter (psycopg's DataError: a 500 whose log line carried the value). An
address that holds one names nothing, so it answers the plain 404 before any query is made,
on every engine alike. Form fields are their forms' to check (a value refused there is
answered in that form's words); what none checks is web's last resort (a NUL is a 400).
"""

from flask import abort, request
from werkzeug.routing import UnicodeConverter

CONTROL_CHARACTERS = r"\x00-\x1f\x7f"  # a regex class range


class NameConverter(UnicodeConverter):
    """`<name>` and `<string:name>` in a route: one part of the path without a control
    character; a part with one matches no route (404)."""

    part_isolating = True

    def __init__(self, map, minlength=1, maxlength=None, length=None) -> None:
        super().__init__(map, minlength, maxlength, length)
        self.regex = self.regex.replace("[^/]", f"[^/{CONTROL_CHARACTERS}]", 1)


def register(app) -> None:
    """Make every route's text part a NameConverter (before any blueprint is registered)."""
    app.url_map.converters["default"] = NameConverter
    app.url_map.converters["string"] = NameConverter


def refuse_nul_in_query() -> None:
    """Before a request: a NUL in a query argument's name or value answers 404."""
    for name, values in request.args.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            abort(404)
