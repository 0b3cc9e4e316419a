"""Records versus the directory: the change set a run would make. Reads, never writes.

Units are planned first (parents resolved, cycles refused, order fixed), then persons against
the planned tree, and last the units that left the source: they are inactivated only when
nothing active remains below them.
"""

import re
from collections import defaultdict, namedtuple
from dataclasses import dataclass, field
from operator import gt

from sqlalchemy import func, select

from portal.core.db import db
from portal.directory.models import Customer, OrgUnit, Person
from portal.directory.usernames import username_problem, with_prefix
from sync.records import Issue, PersonRecord, SourceData, UnitRecord

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
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def value_problem(value: str | None, limit: int) -> str | None:
    if not value:
        return None
    if len(value) > limit:
        return f"The value is {len(value)} characters long; at most {limit} fit."
    if _CONTROL.search(value):
        return "The value holds a control character (such as NUL); re-export the file."
    return None


ExistingUnit = namedtuple("ExistingUnit", "id parent_id number name kind anchor is_active")
ExistingPerson = namedtuple(
    "ExistingPerson",
    "id username first_name last_name email employee_number unit_id anchor source is_active",
)


def _snapshot(row_type, statement) -> list:
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


def plan(data: SourceData, customer: Customer) -> ChangeSet:
    """Compare what the source says with the directory and return the changes to make."""
    changes = ChangeSet(customer.id, source_label(data), issues=list(data.issues))
    if data.fatal:
        changes.fatal = True
        return changes
    units = _UnitPlanner(data, customer, changes)
    units.plan()
    if changes.fatal:
        return changes
    _PersonPlanner(data, customer, changes, units).plan()
    units.inactivate_missing()
    return changes


