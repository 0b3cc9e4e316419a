"""What the `flask ...` commands share: a refusal is exit 1 with its sentence."""

from collections.abc import Iterator
from contextlib import contextmanager

import click

from portal.core.db import db
from portal.core.errors import UserError


@contextmanager
def refusals() -> Iterator[None]:
    """Turn a UserError raised inside into exit 1 with its message, after rolling back, so a
    refused command leaves nothing half done. Other exceptions pass through."""
    try:
        yield
    except UserError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
