"""Revert an applied run: undo its stored changes, newest first, as a new run (revert_run)
whose report says what was put back.

A value is put back only while it is still what the run set and no later applied run changed
it (even back to the same value), while no one else has taken it (a username, a unit number),
and while it leaves no active person or unit below an inactive unit; otherwise the later value
wins and the report says so. docs/import-files.md states the rules for users.
"""

import logging
import time
from collections import defaultdict

from sqlalchemy import delete, func, select

from portal.core import audit
from portal.core.db import db, utcnow
from portal.core.errors import Conflict
from portal.directory.models import OrgUnit, Person
from sync.apply import rebuild_paths, store_report
from sync.models import RunStatus, SyncChange, SyncRun
from sync.plan import PERSON_FIELDS, Change, ChangeSet
from sync.records import Issue
from sync.runs import (
    batch_size,
    close_run,
    finish_run,
    get_run,
    lock_customer,
    mark_failed,
    notify_run,
)

logger = logging.getLogger(__name__)
UNIT_FIELDS = ("number", "name", "kind")
UNIT_REMOVALS = {"created", "reactivated"}  # undone by inactivating the unit


def revert_run(run_id: int, *, actor: str) -> SyncRun:
    """Undo what an applied run changed, as a new run. Later edits of the same values win."""
    run = get_run(run_id)
    _check_revertible(run)
    new = SyncRun(
        customer_id=run.customer_id,
        source_kind="revert",
        source_name=f"run {run.id}",
        started_by=actor,
        revert_of_id=run.id,
    )
    db.session.add(new)
    db.session.commit()
    new_id, started = new.id, time.perf_counter()
    try:
        lock_customer(run.customer_id)
        db.session.refresh(run)  # a revert of it may have ended while this one waited
        _check_revertible(run)
        changes = revert_changes(run, new_id)
        store_report(db.session.connection(), new_id, changes, {}, batch_size())
        run.reverted_by_id = new_id
        finish_run(new, RunStatus.APPLIED, changes)
        audit.record(actor, "sync.reverted", "sync_run", run.id, revert_run=new_id)
        close_run(new, started)
        db.session.commit()
    except Conflict:
        # Refused before it changed anything: the new run is no run at all.
        db.session.rollback()
        db.session.execute(delete(SyncRun).where(SyncRun.id == new_id))
        db.session.commit()
        raise
    except Exception as exc:
        db.session.rollback()
        mark_failed(new_id, exc, started)
    new = db.session.get(SyncRun, new_id)
    logger.info("revert of sync run %s by %s as run %s: %s", run_id, actor, new_id, new.status)
    notify_run(new)  # a failed revert leaves the directory as the reverted run made it
    return new


def _check_revertible(run: SyncRun) -> None:
    if run.status != RunStatus.APPLIED:
        raise Conflict(
            f"Run {run.id} is {run.status.replace('_', ' ')}; only an applied run can be reverted."
        )
    if run.reverted_by_id:
        raise Conflict(f"Run {run.id} was reverted already by run {run.reverted_by_id}.")
    if run.revert_of_id:
        raise Conflict(
            f"Run {run.id} is itself a revert; import the files or sync the source again instead."
        )