class _UnitPlanner:
    def __init__(self, data: SourceData, customer: Customer, changes: ChangeSet):
        self.data = data
        self.customer = customer
        self.changes = changes
        self.number_header = data.headers.get("org", {}).get("number")
        self.parent_header = data.headers.get("org", {}).get("parent")
        u = OrgUnit.__table__.c
        rows = _snapshot(
            ExistingUnit,
            select(*(u[name] for name in ExistingUnit._fields)).where(
                u.customer_id == customer.id, u.id != customer.root_unit_id
            ),
        )
        key_of_id = {r.id: self._existing_key(r) for r in rows}
        key_of_id[customer.root_unit_id] = ROOT
        self.existing = {key_of_id[r.id]: r for r in rows}
        self.existing_parent = {key_of_id[r.id]: key_of_id.get(r.parent_id) for r in rows}
        self.changes.unit_ids = {key: r.id for key, r in self.existing.items()}
        self.accepted: dict[str, UnitRecord] = {}
        self.protected: set[str] = set(data.rejected_unit_keys)
        self.final_parent: dict[str, str | None] = {}
        self.final_active: dict[str, bool] = {k: r.is_active for k, r in self.existing.items()}
        self.depth: dict[str | None, int] = {ROOT: 0}

    def _existing_key(self, row) -> str:
        if self.data.unit_match == "anchor":
            # A unit without an anchor (made by a file import) is never matched by one, and
            # must not share the root's key (None).
            return row.anchor or f"\x00unit:{row.id}"
        return row.number

    def plan(self) -> None:
        self._accept_unique()
        self._resolve_parents()
        if self._refuse_cycles():
            return
        ordered = self._ordered(self.accepted)
        if self._refuse_depth(ordered):
            return
        for key in ordered:
            self._compare(self.accepted[key])

    def _refuse_depth(self, ordered: list[str]) -> bool:
        """A path must fit one database index entry, so the tree has a (generous) depth limit."""
        deepest = max(ordered, key=lambda k: self.depth[k], default=None)
        if deepest is None or self.depth[deepest] <= MAX_DEPTH:
            return False
        record = self.accepted[deepest]
        self._issue(
            record,
            f"The organisation tree would be {self.depth[deepest]} levels deep "
            f"below unit {record.number}; Kursa keeps trees of up to {MAX_DEPTH} levels. "
            "Nothing was changed.",
            self.parent_header,
            record.parent_key,
        )
        self.changes.fatal = True
        return True

    def _accept_unique(self) -> None:
        by_key: dict[str, list[UnitRecord]] = defaultdict(list)
        for record in self.data.units:
            by_key[record.key].append(record)
        for key, records in by_key.items():
            if len(records) == 1:
                if self._value_problem(records[0]):
                    self.protected.add(key)
                else:
                    self.accepted[key] = records[0]
                continue
            rows = ", ".join(str(r.row) for r in records)
            for record in records:
                self._issue(
                    record,
                    f"The unit number {record.number} appears in rows {rows}; "
                    "each of these rows is skipped.",
                    self.number_header,
                    record.number,
                )
            self.protected.add(key)

    def _value_problem(self, record: UnitRecord) -> bool:
        headers = self.data.headers.get("org", {})
        for name, limit in UNIT_LIMITS.items():
            problem = value_problem(getattr(record, name), limit)
            if problem:
                self._issue(record, problem, headers.get(name, name), getattr(record, name)[:200])
                return True
        return False

    def _resolve_parents(self) -> None:
        """Drop units whose parent is neither accepted nor in Kursa, and their descendants."""
        self.final_parent = dict(self.existing_parent)
        pending = dict(self.accepted)
        changed = True
        while changed:
            changed = False
            for key, record in list(pending.items()):
                parent = record.parent_key
                if parent is ROOT or parent in self.accepted or parent in self.existing:
                    continue
                if parent in self.protected or parent in self.data.rejected_unit_keys:
                    message = (
                        f"The parent unit {parent} was rejected in its own row, so this "
                        "unit is skipped too."
                    )
                else:
                    message = (
                        f"The parent unit {parent} is neither in the organisation file "
                        "nor in Kursa."
                    )
                self._issue(record, message, self.parent_header, parent)
                self.protected.add(key)
                del self.accepted[key]
                del pending[key]
                changed = True
        for key, record in self.accepted.items():
            self.final_parent[key] = record.parent_key

    def _refuse_cycles(self) -> bool:
        state: dict[str, int] = {}  # 1: on the current walk, 2: known to reach the root
        for start in self.final_parent:
            walk: list[str] = []
            key = start
            while key is not ROOT and state.get(key) != 2:
                if state.get(key) == 1:
                    self._report_cycle(walk[walk.index(key) :])
                    return True
                state[key] = 1
                walk.append(key)
                key = self.final_parent.get(key)
            for seen in walk:
                state[seen] = 2
        return False

    def _report_cycle(self, cycle: list[str]) -> None:
        chain = " → ".join([*cycle, cycle[0]])
        for key in cycle:
            record = self.accepted.get(key)
            message = (
                f"The units {chain} form a cycle: a unit cannot be its own ancestor. "
                "Nothing was changed."
            )
            if record is not None:
                self._issue(record, message, self.parent_header, record.parent_key)
        self.changes.fatal = True

    def _ordered(self, keys) -> list[str]:
        """Parents before children (the tree has no cycles by now). Iterative: trees may be
        deeper than Python's recursion limit."""
        depth = self.depth
        for start in keys:
            chain, key = [], start
            while key not in depth:
                chain.append(key)
                key = self.final_parent.get(key)
            for below in reversed(chain):
                depth[below] = depth[key] + 1
                key = below
        return sorted(keys, key=lambda k: (depth[k], k))

    def _compare(self, record: UnitRecord) -> None:
        old = self.existing.get(record.key)
        parent_number = self.number_of(record.parent_key)
        write = UnitWrite(
            record.key,
            old.id if old else None,
            record.number,
            record.name,
            record.kind,
            record.parent_key,
            record.key if self.data.unit_match == "anchor" else (old.anchor if old else None),
            True,
        )
        self.final_active[record.key] = True
        if old is None:
            self._change(
                "created",
                record.key,
                None,
                None,
                {
                    "number": record.number,
                    "name": record.name,
                    "kind": record.kind,
                    "parent": parent_number,
                },
            )
            self.changes.units.append(write)
            return
        touched = False
        if not old.is_active:
            self._change("reactivated", record.key, old.id, {"active": False}, {"active": True})
            touched = True
        before = {
            f: getattr(old, f)
            for f in ("number", "name", "kind")
            if getattr(old, f) != getattr(record, f)
        }
        if before:
            after = {f: getattr(record, f) for f in before}
            self._change("updated", record.key, old.id, before, after)
            touched = True
        if self.existing_parent[record.key] != record.parent_key:
            self._change(
                "moved",
                record.key,
                old.id,
                {"parent": self.number_of(self.existing_parent[record.key])},
                {"parent": parent_number},
            )
            touched = True
        if touched:
            self.changes.units.append(write)

    def number_of(self, key: str | None) -> str | None:
        if key is ROOT:
            return None
        if key in self.accepted:
            return self.accepted[key].number
        return self.existing[key].number

    def is_usable(self, key: str) -> bool:
        """A person may be placed in this unit: planned, or active in Kursa."""
        return key in self.accepted or (key in self.existing and self.existing[key].is_active)

    def inactivate_missing(self) -> None:
        if not self.data.units_complete or self.changes.fatal:
            return
        gone = [
            k
            for k, r in self.existing.items()
            if r.is_active and k not in self.accepted and k not in self.protected
        ]
        if not gone:
            return
        active_children: dict[str | None, int] = defaultdict(int)
        for key, active in self.final_active.items():
            if active:
                active_children[self.final_parent.get(key)] += 1
        persons_in = self.active_persons_per_unit
        for key in reversed(self._ordered(gone)):
            units, persons = active_children[key], persons_in.get(key, 0)
            row = self.existing[key]
            if units or persons:
                reason = []
                if persons:
                    reason.append(f"{persons} active person{'s' if persons != 1 else ''}")
                if units:
                    reason.append(f"{units} active unit{'s' if units != 1 else ''}")
                verb = "remain" if persons + units > 1 else "remains"
                self.changes.issues.append(
                    Issue(
                        f"Unit {row.number} ({row.name}) is not in the source any more but stays "
                        f"active: {' and '.join(reason)} {verb} below it.",
                        severity="notice",
                        column=self.number_header,
                        value=row.number,
                    )
                )
                continue
            self.final_active[key] = False
            active_children[self.final_parent.get(key)] -= 1
            self._change("inactivated", key, row.id, {"active": True}, {"active": False})
            self.changes.units.append(
                UnitWrite(
                    key,
                    row.id,
                    row.number,
                    row.name,
                    row.kind,
                    self.final_parent.get(key),
                    row.anchor,
                    False,
                )
            )

    def _change(self, action, key, unit_id, before, after) -> None:
        number = self.number_of(key)
        self.changes.changes.append(Change("unit", action, number, unit_id, before, after))

    def _issue(self, record: UnitRecord, message: str, column, value) -> None:
        self.changes.issues.append(Issue(message, record.file, record.row, column, value))


