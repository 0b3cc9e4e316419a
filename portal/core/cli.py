"""What the `flask ...` commands share: a refusal is exit 1 with its sentence."""

from collections.abc import Iterator
from contextlib import contextmanager

import click

from portal.core.db import db
from portal.core.errors import UserError
from portal.core.ids import MAX_ID, parse_id


@contextmanager
def refusals() -> Iterator[None]:
    """Turn a UserError raised inside into exit 1 with its message, after rolling back, so a
    refused command leaves nothing half done. Other exceptions pass through."""
    try:
        yield
    except UserError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None


class IdType(click.ParamType):
    """A command's id argument: a whole number a row can have (portal.core.ids), else a usage
    error naming the argument, as for any ill-typed value; never a database error."""

    name = "id"

    def convert(self, value, param, ctx):
        parsed = parse_id(value)
        if parsed is None:
            self.fail(f"{value!r} is not an id (a whole number from 1 to {MAX_ID}).", param, ctx)
        return parsed


ID = IdType()
