"""Read-only questions about the tree: branches, counts, search."""

from sqlalchemy import ColumnElement, Select, func, or_, select

from portal.core.db import branch_bounds, contains_text, db
from portal.directory.models import Customer, OrgUnit, Person

# Letters of Nordic and German names, each with the two ways people type it on an English
# keyboard: without the mark ("kare" for Kåre) and spelt out ("aase" for Åse). A name matches a
# search word in either spelling. SQLite's lower() leaves these letters as they are, so both
# cases are listed and replaced in SQL, which works the same on SQLite and PostgreSQL.
LETTER_SPELLINGS = {
    "å": ("a", "aa"),
    "æ": ("ae", "ae"),
    "ø": ("o", "oe"),
    "ä": ("a", "ae"),
    "ö": ("o", "oe"),
    "ü": ("u", "ue"),
    "é": ("e", "e"),
    "è": ("e", "e"),
    "á": ("a", "a"),
    "ó": ("o", "o"),
    "ß": ("ss", "ss"),
}
SPELLINGS = (0, 1)


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


def person_by_username(username: str) -> Person | None:
    return db.session.scalar(
        select(Person).where(func.lower(Person.username) == username.strip().lower())
    )


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
        names = [
            contains_text(folded(column, spelling), fold(word, spelling))
            for column in (Person.first_name, Person.last_name)
            for spelling in SPELLINGS
        ]
        fields = (Person.username, Person.employee_number, Person.email)
        query = query.where(
            or_(*(contains_text(func.lower(field), word.lower()) for field in fields), *names)
        )
    return query.order_by(Person.last_name, Person.first_name, Person.id)


def fold(text: str, spelling: int) -> str:
    """`text` in lower case with its special letters written in plain ASCII, one of two ways."""
    text = text.lower()
    for letter, spelt in LETTER_SPELLINGS.items():
        text = text.replace(letter, spelt[spelling])
    return text


def folded(column, spelling: int) -> ColumnElement[str]:
    """The SQL twin of `fold`: nested replace() calls around lower(column)."""
    expression = func.lower(column)
    for letter, spelt in LETTER_SPELLINGS.items():
        upper = letter.upper()
        for case in (letter, upper) if len(upper) == 1 else (letter,):  # "ß".upper() is "SS"
            expression = func.replace(expression, case, spelt[spelling])
    return expression
