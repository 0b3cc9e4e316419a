"""Participant lists as CSV and XLSX, read back as a spreadsheet program would."""

import csv
import io
from datetime import timedelta

import pytest
from openpyxl import load_workbook

from portal.core.db import db, utcnow
from portal.courses.operations import record_attendance, sign_up

HEADER = [
    "Username",
    "First name",
    "Last name",
    "Email",
    "Unit number",
    "Unit",
    "Status",
    "Waiting position",
    "Attended",
]
EXPECTED = [
    [
        "0042",
        "=HYPERLINK(1)",
        "Berg",
        "anna@acme.test",
        "011",
        "Sales North",
        "attended",
        "",
        "yes",
    ],
    ["u121", "Bo", "Dahl", "bo@acme.test", "12", "Sales South", "registered", "", ""],
    ["u101", "Hanne", "Holm", "hanne@acme.test", "10", "Sales", "waitlisted", "1", ""],
]


@pytest.fixture
def full(make_activity, person, unit):
    """Two seats: Anna (attended; username and unit number with leading zeros, and a name
    that looks like a formula), Bo registered, Hanne waiting."""
    activity = make_activity("10", title="Export", capacity=2)
    anna = person("anna")
    first = sign_up(activity.id, anna, actor="test")
    sign_up(activity.id, person("bo"), actor="test")
    sign_up(activity.id, person("hanne"), actor="test")
    activity.starts_at = utcnow() - timedelta(hours=1)  # attendance once it has started
    record_attendance(first, "attended", actor="test")
    anna.username, anna.first_name, unit("11").number = "0042", "=HYPERLINK(1)", "011"
    db.session.commit()
    return activity


def url(activity, kind: str) -> str:
    return f"/courses/activities/{activity.id}/participants.{kind}"


def test_csv_holds_every_participant_in_order(login_as, full):
    response = login_as("hanne", "course_admin", "10").get(url(full, "csv"))

    assert response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    assert rows[0] == HEADER
    expected = [row.copy() for row in EXPECTED]
    expected[0][1] = "'=HYPERLINK(1)"  # a spreadsheet shows it as text, never runs it
    assert rows[1:] == expected


def test_xlsx_keeps_ids_as_text(login_as, full):
    response = login_as("hanne", "course_admin", "10").get(url(full, "xlsx"))

    sheet = load_workbook(io.BytesIO(response.get_data())).active
    rows = [[c.value if c.value is not None else "" for c in row] for row in sheet.iter_rows()]
    assert rows[0] == HEADER
    assert [[str(v) for v in row] for row in rows[1:]] == EXPECTED
    username, unit_number = sheet["A2"], sheet["E2"]
    assert username.data_type == unit_number.data_type == "s"
    assert username.number_format == unit_number.number_format == "@"
    assert sheet["B2"].data_type == "s"  # the formula-like name stays text


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_export_is_404_outside_the_course_admins_branch(login_as, full, kind):
    assert login_as("bo").get(url(full, kind)).status_code == 404
    assert login_as("hanne", "hr", "10").get(url(full, kind)).status_code == 404
    assert login_as("finn", "course_admin", "20").get(url(full, kind)).status_code == 404
    assert login_as("dina", "course_admin", None).get(url(full, kind)).status_code == 200
