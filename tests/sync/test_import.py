"""The import engine end to end on real files and both databases: every rule of the issue."""

import pytest
from sqlalchemy import func, select

from portal.core.db import db
from portal.directory.models import OrgUnit, Person
from portal.directory.queries import branch_persons, branch_units
from sync.models import SyncChange, SyncIssue, SyncRun

UNITS = [
    ["10", "Sales", "", "division"],
    ["20", "Sales North", "10", ""],
    ["30", "Warehouse", "", "location"],
]
PERSONS = [
    ["u1", "Ida", "Lund", "ida@example.test", "00123", "20"],
    ["u2", "Bo", "Holm", "", "00124", "30"],
    ["u3", "Eva", "Nør", "eva@example.test", "", "10"],
]


def persons(customer) -> dict[str, Person]:
    rows = db.session.scalars(select(Person).where(Person.customer_id == customer.id))
    return {p.username: p for p in rows}


def units(customer) -> dict[str, OrgUnit]:
    rows = db.session.scalars(select(OrgUnit).where(OrgUnit.customer_id == customer.id))
    return {u.number: u for u in rows if u.number}


def changes(run, entity=None) -> list[tuple]:
    rows = db.session.scalars(
        select(SyncChange).where(SyncChange.run_id == run.id).order_by(SyncChange.id)
    )
    return [
        (c.entity, c.action, c.key, c.before, c.after) for c in rows if entity in (None, c.entity)
    ]


def issues(run) -> list[tuple]:
    rows = db.session.scalars(
        select(SyncIssue).where(SyncIssue.run_id == run.id).order_by(SyncIssue.id)
    )
    return [(i.file, i.row, i.column, i.value, i.message) for i in rows]


def test_first_import_creates_tree_and_persons(customer, import_csv):
    run = import_csv(customer, UNITS, PERSONS)

    assert run.status == "applied"
    assert run.counts["units"]["created"] == 3
    assert run.counts["persons"]["created"] == 3
    tree = units(customer)
    root = customer.root_unit
    assert tree["20"].parent_id == tree["10"].id
    assert tree["10"].parent_id == root.id
    assert tree["20"].path == f"/{root.id}/{tree['10'].id}/{tree['20'].id}/"
    assert (tree["10"].kind, tree["20"].kind, tree["30"].kind) == (
        "division",
        "department",
        "location",
    )
    people = persons(customer)
    assert people["u1"].unit_id == tree["20"].id
    assert people["u1"].employee_number == "00123"
    assert people["u2"].email is None
    assert all(p.source == "files" and p.is_active for p in people.values())


def test_branch_query_finds_a_unit_and_everything_below_it(customer, import_csv):
    import_csv(customer, [*UNITS, ["21", "Sales North A", "20", ""]], PERSONS)
    tree = units(customer)

    in_sales = db.session.scalars(branch_units(tree["10"])).all()
    assert sorted(u.number for u in in_sales) == ["10", "20", "21"]
    people = db.session.scalars(branch_persons(tree["10"])).all()
    assert sorted(p.username for p in people) == ["u1", "u3"]


