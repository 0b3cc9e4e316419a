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

import sync.approval as approval_module
import sync.report as report_module
import sync.revert as revert_module
import sync.runs as runs_module
from portal.core.db import db
from portal.core.errors import Conflict
from portal.directory.models import OrgUnit, Person
from sync.approval import apply_preview, approve_run, discard_run
from sync.models import SyncChange, SyncIssue, SyncRun
from sync.report import report_rows
from sync.revert import revert_run

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


# --- Revert after later runs -----------------------------------------------------------------


def test_a_revert_does_not_reactivate_a_person_into_a_unit_inactivated_since(
    make_customer, import_csv
):
    """Run 2 inactivates u9, whose unit 30 is then empty; run 3 inactivates unit 30. Reverting
    run 2 must not leave an active person in an inactive unit (the rule a revert's moves and
    the plan's unit inactivation keep)."""
    customer = make_customer("acme")
    staff = [*STAFF[:9], ["u9", "FirstJ", "Tester", "", "009", "30"]]
    import_csv(customer, UNITS, staff)
    leaving = import_csv(customer, UNITS, staff[:9])  # u9 inactivated
    import_csv(customer, UNITS[:2], staff[:9])  # unit 30 now empty: inactivated
    assert not tree(customer)["30"].is_active

    revert = revert_run(leaving.id, actor="test")

    assert revert.status == "applied", revert.error
    nine = people(customer)["u9"]
    assert not (nine.is_active and not nine.unit.is_active)


def test_a_revert_does_not_move_a_unit_back_under_a_parent_inactivated_since(
    make_customer, import_csv
):
    """Run 2 moves unit C (with its persons) from A to B; run 3 inactivates the now empty A.
    Reverting run 2 must not hang an active unit with active persons under an inactive one."""
    customer = make_customer("acme")
    staff = [[f"u{n}", f"First{chr(65 + n)}", "Tester", "", "", "C"] for n in range(3)]
    import_csv(customer, [["A", "A", "", ""], ["B", "B", "", ""], ["C", "C", "A", ""]], staff)
    moved = import_csv(
        customer, [["A", "A", "", ""], ["B", "B", "", ""], ["C", "C", "B", ""]], staff
    )
    import_csv(customer, [["B", "B", "", ""], ["C", "C", "B", ""]], staff)
    assert not tree(customer)["A"].is_active

    revert = revert_run(moved.id, actor="test")

    assert revert.status == "applied", revert.error
    units = tree(customer)
    assert units["C"].is_active
    assert units["C"].parent.is_active, "an active unit with active persons under an inactive one"


def test_a_revert_keeps_an_inactivation_a_later_run_made_again(make_customer, import_csv):
    """Run 2 inactivates u9, run 3 brings u9 back, run 4 (the newest source) inactivates u9
    again. Reverting run 2 must not reactivate u9: the value was changed again since, and the
    docs say such a value is kept."""
    customer = make_customer("acme")
    import_csv(customer, UNITS, STAFF)
    old = import_csv(customer, UNITS, STAFF[:9])
    import_csv(customer, UNITS, STAFF)
    import_csv(customer, UNITS, STAFF[:9])
    assert not people(customer)["u9"].is_active

    revert_run(old.id, actor="test")

    assert not people(customer)["u9"].is_active


def test_a_revert_keeps_a_name_a_later_run_set_back_again(make_customer, import_csv):
    """The same for a field: Tester -> Berg (run 2) -> Holm (run 3) -> Berg (run 4, newest).
    Reverting run 2 must keep the newest source's Berg, not put Tester back."""
    customer = make_customer("acme")
    import_csv(customer, UNITS, STAFF)

    def with_last(name):
        return [["u0", "FirstA", name, "", "000", "20"], *STAFF[1:]]

    old = import_csv(customer, UNITS, with_last("Berg"))
    import_csv(customer, UNITS, with_last("Holm"))
    import_csv(customer, UNITS, with_last("Berg"))

    revert_run(old.id, actor="test")

    assert people(customer)["u0"].last_name == "Berg"


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


# --- Directory sources with anchors (what an LDAP run hands the engine) ---------------------


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


def test_two_directory_persons_swapping_usernames_are_named_and_kept(make_customer):
    from sync.runs import run_source

    customer = make_customer("acme")
    assert run_source(customer, ldap_data(LDAP_STAFF), actor="test").status == "applied"
    swapped = [("p-a", "b2", "Ann", "g-sales"), ("p-b", "a1", "Bob", "g-sales"), LDAP_STAFF[2]]

    run = run_source(customer, ldap_data(swapped), actor="test")

    assert run.status == "applied", run.error
    found = people(customer)
    assert (found["a1"].first_name, found["b2"].first_name) == ("Ann", "Bob")
    assert all(p.is_active for p in found.values())
    assert sorted(i.value for i in issues_of(run.id)) == ["a1", "b2"]


