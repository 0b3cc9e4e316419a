"""The CSV report download of a run (no changes, formula-like cells, non-ASCII and line
breaks) and odd unit trees in one file (a unit moved under its own child, a cycle)."""

import csv
import io

import sync.report as report_module
from portal.core.db import db
from portal.directory.models import OrgUnit
from sync.revert import revert_run
from tests.sync.attack_helpers import (  # noqa: F401 - fixtures
    STAFF,
    UNITS,
    change_count,
    issues_of,
    people,
    staffed_fixture,
    tree,
)

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
