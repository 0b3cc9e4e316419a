"""State changes of the directory that are not a sync: customers and single units."""

import logging
import re

from sqlalchemy import select

from portal.core import audit
from portal.core.db import db
from portal.core.errors import Conflict, UserError
from portal.directory.models import Customer, MatchBy, OrgUnit, UnitKind

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