def test_same_files_again_change_nothing(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    run = import_csv(customer, UNITS, PERSONS)
    assert run.status == "applied"
    assert changes(run) == []
    assert run.counts["persons"] == dict.fromkeys(
        ("created", "updated", "moved", "inactivated", "reactivated"), 0
    )


def test_changed_name_email_number_is_an_update_with_before_and_after(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    edited = [["u1", "Ida", "Lund-Berg", "ida.lb@example.test", "00999", "20"], *PERSONS[1:]]
    run = import_csv(customer, UNITS, edited)

    assert changes(run) == [
        (
            "person",
            "updated",
            "u1",
            {"last_name": "Lund", "email": "ida@example.test", "employee_number": "00123"},
            {"last_name": "Lund-Berg", "email": "ida.lb@example.test", "employee_number": "00999"},
        )
    ]
    assert persons(customer)["u1"].last_name == "Lund-Berg"


def test_unit_change_is_reported_as_a_move(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    moved = [["u1", "Ida", "Lund", "ida@example.test", "00123", "30"], *PERSONS[1:]]
    run = import_csv(customer, UNITS, moved)

    assert changes(run) == [
        (
            "person",
            "moved",
            "u1",
            {"unit": "20", "unit_id": units(customer)["20"].id},
            {"unit": "30"},
        )
    ]
    assert run.counts["persons"]["moved"] == 1
    assert persons(customer)["u1"].unit_id == units(customer)["30"].id


def test_missing_person_is_inactivated_and_returning_one_reactivated(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    run = import_csv(customer, UNITS, PERSONS[:2])
    assert run.status == "applied"
    assert changes(run, "person") == [
        ("person", "inactivated", "u3", {"active": True}, {"active": False})
    ]
    eva = persons(customer)["u3"]
    assert not eva.is_active
    left_at = eva.active_changed_at

    run = import_csv(customer, UNITS, PERSONS)
    assert changes(run, "person") == [
        ("person", "reactivated", "u3", {"active": False}, {"active": True})
    ]
    eva = persons(customer)["u3"]
    assert eva.is_active and eva.active_changed_at > left_at


def test_person_behind_a_rejected_row_is_left_exactly_as_it_was(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    before = persons(customer)["u3"]
    snapshot = (
        before.first_name,
        before.last_name,
        before.email,
        before.unit_id,
        before.is_active,
        before.updated_at,
    )
    bad = [*PERSONS[:2], ["u3", "Eva", "Nør", "not-an-address", "", "10"]]
    run = import_csv(customer, UNITS, bad)

    assert run.status == "applied"
    assert issues(run) == [
        ("persons.csv", 4, "Email", "not-an-address", "This is not an email address.")
    ]
    after = persons(customer)["u3"]
    assert (
        after.first_name,
        after.last_name,
        after.email,
        after.unit_id,
        after.is_active,
        after.updated_at,
    ) == snapshot


def test_usernames_differing_only_in_case_are_both_rejected(customer, import_csv):
    rows = [*PERSONS, ["U1", "Ida", "Lund", "", "", "20"]]
    run = import_csv(customer, UNITS, rows)

    found = issues(run)
    assert [(f, r, c, v) for f, r, c, v, _ in found] == [
        ("persons.csv", 2, "Username", "u1"),
        ("persons.csv", 5, "Username", "U1"),
    ]
    assert "rows 2, 5" in found[0][4] and "differing only in case" in found[0][4]
    assert set(persons(customer)) == {"u2", "u3"}


@pytest.mark.parametrize(
    ("row", "column", "message_part"),
    [
        (["idalund", "Ida", "Lund", "", "", "20"], "Username", "name or initials"),
        (["IL", "Ida", "Lund", "", "", "20"], "Username", "name or initials"),
        (["010190-1234", "Ida", "Lund", "", "", "20"], "Username", "CPR number"),
        (["", "Ida", "Lund", "", "", "20"], "Username", "empty"),
        (["u9", "", "Lund", "", "", "20"], "First name", "first name is empty"),
        (["u9", "Ida", "Lund", "", "", "77"], "Division number", "not in the organisation"),
        (["u9", "Ida", "Lund", "", "", ""], "Division number", "unit is empty"),
    ],
)
def test_bad_person_rows_are_skipped_and_named(customer, import_csv, row, column, message_part):
    run = import_csv(customer, UNITS, [PERSONS[0], row])
    assert run.status == "applied"
    ((file, row_number, col, _value, message),) = issues(run)
    assert (file, row_number, col) == ("persons.csv", 3, column)
    assert message_part in message
    assert set(persons(customer)) == {"u1"}


def test_prefix_is_added_and_never_doubled(make_customer, import_csv):
    acme = make_customer("acme", prefix="ACME_")
    rows = [["u1", "Ida", "Lund", "", "", "20"], ["ACME_u2", "Bo", "Holm", "", "", "20"]]
    import_csv(acme, UNITS, rows)
    assert set(persons(acme)) == {"ACME_u1", "ACME_u2"}

    run = import_csv(acme, UNITS, rows)
    assert changes(run) == []


def test_username_of_another_customer_is_refused(make_customer, import_csv):
    first, second = make_customer("first"), make_customer("second")
    import_csv(first, UNITS, PERSONS)
    run = import_csv(second, UNITS, [["U1", "Ida", "Lund", "", "", "20"]])
    assert "another customer" in issues(run)[0][4]
    assert persons(second) == {}


def test_username_of_another_customer_is_refused_beyond_the_first_500(make_customer, import_csv):
    first, second = make_customer("first"), make_customer("second")
    import_csv(first, UNITS, PERSONS)
    rows = [[f"n{n:04d}", "Ida", "Lund", "", "", "20"] for n in range(700)]
    run = import_csv(second, UNITS, [*rows, ["U1", "Ida", "Lund", "", "", "20"]])
    assert len(issues(run)) == 1 and "another customer" in issues(run)[0][4]
    assert len(persons(second)) == 700 and "U1" not in persons(second)


def test_org_rows_in_any_order_are_sorted_parent_first(customer, import_csv):
    shuffled = [["40", "Team", "20", ""], ["20", "Sales North", "10", ""], ["10", "Sales", "", ""]]
    run = import_csv(customer, shuffled, [["u1", "Ida", "Lund", "", "", "40"]])
    assert run.status == "applied"
    tree = units(customer)
    assert tree["40"].path.startswith(tree["20"].path)
    assert tree["40"].depth == 3


def test_missing_parent_is_named_and_its_branch_skipped(customer, import_csv):
    rows = [["10", "Sales", "", ""], ["20", "North", "99", ""], ["21", "North A", "20", ""]]
    run = import_csv(customer, rows, [["u1", "Ida", "Lund", "", "", "10"]])
    found = issues(run)
    assert found[0][:4] == ("org.csv", 3, "Parent", "99")
    assert "neither in the organisation file nor in Kursa" in found[0][4]
    assert found[1][:4] == ("org.csv", 4, "Parent", "20")
    assert set(units(customer)) == {"10"}


def test_cycle_fails_the_run_and_changes_nothing(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    before = {n: (u.parent_id, u.path, u.name) for n, u in units(customer).items()}
    rows = [
        ["10", "Sales renamed", "21", ""],
        ["20", "Sales North", "10", ""],
        ["21", "Loop", "20", ""],
        ["30", "Warehouse", "", ""],
    ]
    run = import_csv(customer, rows, PERSONS)

    assert run.status == "failed"
    cycle = [i for i in issues(run) if "cycle" in i[4]]
    assert {row for _, row, _, _, _ in cycle} == {2, 3, 4}
    assert all(col == "Parent" for _, _, col, _, _ in cycle)
    assert {n: (u.parent_id, u.path, u.name) for n, u in units(customer).items()} == before
    assert changes(run) == []


def test_duplicate_unit_number_is_named_and_existing_unit_kept(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    rows = [*UNITS, ["30", "Warehouse again", "", ""]]
    run = import_csv(customer, rows, PERSONS)
    dupes = [(r, c, v) for _, r, c, v, m in issues(run) if "appears in rows" in m]
    assert dupes == [(4, "Number", "30"), (5, "Number", "30")]
    assert units(customer)["30"].is_active and units(customer)["30"].name == "Warehouse"
    assert persons(customer)["u2"].is_active


def test_unit_missing_from_file_stays_while_active_persons_remain(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    run = import_csv(customer, UNITS[:2], PERSONS)  # 30 gone from the file, u2 still in it
    assert units(customer)["30"].is_active
    notice = [m for *_, m in issues(run) if "stays active" in m]
    assert notice == [
        "Unit 30 (Warehouse) is not in the source any more but stays active: "
        "1 active person remains below it."
    ]


def test_unit_missing_from_file_is_inactivated_when_nothing_active_remains(customer, import_csv):
    import_csv(customer, [*UNITS, ["40", "Empty", "30", ""]], PERSONS)
    moved = [*PERSONS[:1], ["u2", "Bo", "Holm", "", "00124", "10"], PERSONS[2]]
    run = import_csv(customer, UNITS[:2], moved)
    tree = units(customer)
    assert not tree["30"].is_active and not tree["40"].is_active
    assert run.counts["units"]["inactivated"] == 2
    assert persons(customer)["u2"].unit_id == tree["10"].id


def test_moving_a_unit_moves_its_branch(customer, import_csv):
    rows = [*UNITS, ["21", "North A", "20", ""]]
    import_csv(customer, rows, PERSONS)
    rows[1] = ["20", "Sales North", "30", ""]
    run = import_csv(customer, rows, PERSONS)
    tree = units(customer)
    assert changes(run, "unit") == [("unit", "moved", "20", {"parent": "10"}, {"parent": "30"})]
    assert tree["21"].path == f"{tree['30'].path}{tree['20'].id}/{tree['21'].id}/"
    in_warehouse = db.session.scalars(branch_persons(tree["30"])).all()
    assert sorted(p.username for p in in_warehouse) == ["u1", "u2"]


def test_renamed_unit_is_an_update(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    rows = [UNITS[0], ["20", "North Sales", "10", ""], UNITS[2]]
    run = import_csv(customer, rows, PERSONS)
    assert changes(run) == [
        ("unit", "updated", "20", {"name": "Sales North"}, {"name": "North Sales"})
    ]


def test_match_by_unit_name(make_customer, import_csv):
    acme = make_customer("acme", match_by="name")
    header = ["Username", "First name", "Last name", "Afdelingsnavn"]
    run = import_csv(
        acme,
        UNITS,
        [["u1", "Ida", "Lund", "sales north"], ["u2", "Bo", "Holm", "Nowhere"]],
        person_header=header,
    )
    assert persons(acme)["u1"].unit_id == units(acme)["20"].id
    assert issues(run)[0][2:4] == ("Afdelingsnavn", "Nowhere")


def test_unreadable_file_fails_and_changes_nothing(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    run = import_csv(customer, UNITS, [], person_header=["Username", "First name"])
    assert run.status == "failed"
    assert "lacks the required column" in run.error
    assert all(p.is_active for p in persons(customer).values())


def test_run_stores_source_files_counts_and_duration(customer, import_csv):
    run = import_csv(customer, UNITS, PERSONS, actor="account:hr-admin")
    assert [(f.role, f.filename) for f in run.files] == [
        ("org", "org.csv"),
        ("persons", "persons.csv"),
    ]
    assert all(f.size > 0 and len(f.sha256) == 64 for f in run.files)
    assert run.started_by == "account:hr-admin"
    assert run.duration_ms is not None and run.finished_at >= run.started_at


def test_persons_are_never_deleted(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    import_csv(customer, UNITS, PERSONS[:1])
    count = db.session.scalar(select(func.count()).select_from(Person))
    assert count == 3


def test_run_rows_survive_in_history(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    import_csv(customer, UNITS, PERSONS)
    assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 2


def test_a_directory_source_after_files_does_not_mistake_file_units_for_the_root(
    customer, import_csv
):
    """Units made by a file import have no anchor; a source keyed on anchors must neither
    match them nor take one for the customer's root unit."""
    from sync.records import PersonRecord, SourceData, UnitRecord
    from sync.runs import run_source

    import_csv(customer, UNITS, PERSONS)
    data = SourceData(
        kind="ldap",
        source_name="corp",
        unit_match="anchor",
        person_unit_by="key",
        units=[
            UnitRecord("guid-a", "A1", "Alpha", None),
            UnitRecord("guid-b", "B1", "Beta", "guid-a"),
        ],
        persons=[PersonRecord("x1", "Ole", "Dam", None, None, "guid-b", anchor="guid-x1")],
    )
    run = run_source(customer, data, actor="test")

    assert run.status == "applied", run.error
    tree = units(customer)
    assert tree["B1"].parent_id == tree["A1"].id
    assert tree["A1"].parent_id == customer.root_unit_id
    assert persons(customer)["x1"].unit_id == tree["B1"].id
    # The file's persons belong to another source and stay, so their units stay too.
    assert tree["20"].is_active and persons(customer)["u1"].is_active
