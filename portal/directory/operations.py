"""State changes of the directory that are not a sync: customers, single units and persons."""

import logging
import re

from sqlalchemy import func, select

from portal.core import audit
from portal.core.db import db
from portal.core.errors import Conflict, UserError
from portal.directory.models import Customer, MatchBy, OrgUnit, Person, UnitKind
from portal.directory.usernames import username_problem

logger = logging.getLogger(__name__)
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,49}$")


def create_customer(
    slug: str,
    name: str,
    *,
    actor: str,
    username_prefix: str = "",
    match_by: str = MatchBy.NUMBER.value,
) -> Customer:
    """Create a customer with its root unit."""
    if not SLUG_RE.match(slug):
        raise UserError(
            "The customer slug must be lower-case letters, digits and '-', "
            "starting with a letter or digit, at most 50 characters."
        )
    if match_by not in {m.value for m in MatchBy}:
        raise UserError("match-by must be 'number' or 'name'.")
    if username_prefix and not re.match(r"^[\w.@+-]{1,30}$", username_prefix):
        raise UserError("The username prefix may only hold letters, digits and . _ - @ +.")
    if not name.strip():
        raise UserError("The customer needs a name.")
    if db.session.scalar(select(Customer.id).where(Customer.slug == slug)):
        raise Conflict(f"A customer with the slug {slug!r} exists already.")

    customer = Customer(
        slug=slug, name=name.strip(), username_prefix=username_prefix, match_by=match_by
    )
    db.session.add(customer)
    db.session.flush()
    root = OrgUnit(customer_id=customer.id, kind=UnitKind.CUSTOMER.value, name=customer.name)
    db.session.add(root)
    db.session.flush()
    root.path = f"/{root.id}/"
    customer.root_unit_id = root.id
    db.session.flush()

    audit.record(actor, "customer.created", "customer", customer.id, slug=slug)
    logger.info("customer %s created by %s", slug, actor)
    return customer


def set_creating_persons_at_login(customer: Customer, enabled: bool, *, actor: str) -> None:
    """Let a first SSO login create the person (for customers without a directory sync)."""
    customer.is_creating_persons_at_login = enabled
    audit.record(actor, "customer.changed", "customer", customer.id, creating_persons=enabled)
    logger.info("customer %s: persons at first login %s by %s", customer.id, enabled, actor)


def create_person(
    unit: OrgUnit,
    *,
    username: str,
    first_name: str,
    last_name: str,
    email: str | None,
    source: str,
    actor: str,
) -> Person:
    """Create one person in `unit` (outside a sync); the username must pass the usual rules."""
    customer = db.session.get(Customer, unit.customer_id)
    problem = username_problem(username, first_name, last_name, customer.username_prefix)
    if problem:
        raise UserError(f"username: {problem}")
    if db.session.scalar(select(Person.id).where(func.lower(Person.username) == username.lower())):
        raise Conflict(f"username: a person named {username!r} exists already.")
    person = Person(
        customer_id=customer.id,
        unit_id=unit.id,
        username=username,
        first_name=first_name[:100],
        last_name=last_name[:100],
        email=(email or None) and email[:254],
        source=source[:100],
    )
    db.session.add(person)
    db.session.flush()
    audit.record(actor, "person.created", "person", person.id, unit=unit.id, source=source)
    logger.info("person %s created in unit %s by %s", person.id, unit.id, actor)
    return person