def test_a_directory_rename_onto_another_customers_username_is_a_rejected_row(make_customer):
    """Usernames are unique across Kursa. A new person with another customer's username is a
    rejected row; a person renamed onto one must be too, not fail the whole run on the
    database's unique index."""
    from sync.runs import FileInput, import_files, run_source
    from tests.conftest import ORG_HEADER, PERSON_HEADER, csv_bytes

    other = make_customer("other")
    import_files(
        other,
        FileInput("org.csv", csv_bytes([ORG_HEADER, ["1", "One", "", ""]])),
        FileInput("persons.csv", csv_bytes([PERSON_HEADER, ["z9", "Zed", "Other", "", "", "1"]])),
        actor="test",
    )
    customer = make_customer("acme")
    assert run_source(customer, ldap_data(LDAP_STAFF), actor="test").status == "applied"
    renamed = [("p-a", "z9", "Ann", "g-sales"), ("p-b", "b2", "Bobby", "g-sales"), LDAP_STAFF[2]]

    run = run_source(customer, ldap_data(renamed), actor="test")

    assert run.status == "applied", run.error
    found = people(customer)
    assert found["a1"].is_active and found["b2"].first_name == "Bobby"
    assert [i.value for i in issues_of(run.id)] == ["z9"]


def test_reverting_a_directory_rename_whose_old_username_was_taken_since_still_reverts(
    make_customer, import_csv
):
    """Run 2 renames a1 -> a9; a file import then gives a1 to a new person. Reverting run 2
    must keep a9 (the value is taken: it was changed since, in effect) and undo the rest,
    not fail the whole revert on the unique index."""
    from sync.runs import run_source

    customer = make_customer("acme")
    run_source(customer, ldap_data(LDAP_STAFF), actor="test")
    renamed = [("p-a", "a9", "Ann", "g-sales"), ("p-b", "b2", "Bobby", "g-sales"), LDAP_STAFF[2]]
    run = run_source(customer, ldap_data(renamed), actor="test")
    assert run.status == "applied" and run.counts["persons"]["updated"] == 2
    taken = import_csv(customer, [["S", "S", "", ""]], [["a1", "Newt", "Else", "", "", "S"]])
    assert taken.status == "applied" and "a1" in people(customer)

    revert = revert_run(run.id, actor="test")

    assert revert.status == "applied", revert.error
    found = people(customer)
    assert found["b2"].first_name == "Bob"  # the rest of the run is undone
    assert found["a9"].first_name == "Ann" and found["a1"].first_name == "Newt"


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


# --- The report download ---------------------------------------------------------------------


def download(client, run_id: int) -> list[list[str]]:
    response = client.get(f"/sync/runs/{run_id}/report.csv")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body[1:])))


def test_the_report_of_a_run_with_no_changes_is_the_header_alone(staffed, import_csv, admin_client):
    run = import_csv(staffed, UNITS, STAFF)
    assert change_count(run.id) == 0

    rows = download(admin_client, run.id)

    assert rows == [report_module.REPORT_HEADER]


def test_report_cells_of_formula_like_usernames_units_and_names_cannot_run(
    make_customer, import_csv, admin_client
):
    customer = make_customer("acme")
    units = [["=1+1", "=cmd|' /C calc'!A0", "", ""], ["+45", "@SUM(A1)", "=1+1", ""]]
    staff = [
        ["+4512345678", "Ida", "=cmd|' /C calc'!A0", "", "-2+3", "=1+1"],
        ["@evil", "Bo", "+Holm", "", "", "+45"],
        ["-u3", "\tEva", "\r=Nor", "", "", "+45"],
    ]
    run = import_csv(customer, units, staff)
    assert run.status == "applied"
    assert run.counts["persons"]["created"] == 3, issues_of(run.id)

    cells = [cell for row in download(admin_client, run.id) for cell in row]

    assert any("calc" in cell for cell in cells)
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_report_keeps_non_ascii_and_line_breaks_whole(make_customer, import_csv, admin_client):
    customer = make_customer("acme")
    run = import_csv(
        customer,
        [["10", "Økonomi\nog Løn", "", ""]],
        [["u1", "Søren", "Ærø-Å\r\nNæstved", "", "", "10"], ["u2", "李", "王", "", "", "10"]],
    )
    assert run.status == "applied"

    rows = download(admin_client, run.id)

    afters = [row[5] for row in rows[1:]]
    assert "name: Økonomi\nog Løn" in afters[0]
    assert any("last name: Ærø-Å\r\nNæstved" in a for a in afters)
    assert any("first name: 李" in a for a in afters)
    assert all(len(row) == len(report_module.REPORT_HEADER) for row in rows)


