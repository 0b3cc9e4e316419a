"""What a plan is made of: changes, the final state of what it writes, and the checks on values
every source's records must pass."""

import re
from collections import defaultdict, namedtuple
from dataclasses import dataclass, field

from portal.core.db import db
from portal.directory.models import OrgUnit, Person
from sync.records import Issue, SourceData

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PERSON_FIELDS = ("username", "first_name", "last_name", "email", "employee_number")
ROOT = None  # the key of the customer's root unit in plan terms
MAX_DEPTH = 300  # levels below the customer; a path of 300 ids still fits a PostgreSQL index


@dataclass(slots=True)
class Change:
    entity: str  # "unit" or "person"
    action: str  # created, updated, moved, inactivated, reactivated
    key: str  # unit number or username, as shown to people
    entity_id: int | None
    before: dict | None
    after: dict | None


@dataclass(slots=True)
class UnitWrite:
    """The final state of a unit this run creates or changes."""

    key: str
    id: int | None
    number: str
    name: str
    kind: str
    parent_key: str | None
    anchor: str | None
    is_active: bool


@dataclass(slots=True)
class PersonWrite:
    """The final state of a person this run creates or changes."""

    id: int | None
    username: str
    first_name: str
    last_name: str
    email: str | None
    employee_number: str | None
    unit_key: str | None  # a planned unit's key; None means the customer's root unit
    anchor: str | None
    is_active: bool
    active_changed: bool


@dataclass
class ChangeSet:
    customer_id: int
    source_label: str
    changes: list[Change] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    units: list[UnitWrite] = field(default_factory=list)  # parents before children
    persons: list[PersonWrite] = field(default_factory=list)
    unit_ids: dict[str, int] = field(default_factory=dict)  # key -> id of existing units
    active_persons_before: int = 0
    fatal: bool = False

    def count(self, entity: str, action: str) -> int:
        return sum(1 for c in self.changes if c.entity == entity and c.action == action)

    def counts(self) -> dict:
        tally: dict[tuple[str, str], int] = defaultdict(int)
        for change in self.changes:
            tally[change.entity, change.action] += 1
        return counts_from_tally(tally)


def counts_from_tally(tally) -> dict:
    """The counts object of the run report and the JSON contract."""
    return {
        "units": {
            "created": tally["unit", "created"],
            # Reactivating a unit is reported as an update: the contract has no slot for it.
            "updated": tally["unit", "updated"] + tally["unit", "reactivated"],
            "moved": tally["unit", "moved"],
            "inactivated": tally["unit", "inactivated"],
        },
        "persons": {
            action: tally["person", action]
            for action in ("created", "updated", "moved", "inactivated", "reactivated")
        },
    }


# The longest value each column holds; a longer one is a rejected row, on every engine.
PERSON_LIMITS = {
    name: Person.__table__.c[name].type.length
    for name in ("username", "first_name", "last_name", "email", "employee_number")
}
UNIT_LIMITS = {name: OrgUnit.__table__.c[name].type.length for name in ("number", "name")}
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def value_problem(value: str | None, limit: int) -> str | None:
    if not value:
        return None
    if len(value) > limit:
        return f"The value is {len(value)} characters long; at most {limit} fit."
    if CONTROL_CHARS.search(value):
        return "The value holds a control character (such as NUL); re-export the file."
    return None


ExistingUnit = namedtuple("ExistingUnit", "id parent_id number name kind anchor is_active")
ExistingPerson = namedtuple(
    "ExistingPerson",
    "id username first_name last_name email employee_number unit_id anchor source is_active",
)


def snapshot(row_type, statement) -> list:
    """The rows as plain named tuples, read straight from the driver's cursor.

    A daily run compares 100,000s of persons; SQLAlchemy's Row objects cost more than the
    query itself, and only plain columns without type conversion are read here.
    """
    result = db.session.connection().execute(statement)
    try:
        return list(map(row_type._make, result.cursor.fetchall()))
    finally:
        result.close()


def source_label(data: SourceData) -> str:
    return f"{data.kind}:{data.source_name}" if data.source_name else data.kind