def revert_changes(run: SyncRun, new_run_id: int) -> ChangeSet:
    """Change the directory back and return what was done, for the new run's report.

    Units come first (reactivations, fields, parents), so that a person can go back into a
    unit this same revert reactivates; then persons; then the inactivations of units the run
    created or reactivated, which wait until the persons the run put in them are out again.
    """
    result = ChangeSet(run.customer_id, "revert")
    stored = db.session.scalars(
        select(SyncChange).where(SyncChange.run_id == run.id).order_by(SyncChange.id.desc())
    ).all()
    kept = _kept(stored, result)
    # An update may keep some fields and put back the others; any other change is one value.
    stored = [c for c in stored if c.action == "updated" or not kept[c]]
    persons = _load(Person, [c.entity_id for c in stored if c.entity == "person"])
    units = _load(OrgUnit, [c.entity_id for c in stored if c.entity == "unit"])
    unit_changes = [c for c in stored if c.entity == "unit" and c.entity_id in units]
    now = utcnow()

    moved = _put_units_back(
        [c for c in unit_changes if c.action not in UNIT_REMOVALS], units, kept, result, now
    )
    for change in (c for c in stored if c.entity == "person"):
        person = persons.get(change.entity_id)
        if person is not None:
            _revert_person(change, person, kept[change], result, now)
    for change in unit_changes:
        if change.action in UNIT_REMOVALS:
            _remove_unit(units[change.entity_id], result, now)

    db.session.flush()
    if moved:
        rebuild_paths(db.session.connection(), run.customer, {})
        db.session.expire_all()
    return result


def _kept(stored: list[SyncChange], result: ChangeSet) -> dict[SyncChange, set[str]]:
    """Each change's fields that an applied run changed again later, named in the report.

    Such a value is kept even where it came back to what the reverted run set: it is what a
    newer run (or revert) made it.
    """
    later = _changed_later(stored)
    kept = {}
    for change in stored:
        fields = _fields(change.entity, change.action, change.before)
        kept[change] = fields & later.get((change.entity, change.entity_id), set())
        for field in sorted(kept[change]):
            _conflict(result, change, field)
    return kept


def _changed_later(stored: list[SyncChange]) -> dict[tuple[str, int], set[str]]:
    """(entity, id) -> the fields applied runs changed after `stored` was written: a customer's
    runs apply one at a time, so a later change row is a later change."""
    later: dict[tuple[str, int], set[str]] = defaultdict(set)
    if not stored:
        return later
    newest = max(c.id for c in stored)
    for entity in ("person", "unit"):
        ids = sorted({c.entity_id for c in stored if c.entity == entity and c.entity_id})
        for start in range(0, len(ids), 500):
            rows = (
                select(SyncChange.entity_id, SyncChange.action, SyncChange.before)
                .join(SyncRun, SyncRun.id == SyncChange.run_id)
                .where(
                    SyncRun.status == RunStatus.APPLIED,
                    SyncChange.id > newest,
                    SyncChange.entity == entity,
                    SyncChange.entity_id.in_(ids[start : start + 500]),
                )
            )
            for entity_id, action, before in db.session.execute(rows):
                later[entity, entity_id] |= _fields(entity, action, before)
    return later


def _fields(entity: str, action: str, before: dict | None) -> set[str]:
    """What a change row changed: "active", "unit" (a person's), "parent" or field names."""
    if action == "moved":
        return {"unit" if entity == "person" else "parent"}
    if action == "updated":
        return set(before or {})
    return {"active"}


def _load(model, ids) -> dict:
    found = {}
    ids = [i for i in ids if i is not None]
    for start in range(0, len(ids), 500):
        rows = db.session.scalars(select(model).where(model.id.in_(ids[start : start + 500])))
        found.update({row.id: row for row in rows})
    return found


def _revert_person(
    change: SyncChange, person: Person, kept: set[str], result: ChangeSet, now
) -> None:
    key = person.username
    if change.action in {"created", "reactivated"}:
        if person.is_active:
            _set_active(person, False, now)
            result.changes.append(
                Change("person", "inactivated", key, person.id, {"active": True}, {"active": False})
            )
    elif change.action == "inactivated":
        unit = db.session.get(OrgUnit, person.unit_id)
        if not person.is_active and not unit.is_active:
            _conflict(result, change, "active", f"its unit {unit.number} is inactive")
        elif not person.is_active:
            _set_active(person, True, now)
            result.changes.append(
                Change("person", "reactivated", key, person.id, {"active": False}, {"active": True})
            )
    elif change.action == "updated":
        before, after = _restore(person, change, set(PERSON_FIELDS) - kept, result)
        if before:
            result.changes.append(
                Change("person", "updated", person.username, person.id, before, after)
            )
    elif change.action == "moved":
        current = db.session.get(OrgUnit, person.unit_id)
        if current is None or current.number != change.after.get("unit"):
            _conflict(result, change, "unit")
            return
        target = db.session.get(OrgUnit, change.before.get("unit_id"))
        if target is None or not target.is_active:
            _conflict(result, change, "unit", "the earlier unit is no longer active")
            return
        person.unit_id = target.id
        result.changes.append(
            Change(
                "person",
                "moved",
                key,
                person.id,
                {"unit": current.number, "unit_id": current.id},
                {"unit": target.number},
            )
        )


