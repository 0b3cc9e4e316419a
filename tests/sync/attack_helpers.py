"""Helpers and fixtures shared by the tests/sync/test_attack_*.py files that race runs,
reverts, the report and the queue against each other.

Races are made deterministic: the first operation is paused at the point where it takes the
customer's lock (or hands over to run_source) while a second one runs to its end in another
thread with its own session, as a second web request or process would.
"""

import threading

import pytest
from sqlalchemy import func, select

import sync.approval as approval_module
import sync.revert as revert_module
import sync.runs as runs_module
from portal.core.db import db
from portal.directory.models import OrgUnit, Person
from sync.models import SyncChange, SyncIssue

UNITS = [["10", "Sales", "", "division"], ["20", "North", "10", ""], ["30", "South", "10", ""]]
STAFF = [[f"u{n}", f"First{chr(65 + n)}", "Tester", "", f"{n:03}", "20"] for n in range(10)]


def people(customer) -> dict[str, Person]:
    db.session.expire_all()
    rows = db.session.scalars(select(Person).where(Person.customer_id == customer.id))
    return {p.username: p for p in rows}


def tree(customer) -> dict[str, OrgUnit]:
    db.session.expire_all()
    rows = db.session.scalars(select(OrgUnit).where(OrgUnit.customer_id == customer.id))
    return {u.number: u for u in rows if u.number}


def change_count(run_id: int) -> int:
    return db.session.scalar(
        select(func.count()).select_from(SyncChange).where(SyncChange.run_id == run_id)
    )


def issues_of(run_id: int) -> list[SyncIssue]:
    return list(
        db.session.scalars(
            select(SyncIssue).where(SyncIssue.run_id == run_id).order_by(SyncIssue.id)
        )
    )


def in_other_session(app, work):
    """Run `work` to its end in another thread with its own app context and session."""
    out: dict = {}

    def go():
        with app.app_context():
            try:
                out["result"] = work()
                db.session.commit()
            except Exception as exc:  # reported to the caller
                db.session.rollback()
                out["error"] = exc
            finally:
                db.session.remove()

    thread = threading.Thread(target=go)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the other session hung"
    return out


def race_at_lock(monkeypatch, app, work):
    """When the operation under test first takes the customer's lock, let `work` run to its end
    in another session first: it had passed its own checks and was about to lock."""
    real = runs_module.lock_customer
    fired: list = []
    started: list = []

    def lock(customer_id):
        if not started:
            started.append(True)
            fired.append(in_other_session(app, work))
        return real(customer_id)

    for module in (runs_module, approval_module, revert_module):
        monkeypatch.setattr(module, "lock_customer", lock)
    return fired


def race_before_run(monkeypatch, app, work):
    """When apply_preview hands over to run_source, let `work` run in another session first."""
    real = runs_module.run_source
    fired: list = []
    started: list = []

    def run_source(*args, **kwargs):
        if not started:
            started.append(True)
            fired.append(in_other_session(app, work))
        return real(*args, **kwargs)

    monkeypatch.setattr(approval_module, "run_source", run_source)
    return fired


@pytest.fixture(name="staffed")
def staffed_fixture(make_customer, import_csv):
    customer = make_customer("acme")
    assert import_csv(customer, UNITS, STAFF).status == "applied"
    return customer


@pytest.fixture(name="held")
def held_fixture(staffed, import_csv, guard_limits):
    """A held run that would inactivate u6..u9."""
    guard_limits(2, 1.0)
    run = import_csv(staffed, UNITS, STAFF[:6])
    assert run.status == "held" and run.counts["persons"]["inactivated"] == 4
    return run


def ldap_data(persons, units=(("g-sales", "Sales", None),), name="hq"):
    """SourceData as the LDAP reader makes it: units and persons matched by anchor."""
    from sync.records import PersonRecord, SourceData, UnitRecord

    return SourceData(
        "ldap",
        [UnitRecord(key, number, number, parent) for key, number, parent in units],
        [
            PersonRecord(user, first, "Tester", None, None, unit, anchor=anchor)
            for anchor, user, first, unit in persons
        ],
        person_unit_by="key",
        unit_match="anchor",
        source_name=name,
    )


LDAP_STAFF = [
    ("p-a", "a1", "Ann", "g-sales"),
    ("p-b", "b2", "Bob", "g-sales"),
    ("p-c", "c3", "Cai", "g-sales"),
]
