"""A customer, unit or person named the way a user types it (slug, unit number, username),
or a refusal that says what to do. The `flask ...` commands find what they act on here."""

from portal.core.errors import NotFound
from portal.directory.models import Customer, OrgUnit, Person
from portal.directory.queries import customer_by_slug, person_by_username
from portal.directory.tree import unit_by_number


def require_customer(slug: str) -> Customer:
    customer = customer_by_slug(slug)
    if customer is None:
        raise NotFound(
            f"No customer with the slug {slug!r}; create it with 'flask customer create'."
        )
    return customer


def require_unit(customer: Customer, number: str) -> OrgUnit:
    unit = unit_by_number(customer, number)
    if unit is None:
        raise NotFound(f"{customer.slug} has no unit numbered {number}.")
    return unit


def require_person(username: str) -> Person:
    person = person_by_username(username)
    if person is None:
        raise NotFound(f"No person with the username {username!r}.")
    return person
