"""Planning the units: parents resolved, cycles and depth refused, order fixed, and at the end
the units that left the source inactivated once nothing active remains below them."""

from collections import defaultdict

from sqlalchemy import select

from portal.core.db import db
from portal.directory.models import Customer, OrgUnit
from sync.plan.changes import (
    MAX_DEPTH,
    ROOT,
    UNIT_LIMITS,
    Change,
    ChangeSet,
    ExistingUnit,
    UnitWrite,
    snapshot,
    value_problem,
)
from sync.records import Issue, SourceData, UnitRecord


class UnitPlanner:
    def __init__(self, data: SourceData, customer: Customer, changes: ChangeSet):
        self.data = data
        self.customer = customer
        self.changes = changes
        self.number_header = data.headers.get("org", {}).get("number")
        self.parent_header = data.headers.get("org", {}).get("parent")
        u = OrgUnit.__table__.c
        rows = snapshot(
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
        self._records: dict[str, UnitRecord] | None = None  # by key, made when asked for

    def _existing_key(self, row) -> str:
        if self.data.unit_match == "anchor":
            # A unit without an anchor (made by a file import) is never matched by one, and
            # must not share the root's key (None).
            return row.anchor or f"\x00unit:{row.id}"
        return row.number

    def plan(self) -> None:
        self._accept_unique()
        self._refuse_taken_numbers()
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

    def _refuse_taken_numbers(self) -> None:
        """A unit may not take a number another unit has (numbers are unique per customer):
        an OU renamed onto another unit's number is named in the report and left as it was,
        instead of failing the whole run on the database's unique constraint. When the other
        unit gives the number up in this same run, the order of the writes would decide, so
        this unit follows at the next run (a swap needs a temporary name)."""
        held = {r.number: k for k, r in self.existing.items()}
        for key, record in list(self.accepted.items()):
            holder = held.get(record.number)
            if holder is None or holder == key:
                continue
            self._issue(
                record,
                self._taken_message(record, self.existing[holder], self.accepted.get(holder)),
                self.number_header or "number",
                record.number,
            )
            del self.accepted[key]
            self.protected.add(key)

    def _taken_message(self, record: UnitRecord, other, other_record) -> str:
        wanted = f"The unit {record.name!r} cannot take the number {record.number}"
        if other_record is not None and other_record.number != other.number:
            return (
                f"{wanted} yet: the unit {other.number} ({other.name}) has it until it takes "
                f"its new number {other_record.number} in this run. The unit is left as it "
                "was and follows at the next run (to swap two names, use a temporary name "
                "for one of them first)."
            )
        state = "" if other.is_active else "inactive "
        return (
            f"{wanted}: the {state}unit {other.number} ({other.name}) has it already. The "
            "unit is left as it was; rename one of them in the source."
        )

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
                shown, files = self.shown(parent), self.data.kind == "files"
                if parent in self.protected or parent in self.data.rejected_unit_keys:
                    message = (
                        f"The parent unit {shown} was rejected in its own "
                        f"{'row' if files else 'entry'}, so this unit is skipped too."
                    )
                else:
                    read = "in the organisation file" if files else "read from the directory"
                    message = f"The parent unit {shown} is neither {read} nor in Kursa."
                self._issue(record, message, self.parent_header, shown)
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

    def record_of(self, key) -> UnitRecord | None:
        """The source's record of the unit `key`, accepted or not; None when it has none."""
        if self._records is None:
            self._records = {r.key: r for r in self.data.units}
        return self._records.get(key)

    def shown(self, key) -> str:
        """How an issue names unit `key`: its number (a directory keys units on ids)."""
        record = self.record_of(key)
        return record.number if record is not None else str(key)

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
        foreign = self._other_sources_units([self.existing[k].id for k in gone])
        gone = [k for k in gone if self.existing[k].id not in foreign]
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

    def _other_sources_units(self, unit_ids: list[int]) -> set[int]:
        """Of these units, those another source created: a full run of one source must not
        inactivate them. Units from before sources were recorded (None) stay fair game."""
        u = OrgUnit.__table__.c
        label = self.changes.source_label
        found: set[int] = set()
        for start in range(0, len(unit_ids), 500):
            chunk = unit_ids[start : start + 500]
            query = select(u.id).where(u.id.in_(chunk), u.source.is_not(None), u.source != label)
            found.update(db.session.scalars(query))
        return found

    def _change(self, action, key, unit_id, before, after) -> None:
        number = self.number_of(key)
        self.changes.changes.append(Change("unit", action, number, unit_id, before, after))

    def _issue(self, record: UnitRecord, message: str, column, value) -> None:
        self.changes.issues.append(Issue(message, record.file, record.row, column, value))