def _remove_unit(unit: OrgUnit, result: ChangeSet, now) -> None:
    """Undo the run's creation or reactivation of a unit: inactivate it, if nothing is below."""
    key = unit.number or ""
    if unit.is_active and _is_empty(unit):
        _set_active(unit, False, now)
        result.changes.append(
            Change("unit", "inactivated", key, unit.id, {"active": True}, {"active": False})
        )
    elif unit.is_active:
        result.issues.append(
            Issue(
                f"Unit {key} ({unit.name}) stays active: active persons or units are below it.",
                severity="notice",
                value=key,
            )
        )


def _put_units_back(
    changes: list[SyncChange], units: dict, kept: dict, result: ChangeSet, now
) -> bool:
    """Undo the run's inactivations, field updates and moves of units; True if one moved.

    A reactivation or move that would leave an active unit under an inactive one, in the tree
    the revert makes, is refused and the others are tried again without it, until none is:
    refusing one can leave another unit below an inactive one in turn.
    """
    for change in changes:
        if change.action == "updated":
            _restore_unit_fields(change, units[change.entity_id], kept[change], result)
    tree_changes = [c for c in changes if c.action in {"inactivated", "moved"}]
    start = {u.id: (u.parent_id, u.is_active, u.active_changed_at) for u in units.values()}
    refused: dict[SyncChange, str] = {}
    while True:
        for unit in units.values():
            unit.parent_id, unit.is_active, unit.active_changed_at = start[unit.id]
        trial = ChangeSet(result.customer_id, result.source_label)
        made = {}
        for change in (c for c in tree_changes if c not in refused):
            unit = units[change.entity_id]
            revert = _reactivate_unit if change.action == "inactivated" else _move_unit
            if revert(change, unit, trial, now):
                made[change] = unit
        below_inactive = _below_inactive(made)
        if not below_inactive:
            break
        refused.update(below_inactive)

    result.changes.extend(trial.changes)
    result.issues.extend(trial.issues)
    for change, why in refused.items():
        _conflict(result, change, "parent" if change.action == "moved" else "active", why)
    return any(change.action == "moved" for change in made)


def _below_inactive(made: dict[SyncChange, OrgUnit]) -> dict[SyncChange, str]:
    """Of the reactivations and moves made, those that leave an active unit under an inactive
    one, with why. A unit both moved and reactivated has its move refused first."""
    moved = {unit.id for change, unit in made.items() if change.action == "moved"}
    wrong = {}
    for change, unit in made.items():
        parent = db.session.get(OrgUnit, unit.parent_id) if unit.parent_id else None
        if not unit.is_active or parent is None or parent.is_active:
            continue
        if change.action == "moved":
            wrong[change] = f"the earlier parent, unit {parent.number}, is inactive"
        elif unit.id not in moved:
            wrong[change] = f"its parent unit {parent.number} is inactive"
    return wrong


def _reactivate_unit(change: SyncChange, unit: OrgUnit, result: ChangeSet, now) -> bool:
    if unit.is_active:
        return False
    _set_active(unit, True, now)
    result.changes.append(
        Change(
            "unit", "reactivated", unit.number or "", unit.id, {"active": False}, {"active": True}
        )
    )
    return True


