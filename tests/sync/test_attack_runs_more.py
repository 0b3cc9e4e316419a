"""Awkward sequences against runs: approve, discard, apply, revert at the same time or in an
odd order, interrupted applies, the queue and the scheduler, the report download.

Races are made deterministic: the first operation is paused at the point where it takes the
customer's lock (or hands over to run_source) while a second one runs to its end in another
thread with its own session, as a second web request or process would.
"""

import csv
import io
import threading

import pytest
from sqlalchemy import func, select, text

import sync.runs as runs_module
from portal.core.db import db
from portal.core.errors import Conflict
from portal.directory.models import OrgUnit, Person
from sync.models import SyncChange, SyncIssue, SyncRun
from sync.runs import (
    apply_preview,
    approve_run,
    discard_run,
    report_rows,
    revert_run,
)

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
        db.session.scalars(select(SyncIssue).where(SyncIssue.run_id == run_id).order_by(SyncIssue.id))
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

    monkeypatch.setattr(runs_module, "lock_customer", lock)
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

    monkeypatch.setattr(runs_module, "run_source", run_source)
    return fired


@pytest.fixture
def staffed(make_customer, import_csv):
    customer = make_customer("acme")
    assert import_csv(customer, UNITS, STAFF).status == "applied"
    return customer


@pytest.fixture
def held(staffed, import_csv, guard_limits):
    """A held run that would inactivate u6..u9."""
    guard_limits(2, 1.0)
    run = import_csv(staffed, UNITS, STAFF[:6])
    assert run.status == "held" and run.counts["persons"]["inactivated"] == 4
    return run


# --- Two approvals, approval and discard ---------------------------------------------------


def test_a_second_approval_of_the_same_held_run_does_not_wipe_its_report(
    app, staffed, held, monkeypatch
):
    """Two admins click Approve at once (or one double-clicks): the second must not re-apply
    the run over itself, deleting the report of what the first applied."""
    fired = race_at_lock(monkeypatch, app, lambda: approve_run(held.id, actor="early"))

    try:
        approve_run(held.id, actor="late")
    except Conflict:
        pass

    assert "error" not in fired[0], fired[0].get("error")
    db.session.expire_all()
    run = db.session.get(SyncRun, held.id)
    assert run.status == "applied"
    assert run.approved_by == "early"
    assert run.counts["persons"]["inactivated"] == 4
    assert change_count(held.id) == 4  # the report still says who was inactivated
    undo = revert_run(held.id, actor="test")  # and so it can still be reverted
    assert all(p.is_active for p in people(staffed).values())
    assert undo.counts["persons"]["reactivated"] == 4


def test_a_held_run_discarded_while_its_approval_waits_is_not_applied(
    app, staffed, held, monkeypatch
):
    """Discard and Approve clicked at once, discard first: the approval must be refused."""
    fired = race_at_lock(monkeypatch, app, lambda: discard_run(held.id, actor="discarder"))

    with pytest.raises(Conflict):
        approve_run(held.id, actor="approver")

    assert "error" not in fired[0], fired[0].get("error")
    db.session.expire_all()
    run = db.session.get(SyncRun, held.id)
    assert run.status == "discarded" and run.approved_by is None
    assert all(p.is_active for p in people(staffed).values())


def test_a_discard_waiting_behind_an_approval_is_refused(app, staffed, held, monkeypatch):
    fired = race_at_lock(monkeypatch, app, lambda: approve_run(held.id, actor="approver"))

    with pytest.raises(Conflict, match="not held"):
        discard_run(held.id, actor="discarder")

    assert "error" not in fired[0]
    db.session.expire_all()
    run = db.session.get(SyncRun, held.id)
    assert (run.status, run.discarded_by) == ("applied", None)
    assert change_count(held.id) == 4


# --- Two reverts -----------------------------------------------------------------------------


def test_two_reverts_of_one_run_at_once_leave_one_revert(app, staffed, import_csv, monkeypatch):
    """A double click on "Yes, revert run": the run must keep pointing at the revert that
    undid it, and no second, empty revert may stand as applied."""
    run = import_csv(staffed, UNITS, [*STAFF[:9], ["u9", "Renamed", "Tester", "", "009", "30"]])
    assert run.status == "applied"
    fired = race_at_lock(monkeypatch, app, lambda: revert_run(run.id, actor="early").id)

    try:
        late = revert_run(run.id, actor="late")
    except Conflict:
        late = None

    early_id = fired[0]["result"]
    db.session.expire_all()
    assert db.session.get(SyncRun, run.id).reverted_by_id == early_id
    applied_reverts = db.session.scalars(
        select(SyncRun.id).where(SyncRun.revert_of_id == run.id, SyncRun.status == "applied")
    ).all()
    assert applied_reverts == [early_id]
    assert late is None or late.status != "applied"
    nine = people(staffed)["u9"]
    assert (nine.first_name, nine.unit.number) == ("FirstJ", "20")


def test_a_second_revert_after_the_first_is_refused_and_changes_nothing(staffed, import_csv):
    run = import_csv(staffed, UNITS, STAFF[:8])
    revert_run(run.id, actor="test")
    before = {u: (p.is_active, p.last_name) for u, p in people(staffed).items()}

    with pytest.raises(Conflict, match="reverted already"):
        revert_run(run.id, actor="test")

    assert {u: (p.is_active, p.last_name) for u, p in people(staffed).items()} == before


# --- Applying a preview while another run goes on ------------------------------------------


def test_a_run_applied_between_the_preview_checks_and_its_apply_is_not_undone(
    app, staffed, import_csv, monkeypatch
):
    """Apply checks that the preview is up to date, commits (letting go of the lock), then
    runs it: a run that slips in between must not have its changes overwritten by the
    preview's older records."""
    preview = import_csv(
        staffed, UNITS, [["u0", "FirstA", "Previewed", "", "000", "20"], *STAFF[1:]], dry_run=True
    )
    newer = [["u0", "FirstA", "Newer", "", "000", "20"], *STAFF[1:]]

    def later_import():
        from portal.directory.models import Customer

        return import_csv(db.session.get(Customer, staffed.id), UNITS, newer).status

    fired = race_before_run(monkeypatch, app, later_import)

    try:
        apply_preview(preview.id, actor="test")
    except Conflict:
        pass

    assert fired[0].get("result") == "applied", fired[0]
    assert people(staffed)["u0"].last_name == "Newer"


def test_a_preview_applied_twice_at_once_makes_one_run(app, staffed, import_csv, monkeypatch):
    preview = import_csv(staffed, UNITS, STAFF[:8], dry_run=True)
    fired = race_before_run(
        monkeypatch, app, lambda: apply_preview(preview.id, actor="early").status
    )

    try:
        apply_preview(preview.id, actor="late")
    except Conflict:
        pass

    assert fired[0].get("result") == "applied", fired[0]
    db.session.expire_all()
    made = db.session.scalars(select(SyncRun.id).where(SyncRun.preview_of_id == preview.id)).all()
    assert len(made) == 1
