"""Guards, dry runs, approval, revert, a crash inside apply, and the report CSV."""

import pytest
from sqlalchemy import select, text

from portal.core.db import db
from portal.directory.models import Person
from sync.approval import apply_preview, approve_run
from sync.models import SyncChange
from sync.report import report_rows
from sync.revert import revert_run
from tests.sync.test_import import PERSONS, UNITS, changes, persons, units

MANY = [[f"u{n}", f"First{chr(65 + n % 26)}", "Tester", "", "", "20"] for n in range(100, 120)]


def test_mass_inactivation_by_count_is_held_and_changes_nothing(customer, import_csv, guard_limits):
    import_csv(customer, UNITS, MANY)
    guard_limits(count=5, share=1.0)
    run = import_csv(customer, UNITS, MANY[:14])  # 6 would go

    assert run.status == "held"
    assert "inactivate 6 of 20" in run.hold_reason
    assert all(p.is_active for p in persons(customer).values())
    assert run.counts["persons"]["inactivated"] == 6  # what it would do, for the reviewer


def test_mass_inactivation_by_share_is_held(customer, import_csv, guard_limits):
    import_csv(customer, UNITS, MANY)
    guard_limits(count=1000, share=0.10)
    assert import_csv(customer, UNITS, MANY[:18]).status == "applied"  # 2 of 20 = 10 %
    assert import_csv(customer, UNITS, MANY[:15]).status == "held"  # 3 of 18 > 10 %


def test_approved_run_is_applied(customer, import_csv, guard_limits):
    import_csv(customer, UNITS, MANY)
    guard_limits(count=5, share=1.0)
    held = import_csv(customer, UNITS, MANY[:14])

    run = approve_run(held.id, actor="account:it")
    assert run.id == held.id and run.status == "applied"
    assert run.approved_by == "account:it"
    assert sum(p.is_active for p in persons(customer).values()) == 14
    assert run.payload is None


def test_approving_a_run_that_is_not_held_is_refused(customer, import_csv):
    run = import_csv(customer, UNITS, PERSONS)
    with pytest.raises(Exception, match="not held"):
        approve_run(run.id, actor="test")


def test_dry_run_changes_nothing_and_can_be_applied_later(customer, import_csv):
    preview = import_csv(customer, UNITS, PERSONS, dry_run=True)

    assert preview.status == "dry_run"
    assert preview.counts["persons"]["created"] == 3
    assert persons(customer) == {} and units(customer) == {}
    assert len(changes(preview, "person")) == 3

    run = apply_preview(preview.id, actor="test")
    assert run.status == "applied" and run.preview_of_id == preview.id
    assert set(persons(customer)) == {"u1", "u2", "u3"}
    assert [f.filename for f in run.files] == ["org.csv", "persons.csv"]


