"""Awkward sequences of one run's operations: two approvals, approval and discard, two
reverts, a preview applied while another run goes on, interrupted applies, runs and previews
out of date, and `approve --json` refused.

Races are made deterministic (see tests/sync/attack_helpers.py): the first operation is paused
where it takes the customer's lock while a second one runs to its end in another session.
"""

import pytest
from sqlalchemy import select, text

from portal.core.db import db
from portal.core.errors import Conflict
from sync.approval import apply_preview, approve_run, discard_run
from sync.models import SyncRun
from sync.report import report_rows
from sync.revert import revert_run
from tests.sync.attack_helpers import (  # noqa: F401 - fixtures
    LDAP_STAFF,
    STAFF,
    UNITS,
    change_count,
    held_fixture,
    ldap_data,
    people,
    race_at_lock,
    race_before_run,
    staffed_fixture,
)

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


# --- Interrupted applies and their neighbours ----------------------------------------------


@pytest.fixture
def refuse_person_updates(app):
    """A real database error inside apply: a trigger refuses every update of a person."""
    if db.engine.dialect.name == "sqlite":
        make = [
            "CREATE TRIGGER refuse BEFORE UPDATE ON persons BEGIN "
            "SELECT RAISE(ABORT, 'refused by the test'); END"
        ]
        undo = ["DROP TRIGGER refuse"]
    else:
        make = [
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse BEFORE UPDATE ON persons FOR EACH ROW EXECUTE FUNCTION refuse()",
        ]
        undo = ["DROP TRIGGER refuse ON persons", "DROP FUNCTION refuse()"]
    active = []

    def refuse(on: bool = True):
        for statement in make if on else undo:
            db.session.execute(text(statement))
        db.session.commit()
        active[:] = [on]

    yield refuse
    db.session.rollback()
    if active == [True]:
        refuse(False)


def test_a_failed_approval_does_not_report_changes_it_never_made(
    staffed, held, refuse_person_updates
):
    """An approval that stops on a database error changes nothing. The run then must not
    stand as 'failed, nothing changed' while its report (page and CSV) still lists the four
    inactivations as its changes; either it stays held, to be approved again, or its report
    holds no changes."""
    refuse_person_updates()

    run = approve_run(held.id, actor="test")

    refuse_person_updates(False)
    assert all(p.is_active for p in people(staffed).values())
    db.session.expire_all()
    run = db.session.get(SyncRun, held.id)
    listed = [r for r in report_rows(run) if r[0] == "change"]
    assert run.status == "held" or listed == [], (run.status, run.counts, len(listed))


def test_a_run_that_failed_in_apply_leaves_a_held_run_approvable_and_a_run_revertible(
    staffed, held, import_csv, refuse_person_updates
):
    refuse_person_updates()
    crashed = import_csv(staffed, UNITS, [["u0", "FirstA", "Crash", "", "000", "20"], *STAFF[1:]])
    refuse_person_updates(False)
    assert crashed.status == "failed"
    assert people(staffed)["u0"].last_name == "Tester"

    approved = approve_run(held.id, actor="test")

    assert approved.status == "applied"
    assert sum(p.is_active for p in people(staffed).values()) == 6
    undo = revert_run(held.id, actor="test")
    assert undo.status == "applied" and all(p.is_active for p in people(staffed).values())


# --- Out of date runs and previews ----------------------------------------------------------------


def test_a_revert_is_refused_while_a_held_run_that_predates_it_is_then_out_of_date(
    staffed, held, import_csv
):
    """Revert a run, then approve a held run that read its files before the revert: the
    revert changed the directory after the held run read them, so approval is refused."""
    guard = import_csv(staffed, UNITS, STAFF)  # changes nothing: does not count
    assert change_count(guard.id) == 0
    earlier = db.session.scalar(
        select(SyncRun).where(SyncRun.customer_id == staffed.id).order_by(SyncRun.id).limit(1)
    )
    revert = revert_run(earlier.id, actor="test")
    assert revert.status == "applied"

    with pytest.raises(Conflict, match="out of date"):
        approve_run(held.id, actor="test")
    assert not any(p.is_active for p in people(staffed).values())  # the revert stands


def test_a_preview_of_one_source_is_refused_after_another_source_changed_other_persons(
    make_customer,
):
    """Two directory sources of one customer. Source hq's preview reads its persons; then
    source eu's run changes only its own persons. The docs say a preview is out of date once
    another run changed the customer's directory after it read its source: refused."""
    from sync.runs import run_source

    customer = make_customer("acme")
    eu_staff = [("q-x", "x1", "Xia", "g-eu")]
    eu_units = (("g-eu", "EU", None),)
    assert run_source(customer, ldap_data(LDAP_STAFF), actor="t").status == "applied"
    assert (
        run_source(customer, ldap_data(eu_staff, eu_units, name="eu"), actor="t").status
        == "applied"
    )
    preview = run_source(
        customer,
        ldap_data([("p-a", "a1", "Anne", "g-sales"), *LDAP_STAFF[1:]]),
        actor="t",
        dry_run=True,
    )
    changed = run_source(
        customer, ldap_data([("q-x", "x1", "Xiao", "g-eu")], eu_units, name="eu"), actor="t"
    )
    assert changed.counts["persons"]["updated"] == 1

    with pytest.raises(Conflict, match="out of date"):
        apply_preview(preview.id, actor="t")
    assert people(customer)["a1"].first_name == "Ann"


# --- approve --json -------------------------------------------------------------------------------


def test_approve_json_refused_still_prints_one_json_object(app, staffed, import_csv):
    """`flask directory approve --json` of a run that is not held: exit 1, and a tool reading
    stdout as JSON (as for import and sync) gets a failed run's object, not an empty stdout."""
    import json

    applied = import_csv(staffed, UNITS, STAFF[:9])

    result = app.test_cli_runner().invoke(args=["directory", "approve", str(applied.id), "--json"])

    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["status"] == "failed" and "not held" in body["issues"][0]["message"]
