"""Writes a change set to the directory, in the caller's transaction, in batches.

The only code that changes the directory on behalf of a source. It flushes, never commits:
sync.runs commits once everything, the run report included, is written.
"""

import logging
from collections.abc import Callable

from sqlalchemy import bindparam, func, insert, select, update

from portal.core.db import db, utcnow
from portal.directory.models import OrgUnit, Person
from sync.models import SyncChange, SyncIssue
from sync.plan import ChangeSet
from sync.records import Issue

logger = logging.getLogger(__name__)
units_t = OrgUnit.__table__
persons_t = Person.__table__


def apply_changes(
    changes: ChangeSet,
    customer,
    run_id: int,
    *,
    batch_size: int,
    progress: Callable[[str, float], None] | None = None,
) -> None:
    """Make the directory match the change set and store the change and issue rows."""
    progress = progress or (lambda stage, done: None)
    conn = db.session.connection()
    now = utcnow()

    unit_ids = _write_units(conn, changes, customer, now)
    progress("units", 1.0)
    person_ids = _write_persons(conn, changes, customer, unit_ids, now, batch_size, progress)
    store_report(conn, run_id, changes, person_ids, batch_size)
    db.session.expire_all()


def _write_units(conn, changes: ChangeSet, customer, now) -> dict:
    unit_ids: dict = dict(changes.unit_ids)
    unit_ids[None] = customer.root_unit_id
    new = [u for u in changes.units if u.id is None]
    if new:
        conn.execute(
            insert(units_t),
            [
                {
                    "customer_id": customer.id,
                    "number": u.number,
                    "name": u.name,
                    "kind": u.kind,
                    "anchor": u.anchor,
                    "is_active": True,
                    "path": "",
                    "depth": 0,
                    "active_changed_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for u in new
            ],
        )
        match = units_t.c.anchor if any(u.anchor for u in new) else units_t.c.number
        created = {u.anchor if match is units_t.c.anchor else u.number: u.key for u in new}
        for unit_id, value in conn.execute(
            select(units_t.c.id, match).where(
                units_t.c.customer_id == customer.id, units_t.c.path == ""
            )
        ):
            unit_ids[created[value]] = unit_id
    old = [u for u in changes.units if u.id is not None]
    if old:
        conn.execute(
            update(units_t)
            .where(units_t.c.id == bindparam("b_id"))
            .values(
                number=bindparam("number"),
                name=bindparam("name"),
                kind=bindparam("kind"),
                is_active=bindparam("is_active"),
                updated_at=now,
            ),
            [
                {
                    "b_id": u.id,
                    "number": u.number,
                    "name": u.name,
                    "kind": u.kind,
                    "is_active": u.is_active,
                }
                for u in old
            ],
        )
        changed_state = [u.id for u in old if _active_changed(changes, u.id)]
        if changed_state:
            conn.execute(
                update(units_t).where(units_t.c.id.in_(changed_state)).values(active_changed_at=now)
            )
    parents = {unit_ids[u.key]: unit_ids[u.parent_key] for u in changes.units}
    rebuild_paths(conn, customer, parents)
    for change in changes.changes:
        if change.entity == "unit" and change.entity_id is None:
            change.entity_id = unit_ids.get(_key_for_number(changes, change.key))
    return unit_ids


def _key_for_number(changes: ChangeSet, number: str):
    for unit in changes.units:
        if unit.number == number and unit.id is None:
            return unit.key
    return None


def _active_changed(changes: ChangeSet, unit_id: int) -> bool:
    return any(
        c.entity == "unit" and c.entity_id == unit_id and c.action in {"inactivated", "reactivated"}
        for c in changes.changes
    )


def rebuild_paths(conn, customer, new_parents: dict[int, int]) -> None:
    """Give every unit of the customer the parent in `new_parents` (or its own) and the
    materialised path and depth that follow; write only rows that differ."""
    rows = conn.execute(
        select(units_t.c.id, units_t.c.parent_id, units_t.c.path, units_t.c.depth).where(
            units_t.c.customer_id == customer.id
        )
    ).all()
    parent = {r.id: new_parents.get(r.id, r.parent_id) for r in rows}
    parent[customer.root_unit_id] = None
    paths: dict[int, str] = {}

    def path_of(unit_id: int) -> str:
        found = paths.get(unit_id)
        if found is None:
            above = parent[unit_id]
            found = (path_of(above) if above else "/") + f"{unit_id}/"
            paths[unit_id] = found
        return found

    stale = []
    for r in rows:
        path = path_of(r.id)
        depth = path.count("/") - 2
        if (path, depth, parent[r.id]) != (r.path, r.depth, r.parent_id):
            stale.append({"b_id": r.id, "path": path, "depth": depth, "parent_id": parent[r.id]})
    if stale:
        conn.execute(
            update(units_t)
            .where(units_t.c.id == bindparam("b_id"))
            .values(
                path=bindparam("path"), depth=bindparam("depth"), parent_id=bindparam("parent_id")
            ),
            stale,
        )


def _write_persons(
    conn, changes: ChangeSet, customer, unit_ids, now, batch_size, progress
) -> dict[str, int]:
    source = changes.source_label
    new = [p for p in changes.persons if p.id is None]
    old = [p for p in changes.persons if p.id is not None]
    total = max(len(new) + len(old), 1)
    done = 0
    for start in range(0, len(new), batch_size):
        batch = new[start : start + batch_size]
        conn.execute(
            insert(persons_t),
            [
                {
                    "customer_id": customer.id,
                    "unit_id": unit_ids[p.unit_key],
                    "username": p.username,
                    "first_name": p.first_name,
                    "last_name": p.last_name,
                    "email": p.email,
                    "employee_number": p.employee_number,
                    "anchor": p.anchor,
                    "source": source,
                    "is_active": p.is_active,
                    "active_changed_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for p in batch
            ],
        )
        done += len(batch)
        progress("persons", done / total)
    statement = (
        update(persons_t)
        .where(persons_t.c.id == bindparam("b_id"))
        .values(
            username=bindparam("username"),
            first_name=bindparam("first_name"),
            last_name=bindparam("last_name"),
            email=bindparam("email"),
            employee_number=bindparam("employee_number"),
            unit_id=bindparam("unit_id"),
            anchor=bindparam("anchor"),
            is_active=bindparam("is_active"),
            active_changed_at=func.coalesce(
                bindparam("changed_at", type_=persons_t.c.active_changed_at.type),
                persons_t.c.active_changed_at,
            ),
            source=source,
            updated_at=now,
        )
    )
    for start in range(0, len(old), batch_size):
        batch = old[start : start + batch_size]
        conn.execute(
            statement,
            [
                {
                    "b_id": p.id,
                    "username": p.username,
                    "first_name": p.first_name,
                    "last_name": p.last_name,
                    "email": p.email,
                    "employee_number": p.employee_number,
                    "unit_id": unit_ids[p.unit_key],
                    "anchor": p.anchor,
                    "is_active": p.is_active,
                    "changed_at": now if p.active_changed else None,
                }
                for p in batch
            ],
        )
        done += len(batch)
        progress("persons", done / total)
    if not new:
        return {}
    rows = conn.execute(
        select(persons_t.c.id, persons_t.c.username).where(
            persons_t.c.customer_id == customer.id, persons_t.c.created_at == now
        )
    )
    return {username.lower(): person_id for person_id, username in rows}


def store_report(
    conn, run_id: int, changes: ChangeSet, person_ids: dict[str, int], batch_size: int
) -> None:
    """Write one row per change and per issue of the run."""
    rows = []
    for c in changes.changes:
        entity_id = c.entity_id
        if entity_id is None and c.entity == "person":
            entity_id = person_ids.get(c.key.lower())
        rows.append(
            {
                "run_id": run_id,
                "entity": c.entity,
                "entity_id": entity_id,
                "key": c.key or "",
                "action": c.action,
                "before": c.before,
                "after": c.after,
            }
        )
    for start in range(0, len(rows), batch_size):
        conn.execute(insert(SyncChange.__table__), rows[start : start + batch_size])
    store_issues(conn, run_id, changes.issues)


def store_issues(conn, run_id: int, issues: list[Issue]) -> None:
    if issues:
        conn.execute(
            insert(SyncIssue.__table__),
            [
                {
                    "run_id": run_id,
                    "severity": i.severity,
                    "file": i.file,
                    "row": i.row,
                    "column": i.column,
                    "value": i.value,
                    "message": i.message,
                }
                for i in issues
            ],
        )