# --- Odd trees in one file -------------------------------------------------------------------


def test_a_unit_moved_under_its_own_child_in_one_file_gets_a_consistent_tree(
    make_customer, import_csv
):
    """10 > 20 > 40 becomes 20 > 10 > 40 in one file: a legal move, with every path and
    depth following the new parents."""
    customer = make_customer("acme")
    units = [["10", "A", "", ""], ["20", "B", "10", ""], ["40", "D", "20", ""]]
    staff = [["u1", "Ida", "Lund", "", "", "40"]]
    import_csv(customer, units, staff)

    run = import_csv(
        customer, [["10", "A", "20", ""], ["20", "B", "", ""], ["40", "D", "10", ""]], staff
    )

    assert run.status == "applied", run.error
    t = tree(customer)
    assert (t["20"].parent_id, t["10"].parent_id, t["40"].parent_id) == (
        customer.root_unit_id,
        t["20"].id,
        t["10"].id,
    )
    root = db.session.get(OrgUnit, customer.root_unit_id)
    assert t["40"].path == f"{root.path}{t['20'].id}/{t['10'].id}/{t['40'].id}/"
    assert (t["20"].depth, t["10"].depth, t["40"].depth) == (1, 2, 3)
    undo = revert_run(run.id, actor="test")
    assert undo.status == "applied"
    t = tree(customer)
    assert (t["10"].parent_id, t["20"].parent_id, t["40"].parent_id) == (
        customer.root_unit_id,
        t["10"].id,
        t["20"].id,
    )
    assert t["40"].path == f"{root.path}{t['10'].id}/{t['20'].id}/{t['40'].id}/"


def test_a_unit_moved_under_a_descendant_left_out_of_the_file_fails_as_a_cycle(
    make_customer, import_csv
):
    """10 > 20 in Kursa; the file moves 10 under 20 and leaves 20 out: 20 stays under 10 in
    Kursa, so that is a cycle. The run fails and changes nothing."""
    customer = make_customer("acme")
    import_csv(
        customer,
        [["10", "A", "", ""], ["20", "B", "10", ""]],
        [["u1", "Ida", "Lund", "", "", "20"]],
    )

    run = import_csv(customer, [["10", "A", "20", ""]], [["u1", "Ida", "Lund", "", "", "10"]])

    assert run.status == "failed"
    assert "cycle" in run.error
    t = tree(customer)
    assert t["20"].parent_id == t["10"].id and t["10"].parent_id == customer.root_unit_id
    assert people(customer)["u1"].unit.number == "20"


# --- The queue of page requests and the scheduler -------------------------------------------


def fake_source(customer, name="hq", **kw):
    """A stored LDAP source whose reads are answered by `fake_reads` (no directory needed)."""
    from sync.models import SyncSource

    source = SyncSource(
        customer_id=customer.id,
        name=name,
        profile="openldap",
        settings={"uri": "ldap://old.example.test", "user_bases": ["dc=x"]},
        state={},
        **kw,
    )
    db.session.add(source)
    db.session.commit()
    return source


@pytest.fixture
def fake_reads(monkeypatch):
    """Answer every read of a source with LDAP_STAFF and a new incremental state; `during`
    (when set) runs while the read is going on. Records what each read was given."""
    from sync.sources.ldap import operations
    from sync.sources.ldap.reader import Reading

    seen: list[dict] = []
    hooks: dict = {}

    def read(source, *, full, on_page=None):
        seen.append({"full": full, "settings": dict(source.settings), "state": dict(source.state)})
        if "during" in hooks:
            hooks.pop("during")()
        return Reading(ldap_data(LDAP_STAFF, name=source.name), {"last_change": "20260101"})

    monkeypatch.setattr(operations, "_read", read)
    return seen, hooks