def _restore_unit_fields(
    change: SyncChange, unit: OrgUnit, kept: set[str], result: ChangeSet
) -> None:
    before, after = _restore(unit, change, set(UNIT_FIELDS) - kept, result)
    if before:
        result.changes.append(Change("unit", "updated", unit.number or "", unit.id, before, after))


def _move_unit(change: SyncChange, unit: OrgUnit, result: ChangeSet, now) -> bool:
    parent = _unit_by_number(unit.customer_id, change.before.get("parent"), unit)
    current = db.session.get(OrgUnit, unit.parent_id)
    current_number = None if current is None or current.number is None else current.number
    if current_number != change.after.get("parent") or parent is None:
        _conflict(result, change, "parent")
        return False
    if _is_below(parent, unit):
        _conflict(result, change, "parent", "the earlier parent now lies below the unit")
        return False
    unit.parent_id = parent.id
    result.changes.append(
        Change(
            "unit",
            "moved",
            unit.number or "",
            unit.id,
            {"parent": current_number},
            {"parent": parent.number},
        )
    )
    return True


def _restore(obj, change: SyncChange, fields, result: ChangeSet) -> tuple[dict, dict]:
    before, after = {}, {}
    for name, value in (change.before or {}).items():
        if name not in fields:
            continue
        if (getattr(obj, name) or None) != (change.after.get(name) or None):
            _conflict(result, change, name)
            continue
        if _is_taken(obj, name, value):
            _conflict(result, change, name, f"another {change.entity} has that {name} now")
            continue
        before[name], after[name] = getattr(obj, name), value
        setattr(obj, name, value)
    return before, after


def _is_taken(obj, name: str, value) -> bool:
    """Whether another person has this username (across Kursa, in any case) or another unit
    of the customer this number: putting it back would break the unique index."""
    if isinstance(obj, Person) and name == "username" and value:
        query = select(Person.id).where(func.lower(Person.username) == value.lower())
    elif isinstance(obj, OrgUnit) and name == "number" and value:
        query = select(OrgUnit.id).where(
            OrgUnit.customer_id == obj.customer_id, OrgUnit.number == value
        )
    else:
        return False
    return db.session.scalar(query.where(type(obj).id != obj.id).limit(1)) is not None


def _unit_by_number(customer_id: int, number: str | None, unit: OrgUnit) -> OrgUnit | None:
    if number is None:
        return db.session.get(OrgUnit, unit.customer.root_unit_id)
    return db.session.scalar(
        select(OrgUnit).where(OrgUnit.customer_id == customer_id, OrgUnit.number == number)
    )


def _is_below(candidate: OrgUnit, unit: OrgUnit) -> bool:
    """Whether `candidate` lies in `unit`'s branch, by the parents as this revert left them."""
    above = candidate
    while above is not None:
        if above.id == unit.id:
            return True
        above = db.session.get(OrgUnit, above.parent_id) if above.parent_id else None
    return False


def _is_empty(unit: OrgUnit) -> bool:
    db.session.flush()
    persons = db.session.scalar(
        select(func.count()).where(Person.unit_id == unit.id, Person.is_active.is_(True))
    )
    children = db.session.scalar(
        select(func.count()).where(OrgUnit.parent_id == unit.id, OrgUnit.is_active.is_(True))
    )
    return not persons and not children


def _set_active(obj, active: bool, now) -> None:
    obj.is_active = active
    obj.active_changed_at = now


def _conflict(result: ChangeSet, change: SyncChange, field: str, why: str = "") -> None:
    why = why or "it was changed again after this run"
    shown = "state" if field == "active" else field.replace("_", " ")
    result.issues.append(
        Issue(
            f"The {shown} of {change.entity} {change.key} is kept as it is: {why}.",
            severity="notice",
            column=field,
            value=change.key,
        )
    )
