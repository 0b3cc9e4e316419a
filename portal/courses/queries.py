"""Read-only questions about courses: an employee's catalogue, an activity's signups."""

from datetime import datetime

from sqlalchemy import Select, func, or_, select

from portal.core.db import contains_text, db
from portal.courses.models import (
    SEAT_HOLDING,
    Activity,
    ActivityStatus,
    Category,
    Signup,
    SignupStatus,
)
from portal.directory.models import OrgUnit, Person


def path_ids(path: str) -> list[int]:
    """The ids of a unit and its ancestors, read from its materialised path ('/1/7/42/')."""
    return [int(part) for part in path.strip("/").split("/") if part]


def audience_unit_ids(unit: OrgUnit) -> list[int]:
    """Whose activities the unit's persons see: the unit and its ancestors."""
    return path_ids(unit.path)


def catalogue(
    unit: OrgUnit,
    *,
    text: str = "",
    category_id: int | None = None,
    location: str = "",
    starts_from: datetime | None = None,
    starts_before: datetime | None = None,
) -> Select:
    """Published activities owned by `unit` or one of its ancestors, soonest first.

    The ancestors are the ids in the unit's materialised path, so this is an IN over a handful
    of ids on the (owner, status, start) index, whatever the size of the tree.
    """
    query = select(Activity).where(
        Activity.owner_unit_id.in_(audience_unit_ids(unit)),
        Activity.status == ActivityStatus.PUBLISHED,
    )
    if category_id is not None:
        query = query.where(Activity.category_id == category_id)
    if location:
        query = query.where(contains_text(func.lower(Activity.location), location.lower()))
    if starts_from is not None:
        query = query.where(Activity.starts_at >= starts_from)
    if starts_before is not None:
        query = query.where(Activity.starts_at < starts_before)
    for word in text.lower().split():
        query = query.where(
            or_(
                contains_text(func.lower(Activity.title), word),
                contains_text(func.lower(Activity.description), word),
            )
        )
    return query.order_by(Activity.starts_at, Activity.id)


def catalogue_categories(unit: OrgUnit) -> Select:
    """The categories of activities in `unit`'s catalogue, by name: what its persons filter by.

    A category belongs to the course admins of its owner's branch; a person sees its name only
    where an activity offered to them carries it (then the filter narrows to something).
    """
    used = catalogue(unit).with_only_columns(Activity.category_id).order_by(None)
    return select(Category).where(Category.id.in_(used)).order_by(Category.name, Category.id)


def with_free_seats(query: Select) -> Select:
    """Narrow an activity query to those with a seat left."""
    taken = (
        select(func.count())
        .select_from(Signup)
        .where(Signup.activity_id == Activity.id, Signup.status.in_(SEAT_HOLDING))
        .scalar_subquery()
    )
    return query.where(taken < Activity.capacity)


SIGNUP_ORDER = {
    SignupStatus.REGISTERED: 0,
    SignupStatus.ATTENDED: 0,
    SignupStatus.COMPLETED: 0,
    SignupStatus.NO_SHOW: 0,
    SignupStatus.WAITLISTED: 1,
    SignupStatus.CANCELLED: 2,
}


def signups_in_order(activity_id: int) -> list[tuple[Signup, str]]:
    """(signup, username): seat holders in signup order, then the waiting list by position,
    then the cancelled."""
    rows = db.session.execute(
        select(Signup, Person.username)
        .join(Person, Signup.person_id == Person.id)
        .where(Signup.activity_id == activity_id)
        .order_by(Signup.id)
    ).all()
    return sorted(rows, key=lambda r: (SIGNUP_ORDER[r[0].status], r[0].position or 0, r[0].id))


def my_signups(person: Person) -> Select:
    """A person's signups, newest activity first: what 'my activities' lists (history too)."""
    return (
        select(Signup)
        .join(Activity, Signup.activity_id == Activity.id)
        .where(Signup.person_id == person.id)
        .order_by(Activity.starts_at.desc(), Signup.id)
    )