def test_two_sync_now_clicks_at_once_queue_one_run(app, make_customer):
    """The docs: a request of the same source, action and kind already waiting is reused, so
    a double click queues one run. Two clicks whose requests arrive together must too."""
    from sync import queue
    from sync.models import SyncRequest, SyncSource

    customer = make_customer("acme")
    source = fake_source(customer)
    queue.request_run(source, "sync", actor="first", full=True)  # flushed, not yet committed

    def second_click():
        return queue.request_run(
            db.session.get(SyncSource, source.id), "sync", actor="second", full=True
        ).id

    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(in_other_session(app, second_click)))
    thread.start()
    thread.join(timeout=1)  # the second click reads the queue before the first commits
    db.session.commit()
    thread.join(timeout=120)

    assert "error" not in box, box
    queued = db.session.scalars(
        select(SyncRequest.id).where(SyncRequest.source_id == source.id)
    ).all()
    assert len(queued) == 1


def test_a_source_deleted_while_its_sync_request_runs_keeps_its_run_and_the_worker_goes_on(
    app, make_customer, fake_reads
):
    """Delete removes only a source that never ran. One deleted while its first requested run
    is reading (it has no run yet) must not leave an applied run of a deleted source, nor make
    the worker stop on an AttributeError."""
    from sync import queue
    from sync.models import SyncRequest, SyncSource
    from sync.sources.ldap import operations

    customer = make_customer("acme")
    source = fake_source(customer)
    request = queue.request_run(source, "sync", actor="it", full=True)
    db.session.commit()
    _, hooks = fake_reads

    def delete_it():
        return operations.delete_source(db.session.get(SyncSource, source.id), actor="other-it")

    hooks["during"] = lambda: hooks.setdefault("deleted", in_other_session(app, delete_it))

    assert queue._take_next() == request.id
    queue.perform(request.id)  # must not raise

    db.session.expire_all()
    runs = db.session.scalars(select(SyncRun).where(SyncRun.source_name == "hq")).all()
    still = db.session.get(SyncSource, source.id)
    assert not (runs and still is None), (hooks["deleted"], [r.status for r in runs])
    if still is not None:
        assert db.session.get(SyncRequest, request.id).is_finished


def test_a_source_whose_settings_change_during_a_run_reads_everything_next_time(
    app, make_customer, fake_reads
):
    """Changing what a source reads drops its incremental state, so the next run reads
    everything (operations.update_ldap_source). A run reading with the old settings while they
    are changed must not store its state over that."""
    from sync.models import SyncSource
    from sync.sources.ldap import operations
    from sync.sources.ldap.operations import sync_source

    customer = make_customer("acme")
    source = fake_source(customer)
    seen, hooks = fake_reads
    assert sync_source(source, actor="test", full=True).status == "applied"
    assert db.session.get(SyncSource, source.id).state == {"last_change": "20260101"}

    def edit():
        row = db.session.get(SyncSource, source.id)
        row.settings = {**row.settings, "user_bases": ["ou=elsewhere,dc=x"]}
        row.state = {}  # what update_ldap_source does when what is read changes
        return "edited"

    hooks["during"] = lambda: hooks.setdefault("edited", in_other_session(app, edit))
    assert sync_source(db.session.get(SyncSource, source.id), actor="test").status == "applied"
    assert hooks["edited"] == {"result": "edited"}

    db.session.expire_all()
    assert db.session.get(SyncSource, source.id).state == {}
    assert operations.describe(db.session.get(SyncSource, source.id))["incremental_ready"] is False


def test_a_request_whose_source_was_disabled_while_queued_fails_with_the_reason(
    app, make_customer, fake_reads
):
    from sync import queue
    from sync.sources.ldap import operations

    customer = make_customer("acme")
    source = fake_source(customer)
    request = queue.request_run(source, "sync", actor="it", full=True)
    db.session.commit()
    operations.set_enabled(source, False, actor="other-it")
    db.session.commit()

    assert queue.process_requests() == 1

    db.session.expire_all()
    done = db.session.get(type(request), request.id)
    assert done.status == "failed" and "disabled" in done.message
    assert fake_reads[0] == []  # nothing was read
    assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 0


def test_a_request_queued_before_a_settings_change_runs_with_the_new_settings(
    app, make_customer, fake_reads
):
    from sync import queue

    customer = make_customer("acme")
    source = fake_source(customer)
    request = queue.request_run(source, "preview", actor="it", full=False)
    db.session.commit()
    source.settings = {**source.settings, "uri": "ldap://new.example.test"}
    db.session.commit()

    queue.process_requests()

    seen, _ = fake_reads
    assert [s["settings"]["uri"] for s in seen] == ["ldap://new.example.test"]
    assert seen[0]["full"] is False
    db.session.expire_all()
    assert db.session.get(type(request), request.id).status == "done"