class _PersonPlanner:
    def __init__(
        self, data: SourceData, customer: Customer, changes: ChangeSet, units: _UnitPlanner
    ):
        self.data = data
        self.customer = customer
        self.changes = changes
        self.units = units
        self.headers = data.headers.get("persons", {})
        self.unit_header = self.headers.get(
            "division_number" if data.person_unit_by == "number" else "division_name"
        )
        p = Person.__table__.c
        rows = _snapshot(
            ExistingPerson,
            select(*(p[name] for name in ExistingPerson._fields)).where(
                p.customer_id == customer.id
            ),
        )
        self.by_username = {r.username.lower(): r for r in rows}
        self.by_anchor = {r.anchor: r for r in rows if r.anchor}
        changes.active_persons_before = sum(1 for r in rows if r.is_active)
        key_of_id = {uid: key for key, uid in changes.unit_ids.items()}
        key_of_id[customer.root_unit_id] = ROOT
        self.unit_key_of_id = key_of_id
        self.unit_by_name = self._units_by_name() if data.person_unit_by == "name" else {}
        self.seen: set[int] = set()
        self.protected: set[int] = set()
        optional = ("email", "employee_number")
        self.absent = [f for f in optional if self.headers and f not in self.headers]
        self.active_per_unit: dict[str | None, int] = defaultdict(int)

    def _units_by_name(self) -> dict[str, list[str]]:
        names: dict[str, list[str]] = defaultdict(list)
        for key, record in self.units.accepted.items():
            names[record.name.casefold()].append(key)
        for key, row in self.units.existing.items():
            if key not in self.units.accepted and row.is_active:
                names[row.name.casefold()].append(key)
        return names

    def plan(self) -> None:
        prefix = self.customer.username_prefix
        records: dict[str, list[PersonRecord]] = defaultdict(list)
        for record in self.data.persons:
            record.raw_username = record.raw_username or record.username
            record.username = with_prefix(record.username, prefix) if record.username else ""
            records[record.username.lower()].append(record)
        self.taken_elsewhere = self._find_taken_elsewhere(
            [key for key in records if key and key not in self.by_username]
        )
        for username in self.data.rejected_person_keys:
            old = self.by_username.get(with_prefix(username, prefix).lower())
            if old is not None:
                self.protected.add(old.id)
        for key, group in records.items():
            if len(group) > 1 and key:
                self._reject_duplicates(group)
            else:
                for record in group:
                    self._plan_one(record)
        self._inactivate_missing()
        self.units.active_persons_per_unit = dict(self.active_per_unit)

    def _reject_duplicates(self, group: list[PersonRecord]) -> None:
        rows = ", ".join(str(r.row) for r in group)
        spelled = ", ".join(sorted({r.username for r in group}))
        how = "differing only in case" if len({r.username for r in group}) > 1 else "repeated"
        for record in group:
            self._issue(
                record,
                f"The username appears in rows {rows} ({how}: {spelled}); "
                "each of these rows is skipped.",
                "username",
                record.username,
            )
        self._protect(group[0])

    def _plan_one(self, record: PersonRecord) -> None:
        problem = self._row_problem(record)
        if problem:
            field_name, message, value = problem
            self._issue(record, message, field_name, value)
            self._protect(record)
            return
        unit_key = self._unit_key(record)
        if unit_key is False:
            self._protect(record)
            return
        old = self._existing(record)
        if old is False:
            self._protect(record)
            return
        if old is None:
            self._create(record, unit_key)
        else:
            self._update(record, old, unit_key)

    def _row_problem(self, record: PersonRecord) -> tuple[str, str, str] | None:
        known = self.by_username.get(record.username.lower())
        if (
            known is not None
            and record.unit_ref
            and (
                known.username,
                known.first_name,
                known.last_name,
                known.email,
                known.employee_number,
            )
            == (
                record.username,
                record.first_name,
                record.last_name,
                record.email,
                record.employee_number,
            )
        ):
            return None  # exactly what Kursa holds, and so checked when it was stored
        values = [getattr(record, name) or "" for name in PERSON_LIMITS]
        # One look at the whole row first: nearly every row passes it.
        if any(map(gt, map(len, values), PERSON_LIMITS.values())) or _CONTROL.search(
            "".join(values)
        ):
            for name, limit in PERSON_LIMITS.items():
                problem = value_problem(getattr(record, name), limit)
                if problem:
                    return name, problem, (getattr(record, name) or "")[:200]
        if not record.first_name:
            return "first_name", "The first name is empty.", ""
        if not record.last_name:
            return "last_name", "The last name is empty.", ""
        unchanged = known is not None and (known.username, known.first_name, known.last_name) == (
            record.username,
            record.first_name,
            record.last_name,
        )
        # The rules depend on username and names only: a person whose three are unchanged
        # passed them before (and a rejected row would leave them as they are anyway).
        problem = (
            None
            if unchanged
            else username_problem(
                record.username, record.first_name, record.last_name, self.customer.username_prefix
            )
        )
        if problem:
            return "username", problem, record.username
        if record.email and not EMAIL_RE.match(record.email):
            return "email", "This is not an email address.", record.email
        if not record.unit_ref:
            return (
                self._unit_field(),
                "The person's unit is empty; every person belongs to exactly one unit.",
                "",
            )
        return None

    def _unit_field(self) -> str:
        return "division_number" if self.data.person_unit_by == "number" else "division_name"

    def _unit_key(self, record: PersonRecord) -> str | None | bool:
        ref = record.unit_ref
        if self.data.person_unit_by == "name":
            keys = self.unit_by_name.get(ref.casefold(), [])
            if len(keys) > 1:
                self._issue(
                    record,
                    f"{len(keys)} units are named {ref!r}; match by unit "
                    "number instead, or give the units distinct names.",
                    self._unit_field(),
                    ref,
                )
                return False
            key = keys[0] if keys else None
        else:
            key = ref
        if key is None or not self.units.is_usable(key):
            where = "in the organisation file or active in Kursa"
            if key in self.units.protected:
                where = "usable: its own row in the organisation file was rejected"
            self._issue(record, f"The unit {ref} is not {where}.", self._unit_field(), ref)
            return False
        return key

    def _existing(self, record: PersonRecord):
        """The person this record describes, None for a new one, False when refused."""
        old = self.by_anchor.get(record.anchor) if record.anchor else None
        if old is None:
            old = self.by_username.get(record.username.lower())
            if old is not None and record.anchor and old.anchor and old.anchor != record.anchor:
                return self._username_clash(record)
        elif old.username.lower() != record.username.lower():
            clash = self.by_username.get(record.username.lower())
            if clash is not None and clash.id != old.id:
                return self._username_clash(record)
        if old is None and record.username.lower() in self.taken_elsewhere:
            self._issue(
                record,
                "This username belongs to a person of another customer; "
                "usernames are unique across Kursa.",
                "username",
                record.username,
            )
            return False
        if old is not None:
            if old.id in self.seen:
                self._issue(
                    record,
                    "Another row already describes this person.",
                    "username",
                    record.username,
                )
                return False
            self.seen.add(old.id)
        return old

    def _find_taken_elsewhere(self, usernames: list[str]) -> set[str]:
        """Which of these (lower-case) usernames belong to persons of other customers."""
        taken: set[str] = set()
        for start in range(0, len(usernames), 500):
            chunk = usernames[start : start + 500]
            taken.update(
                db.session.scalars(
                    select(func.lower(Person.username)).where(
                        func.lower(Person.username).in_(chunk),
                        Person.customer_id != self.customer.id,
                    )
                )
            )
        return taken

    def _username_clash(self, record: PersonRecord) -> bool:
        message = "Another person of this customer already has this username."
        self._issue(record, message, "username", record.username)
        return False

    def _create(self, record: PersonRecord, unit_key) -> None:
        after = {f: getattr(record, f) for f in PERSON_FIELDS}
        after["unit"] = self.units.number_of(unit_key)
        if not record.is_active:
            after["active"] = False
        self.changes.changes.append(Change("person", "created", record.username, None, None, after))
        self.changes.persons.append(self._write(record, None, unit_key, record.is_active, True))
        if record.is_active:
            self.active_per_unit[unit_key] += 1

    def _update(self, record: PersonRecord, old, unit_key) -> None:
        for name in self.absent:  # a column the source lacks is no change of its value
            setattr(record, name, getattr(old, name))
        if (
            record.is_active == old.is_active
            and self.unit_key_of_id.get(old.unit_id) == unit_key
            and (
                record.username,
                record.first_name,
                record.last_name,
                record.email,
                record.employee_number,
            )
            == (old.username, old.first_name, old.last_name, old.email, old.employee_number)
        ):
            if record.is_active:
                self.active_per_unit[unit_key] += 1
            return  # the common case on a daily run: nothing to compare field by field
        add = self.changes.changes.append
        touched = False
        if record.is_active and not old.is_active:
            add(
                Change(
                    "person",
                    "reactivated",
                    record.username,
                    old.id,
                    {"active": False},
                    {"active": True},
                )
            )
            touched = True
        elif not record.is_active and old.is_active:
            add(
                Change(
                    "person",
                    "inactivated",
                    record.username,
                    old.id,
                    {"active": True},
                    {"active": False},
                )
            )
            touched = True
        before = {
            f: getattr(old, f)
            for f in PERSON_FIELDS
            if (getattr(old, f) or None) != (getattr(record, f) or None)
        }
        if before:
            add(
                Change(
                    "person",
                    "updated",
                    record.username,
                    old.id,
                    before,
                    {f: getattr(record, f) for f in before},
                )
            )
            touched = True
        old_unit_key = self.unit_key_of_id.get(old.unit_id)
        if old_unit_key != unit_key:
            add(
                Change(
                    "person",
                    "moved",
                    record.username,
                    old.id,
                    {"unit": self.units.number_of(old_unit_key), "unit_id": old.unit_id},
                    {"unit": self.units.number_of(unit_key)},
                )
            )
            touched = True
        if touched:
            self.changes.persons.append(
                self._write(
                    record, old.id, unit_key, record.is_active, record.is_active != old.is_active
                )
            )
        if record.is_active:
            self.active_per_unit[unit_key] += 1

    def _write(self, record, person_id, unit_key, active, active_changed) -> PersonWrite:
        return PersonWrite(
            person_id,
            record.username,
            record.first_name,
            record.last_name,
            record.email,
            record.employee_number,
            unit_key,
            record.anchor,
            active,
            active_changed,
        )

    def _inactivate_missing(self) -> None:
        label = self.changes.source_label
        for old in self.by_username.values():
            if old.id in self.seen or not old.is_active:
                continue
            if old.id in self.protected or not self.data.persons_complete or old.source != label:
                self.active_per_unit[self.unit_key_of_id.get(old.unit_id)] += 1
                continue
            self.changes.changes.append(
                Change(
                    "person",
                    "inactivated",
                    old.username,
                    old.id,
                    {"active": True},
                    {"active": False},
                )
            )
            self.changes.persons.append(
                PersonWrite(
                    old.id,
                    old.username,
                    old.first_name,
                    old.last_name,
                    old.email,
                    old.employee_number,
                    self.unit_key_of_id.get(old.unit_id),
                    old.anchor,
                    False,
                    True,
                )
            )

    def _protect(self, record: PersonRecord) -> None:
        """A rejected row: the person behind it, if any, stays exactly as they are."""
        old = self.by_anchor.get(record.anchor) if record.anchor else None
        old = old or self.by_username.get(record.username.lower()) if record.username else old
        if old is not None:
            self.protected.add(old.id)

    def _issue(self, record: PersonRecord, message: str, field_name: str, value) -> None:
        column = self.headers.get(field_name, field_name)
        if field_name == "username":
            value = record.raw_username or value  # name the value as the file has it
        self.changes.issues.append(Issue(message, record.file, record.row, column, value))
