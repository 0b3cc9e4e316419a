"""Participant lists as CSV and XLSX: one table, two file formats.

Both are opened in spreadsheet programs, so two things are guarded against: ids such as
usernames and unit numbers losing leading zeros (XLSX cells are text), and a name starting
with '=' being run as a formula (CSV cells get a leading apostrophe, XLSX cells stay text).
"""

import csv
import io

from openpyxl import Workbook
from openpyxl.cell.cell import TYPE_STRING
from sqlalchemy import select

from portal.core.db import db
from portal.courses.models import Activity, Signup, SignupStatus
from portal.courses.queries import SIGNUP_ORDER
from portal.directory.models import OrgUnit, Person

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
TEXT_COLUMNS = {"Username", "Unit number"}
ATTENDED = {
    SignupStatus.ATTENDED: "yes",
    SignupStatus.COMPLETED: "yes",
    SignupStatus.NO_SHOW: "no",
}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def participant_rows(activity: Activity) -> list[list]:
    """Seat holders in signup order, then the waiting list by position, then the cancelled."""
    rows = db.session.execute(
        select(Signup, Person, OrgUnit)
        .join(Person, Signup.person_id == Person.id)
        .join(OrgUnit, Person.unit_id == OrgUnit.id)
        .where(Signup.activity_id == activity.id)
    ).all()
    rows.sort(key=lambda r: (SIGNUP_ORDER[r[0].status], r[0].position or 0, r[0].id))
    return [
        [
            person.username,
            person.first_name,
            person.last_name,
            person.email or "",
            unit.number or "",
            unit.name,
            signup.status.replace("_", " "),
            signup.position if signup.position is not None else "",
            ATTENDED.get(signup.status, ""),
        ]
        for signup, person, unit in rows
    ]


def participants_csv(activity: Activity) -> str:
    """Semicolon-separated with a byte order mark, which makes Excel read UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(HEADER)
    for row in participant_rows(activity):
        writer.writerow([_defused(value) for value in row])
    return "\ufeff" + out.getvalue()


def participants_xlsx(activity: Activity) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = "Participants"
    sheet.append(HEADER)
    for row in participant_rows(activity):
        sheet.append(row)
    for column, name in enumerate(HEADER, start=1):
        for (cell,) in sheet.iter_rows(min_row=2, min_col=column, max_col=column):
            if isinstance(cell.value, str):
                cell.data_type = TYPE_STRING  # '=...' stays text, never a formula
            if name in TEXT_COLUMNS:
                cell.number_format = "@"
        sheet.column_dimensions[sheet.cell(1, column).column_letter].width = 18
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _defused(value):
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