def test_a_preview_after_a_missed_scheduled_run_does_not_cancel_the_catch_up(app, make_customer):
    """The scheduler was down at 02:00; someone ran a CLI preview (or an incremental run) at
    08:00; the scheduler starts at 09:00. The full run owed since 02:00 has not happened: a
    preview changes nothing and an incremental run catches no deletions. The docs: a run
    missed while the scheduler was down runs once when it starts."""
    from datetime import timedelta

    from portal.core.db import utcnow
    from sync import schedule

    customer = make_customer("acme")
    now = utcnow()
    fake_source(customer, schedule="0 2 * * *", created_at=now - timedelta(days=3))
    spec = next(s for s in schedule.planned_jobs() if s.id == "source:hq")
    missed_fire = spec.next_fire(now - timedelta(days=1))
    assert schedule.is_missed(spec, None, now)
    preview = SyncRun(
        customer_id=customer.id,
        source_kind="ldap",
        source_name="hq",
        started_by="cli",
        status="dry_run",
        is_dry_run=True,
        counts={},
        started_at=missed_fire + (now - missed_fire) / 2,  # after the fire time it missed
        finished_at=now,
    )
    db.session.add(preview)
    db.session.commit()

    assert schedule.is_missed(spec, schedule.last_run_at("source:hq"), now)


def test_a_caught_up_full_run_is_not_lost_to_the_incremental_job_caught_up_with_it(
    app, make_customer, fake_reads
):
    """Both jobs of a source were missed while the scheduler was down; catch-up starts both at
    once. If the incremental one takes the source's lock first, the full run (the one that
    catches deletions) is skipped without a trace, and the next catch-up finds it not owed."""
    from datetime import timedelta

    from portal.core.db import utcnow
    from sync import schedule

    customer = make_customer("acme")
    now = utcnow()
    fake_source(
        customer,
        schedule="0 2 * * *",
        delta_schedule="*/15 * * * *",
        created_at=now - timedelta(days=3),
    )
    due = [
        s.id
        for s in schedule.planned_jobs()
        if schedule.is_missed(s, schedule.last_run_at(s.id), now)
    ]
    assert due == ["delta:hq", "source:hq"]
    _, hooks = fake_reads
    outcome: dict = {}
    # The full job starts while the incremental one is reading (two scheduler workers).
    hooks["during"] = lambda: outcome.setdefault(
        "full", schedule.run_now("source:hq", actor="scheduler")
    )

    schedule.run_now("delta:hq", actor="scheduler")

    spec = next(s for s in schedule.planned_jobs() if s.id == "source:hq")
    full_ran = outcome["full"] is not None
    flagged = db.session.scalar(
        select(func.count())
        .select_from(SyncRun)
        .where(SyncRun.error.like("The scheduled run was skipped%"))
    )
    owed_still = schedule.is_missed(spec, schedule.last_run_at("source:hq"), utcnow())
    assert full_ran or flagged or owed_still


# --- More revert and out-of-date cases --------------------------------------------------------


def test_reverting_a_run_that_emptied_and_inactivated_a_unit_puts_its_persons_back(
    make_customer, import_csv
):
    """Run 2 moves u9 out of unit 30 and inactivates 30 (now empty). Reverting run 2 must
    reactivate 30 and move u9 back into it: the revert handles persons before units, and must
    not refuse u9's move because 30 is inactive until the same revert reactivates it."""
    customer = make_customer("acme")
    staff = [*STAFF[:9], ["u9", "FirstJ", "Tester", "", "009", "30"]]
    import_csv(customer, UNITS, staff)
    run = import_csv(customer, UNITS[:2], STAFF)  # u9 -> 20, then 30 is empty: inactivated
    assert run.counts["persons"]["moved"] == 1 and run.counts["units"]["inactivated"] == 1

    revert = revert_run(run.id, actor="test")

    assert revert.status == "applied"
    units, nine = tree(customer), people(customer)["u9"]
    assert units["30"].is_active
    assert nine.unit.number == "30", [i.message for i in issues_of(revert.id)]


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


def test_approve_json_refused_still_prints_one_json_object(app, staffed, import_csv):
    """`flask directory approve --json` of a run that is not held: exit 1, and a tool reading
    stdout as JSON (as for import and sync) gets a failed run's object, not an empty stdout."""
    import json

    applied = import_csv(staffed, UNITS, STAFF[:9])

    result = app.test_cli_runner().invoke(args=["directory", "approve", str(applied.id), "--json"])

    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["status"] == "failed" and "not held" in body["issues"][0]["message"]