def test_revert_restores_what_a_run_changed(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    tree = units(customer)
    edited = [["u1", "Ida", "Lund-Berg", "ida@example.test", "00123", "30"], PERSONS[1]]
    edited_units = [UNITS[0], ["20", "North", "30", ""], UNITS[2], ["40", "New", "", ""]]
    run = import_csv(customer, edited_units, edited)
    assert run.counts["persons"] == {
        "created": 0,
        "updated": 1,
        "moved": 1,
        "inactivated": 1,
        "reactivated": 0,
    }

    revert = revert_run(run.id, actor="account:hr")
    assert revert.status == "applied" and revert.revert_of_id == run.id
    people, tree_after = persons(customer), units(customer)
    assert people["u1"].last_name == "Lund" and people["u1"].unit_id == tree["20"].id
    assert people["u3"].is_active
    assert tree_after["20"].name == "Sales North"
    assert tree_after["20"].parent_id == tree["10"].id
    assert tree_after["20"].path == tree["20"].path
    assert not tree_after["40"].is_active
    with pytest.raises(Exception, match="reverted already"):
        revert_run(run.id, actor="test")


def test_revert_keeps_a_value_changed_again_later(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    first = import_csv(customer, UNITS, [["u1", "Ida", "Berg", "", "00123", "20"], *PERSONS[1:]])
    import_csv(customer, UNITS, [["u1", "Ida", "Holm", "", "00123", "20"], *PERSONS[1:]])

    revert = revert_run(first.id, actor="test")
    assert persons(customer)["u1"].last_name == "Holm"
    assert any("changed again" in i.message for i in revert_issues(revert))


def test_revert_puts_back_a_value_a_later_run_only_previewed(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    first = import_csv(customer, UNITS, [["u1", "Ida", "Berg", "", "00123", "20"], *PERSONS[1:]])
    edited = [["u1", "Ida", "Holm", "", "00123", "20"], *PERSONS[1:]]
    assert import_csv(customer, UNITS, edited, dry_run=True).status == "dry_run"

    revert_run(first.id, actor="test")
    assert persons(customer)["u1"].last_name == "Lund"


def revert_issues(run):
    from sync.models import SyncIssue

    return db.session.scalars(select(SyncIssue).where(SyncIssue.run_id == run.id)).all()


@pytest.fixture
def crash_on_username(app):
    """A real database error half-way through apply: a trigger refuses one username."""
    engine = app.config["KURSA_ENGINE"]
    with db.engine.begin() as conn:
        if engine == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER crash BEFORE INSERT ON persons WHEN NEW.username = 'u-crash' "
                    "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION crash() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.username = 'u-crash' THEN RAISE EXCEPTION 'disk on fire'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER crash BEFORE INSERT ON persons "
                    "FOR EACH ROW EXECUTE FUNCTION crash()"
                )
            )
    yield
    db.session.remove()  # its open transaction would block DROP TRIGGER on PostgreSQL
    with db.engine.begin() as conn:
        if engine == "sqlite":
            conn.execute(text("DROP TRIGGER crash"))
        else:
            conn.execute(text("DROP TRIGGER crash ON persons"))
            conn.execute(text("DROP FUNCTION crash()"))


def test_crash_in_the_middle_of_apply_leaves_nothing_half_applied(
    customer, import_csv, crash_on_username, monkeypatch, app
):
    import_csv(customer, UNITS, PERSONS)
    monkeypatch.setitem(app.config["KURSA"]["sync"], "batch_size", 2)
    rows = [
        ["u1", "Ida", "Renamed", "", "", "30"],
        PERSONS[1],
        ["u7", "Ny", "Person", "", "", "40"],
        ["u8", "Ny", "Anden", "", "", "40"],
        ["u-crash", "Ny", "Tredje", "", "", "40"],
    ]
    run = import_csv(customer, [*UNITS, ["40", "New unit", "10", ""]], rows)

    assert run.status == "failed"
    assert "nothing was changed" in run.error
    assert set(units(customer)) == {"10", "20", "30"}
    people = persons(customer)
    assert set(people) == {"u1", "u2", "u3"}
    assert people["u1"].last_name == "Lund" and people["u3"].is_active
    assert db.session.scalars(select(SyncChange).where(SyncChange.run_id == run.id)).all() == []


def test_report_csv_holds_changes_and_issues(customer, import_csv):
    run = import_csv(customer, UNITS, [*PERSONS, ["u9", "Ida", "Lund", "bad", "", "20"]])
    rows = list(report_rows(run))
    assert rows[0][:4] == ["record", "entity", "key", "action"]
    created = [r for r in rows if r[0] == "change" and r[1] == "person"]
    assert len(created) == 3 and created[0][3] == "created"
    assert "last name: Lund" in created[0][5] and "email: ida@example.test" in created[0][5]
    (issue,) = [r for r in rows if r[0] == "issue"]
    assert issue[7:] == ["persons.csv", "5", "Email", "bad", "This is not an email address."]


def test_person_history_survives_inactivation(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    import_csv(customer, UNITS, PERSONS[:1])
    eva = db.session.scalar(select(Person).where(Person.username == "u3"))
    history = db.session.scalars(
        select(SyncChange.action).where(
            SyncChange.entity == "person", SyncChange.entity_id == eva.id
        )
    ).all()
    assert history == ["created", "inactivated"]


def test_two_runs_of_one_customer_at_once_are_serialised(customer, import_csv, app):
    """Two imports started together: the second plans against what the first committed."""
    import threading

    from sync.runs import FileInput, import_files
    from tests.conftest import ORG_HEADER, PERSON_HEADER, csv_bytes

    org = FileInput("org.csv", csv_bytes([ORG_HEADER, *UNITS]))
    people = FileInput("persons.csv", csv_bytes([PERSON_HEADER, *PERSONS]))
    results, errors = [], []

    def run():
        try:
            with app.app_context():
                mine = db.session.merge(customer)
                results.append(import_files(mine, org, people, actor="thread").status)
                db.session.remove()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == [] and results == ["applied", "applied"]
    db.session.expire_all()
    assert set(persons(customer)) == {"u1", "u2", "u3"}
    runs = db.session.scalars(select(SyncChange.run_id).where(SyncChange.action == "created"))
    assert len(set(runs)) == 1  # the second run found everything in place


def test_each_run_leaves_an_audit_entry(customer, import_csv):
    from portal.core.audit import AuditEntry

    run = import_csv(customer, UNITS, PERSONS, actor="account:hr")
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.object_type == "sync_run"))
    assert (entry.actor, entry.action, entry.object_id) == (
        "account:hr",
        "sync.applied",
        str(run.id),
    )
    assert entry.details["counts"]["persons"]["created"] == 3


def test_dry_run_says_when_applying_it_would_be_held(customer, import_csv, guard_limits):
    import_csv(customer, UNITS, MANY)
    guard_limits(count=5, share=1.0)
    preview = import_csv(customer, UNITS, MANY[:10], dry_run=True)
    assert preview.status == "dry_run"
    assert "inactivate 10 of 20" in preview.hold_reason


def test_a_preview_is_applied_once_only(customer, import_csv):
    preview = import_csv(customer, UNITS, PERSONS, dry_run=True)
    first = apply_preview(preview.id, actor="test")
    with pytest.raises(Exception, match=f"applied already, as run {first.id}"):
        apply_preview(preview.id, actor="test")


def test_report_csv_shows_values_as_words_without_internal_ids(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    run = import_csv(customer, UNITS, [["u1", "Ida", "Lund", "", "00123", "30"], *PERSONS[1:]])
    rows = [r for r in report_rows(run) if r[0] == "change"]
    assert [(r[3], r[4], r[5]) for r in rows] == [
        ("updated", "email: ida@example.test", "email: (empty)"),
        ("moved", "unit: 20", "unit: 30"),
    ]


def test_a_run_left_running_by_a_killed_process_is_closed_by_the_next_run(customer, import_csv):
    from datetime import timedelta

    from portal.core.db import utcnow
    from sync.models import SyncRun

    stuck = SyncRun(
        customer_id=customer.id,
        source_kind="files",
        started_by="cli",
        status="running",
        counts={},
        started_at=utcnow() - timedelta(minutes=30),
    )
    waiting = SyncRun(
        customer_id=customer.id,
        source_kind="files",
        started_by="cli",
        status="running",
        counts={},
        started_at=utcnow(),
    )
    db.session.add_all([stuck, waiting])
    db.session.commit()

    import_csv(customer, UNITS, PERSONS)
    db.session.refresh(stuck)
    db.session.refresh(waiting)
    assert stuck.status == "failed" and "interrupted" in stuck.error
    assert waiting.status == "running"  # young: it may still be reading its files
