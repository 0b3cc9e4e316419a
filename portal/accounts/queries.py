"""Queries over accounts for pages: how the account that did something is named."""

from flask import g
from sqlalchemy import select

from portal.accounts.models import ACTOR_PREFIX, Account
from portal.core.db import db
from portal.directory.models import Person


def actor_name(actor: str | None) -> str:
    """An actor as a page names it: an account ('account:u101') by its person's name, or by its
    username when no person is linked (a platform admin); any other actor ('cli', 'scheduler')
    as it is. Audit entries and runs keep the stored value, prefix and all."""
    if not actor or not actor.startswith(ACTOR_PREFIX):
        return actor or ""
    username = actor.removeprefix(ACTOR_PREFIX)
    names = g.setdefault("actor_names", {})  # a page of runs names the same few accounts
    if username not in names:
        names[username] = _account_name(username)
    return names[username]


def _account_name(username: str) -> str:
    row = db.session.execute(
        select(Person.first_name, Person.last_name)
        .select_from(Account)
        .join(Person, Person.id == Account.person_id)
        .where(Account.username == username)
    ).first()
    name = " ".join(part for part in (row or ()) if part)
    return name or username
