"""Read-only questions about the tree: branches, counts, search."""

from sqlalchemy import Select, func, or_, select

from portal.core.db import branch_bounds, db
from portal.directory.models import Customer, OrgUnit, Person


def in_branch(path_column, path: str):
    """A SQL condition: `path_column` lies at or below the unit whose path is `path`."""
    low, high = branch_bounds(path)
    return (path_column >= low) & (path_column < high)


def branch_units(unit: OrgUnit) -> Select:
    return select(OrgUnit).where(in_branch(OrgUnit.path, unit.path)).order_by(OrgUnit.path)


def branch_persons(unit: OrgUnit) -> Select:
    return (
        select(Person)
        .join(OrgUnit, Person.unit_id == OrgUnit.id)
        .where(in_branch(OrgUnit.path, unit.path))
    )


def customer_by_slug(slug: str) -> Customer | None:
    return db.session.scalar(select(Customer).where(Customer.slug == slug))


def unit_person_counts(customer: Customer) -> dict[int, tuple[int, int]]:
    """unit id -> (active persons directly in it, all persons directly in it)."""
    rows = db.session.execute(
        select(Person.unit_id, func.count(), func.sum(func.cast(Person.is_active, db.Integer)))
        .where(Person.customer_id == customer.id)
        .group_by(Person.unit_id)
    )
    return {unit_id: (int(active or 0), total) for unit_id, total, active in rows}


def search_persons(
    customer: Customer, text: str = "", unit: OrgUnit | None = None, active: bool | None = None
) -> Select:
    query = select(Person).where(Person.customer_id == customer.id)
    if unit is not None:
        query = query.join(OrgUnit, Person.unit_id == OrgUnit.id).where(
            in_branch(OrgUnit.path, unit.path)
        )
    if active is not None:
        query = query.where(Person.is_active == active)
    for word in text.split():
        like = f"%{word.lower()}%"
        query = query.where(
            or_(
                func.lower(Person.username).like(like),
                func.lower(Person.first_name).like(like),
                func.lower(Person.last_name).like(like),
                func.lower(Person.employee_number).like(like),
                func.lower(Person.email).like(like),
            )
        )
    return query.order_by(Person.last_name, Person.first_name, Person.id)
