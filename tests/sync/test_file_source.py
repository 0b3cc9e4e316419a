"""Reading the two files: encodings, delimiters, header names, XLSX cells, unusable files."""

import io
from datetime import date, datetime

import pytest
from openpyxl import Workbook

from sync.sources.files import FileInput, read_files, read_table
from tests.conftest import csv_bytes

ORG = [["Afdelingsnummer", "Navn", "Overordnet"], ["10", "Salg", ""], ["20", "Lager", "10"]]
PERSONS = [
    ["Brugernavn", "Fornavn", "Efternavn", "E-mail", "Medarbejdernummer", "Afdelingsnummer"],
    ["u1001", "Søren", "Ærø", "s1@example.test", "00123", "20"],
]


def read(org_bytes, persons_bytes, org_name="org.csv", persons_name="persons.csv", **kw):
    return read_files(FileInput(org_name, org_bytes), FileInput(persons_name, persons_bytes), **kw)


@pytest.mark.parametrize("delimiter", [";", ",", "\t"])
def test_delimiter_is_detected_from_the_header(delimiter):
    data = read(csv_bytes(ORG, delimiter), csv_bytes(PERSONS, delimiter))
    assert not data.fatal, data.issues
    assert [(u.number, u.name, u.parent_key) for u in data.units] == [
        ("10", "Salg", None),
        ("20", "Lager", "10"),
    ]
    assert data.persons[0].employee_number == "00123"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252"])
def test_utf8_with_or_without_bom_and_windows_1252_read_the_same(encoding):
    data = read(csv_bytes(ORG, encoding=encoding), csv_bytes(PERSONS, encoding=encoding))
    person = data.persons[0]
    assert (person.first_name, person.last_name) == ("Søren", "Ærø")
    assert data.headers["persons"]["username"] == "Brugernavn"


def test_headers_match_english_and_danish_names_ignoring_case_and_spaces():
    org = [[" NUMBER ", "unit_name", "Parent  Number"], ["1", "A", ""]]
    persons = [
        ["user name", "FIRSTNAME", "Last-Name", "Mail", "Lønnummer", "afdelingsnr"],
        ["u1", "Ida", "Lund", "", "7", "1"],
    ]
    data = read(csv_bytes(org), csv_bytes(persons))
    assert not data.fatal, data.issues
    assert data.persons[0].employee_number == "7"
    assert data.units[0].name == "A"


def test_customer_column_names_from_config_are_accepted():
    org = [["Kostcenter", "Navn"], ["1", "A"]]
    persons = [["Login", "Fornavn", "Efternavn", "Kostcenter"], ["u1", "Ida", "Lund", "1"]]
    columns = {
        "org": {"number": ["Kostcenter"]},
        "persons": {"username": ["Login"], "division_number": ["Kostcenter"]},
    }
    data = read(csv_bytes(org), csv_bytes(persons), columns=columns)
    assert not data.fatal, data.issues
    assert data.persons[0].username == "u1"
    assert data.persons[0].unit_ref == "1"


def test_missing_required_column_fails_naming_file_and_column():
    persons = [["Brugernavn", "Fornavn", "Efternavn"], ["u1", "Ida", "Lund"]]
    data = read(csv_bytes(ORG), csv_bytes(persons), persons_name="people.csv")
    assert data.fatal
    (issue,) = data.issues
    assert (issue.file, issue.row, issue.column) == ("people.csv", 1, "division number")
    assert "lacks the required column" in issue.message


def test_header_without_rows_fails():
    data = read(csv_bytes(ORG[:1]), csv_bytes(PERSONS))
    assert data.fatal
    assert data.issues[0].file == "org.csv"
    assert "no data rows" in data.issues[0].message


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\x00\x01\x02\xff\xfe" * 50])
def test_empty_or_binary_file_fails_with_a_message(content):
    data = read(content, csv_bytes(PERSONS))
    assert data.fatal
    assert data.issues[0].file == "org.csv"
    assert data.issues[0].message


def test_broken_xlsx_fails_with_a_message():
    data = read(b"PK\x03\x04 not really a zip", csv_bytes(PERSONS), org_name="org.xlsx")
    assert data.fatal
    assert "XLSX" in data.issues[0].message


def xlsx_bytes(rows, formats=None) -> bytes:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    for (row, col), fmt in (formats or {}).items():
        sheet.cell(row=row, column=col).number_format = fmt
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_xlsx_cells_are_read_as_text():
    rows = [
        ["Brugernavn", "Fornavn", "Efternavn", "Medarbejdernummer", "Afdelingsnummer"],
        ["u1", "Ida", "Lund", "00123", 1234.0],
        ["u2", "Bo", "Holm", 42, 20],
        ["u3", "Eva", "Nør", date(2024, 3, 1), datetime(2024, 3, 1, 8, 30)],
    ]
    table = read_table(FileInput("p.xlsx", xlsx_bytes(rows, {(3, 4): "00000"})))
    cells = [cells for _, cells in table.rows]
    assert cells[0][3:] == ["00123", "1234"]
    assert cells[1][3] == "00042"  # shown with leading zeros in Excel, kept so
    assert cells[2][3:] == ["2024-03-01", "2024-03-01 08:30:00"]


def test_xlsx_pair_reads_like_csv():
    data = read(xlsx_bytes(ORG), xlsx_bytes(PERSONS), "org.xlsx", "persons.xlsx")
    assert not data.fatal, data.issues
    assert data.persons[0].row == 2
    assert data.persons[0].employee_number == "00123"
    assert data.files[0].filename == "org.xlsx" and len(data.files[0].sha256) == 64


def test_rows_are_numbered_as_the_user_sees_them_and_blank_rows_skipped():
    persons = [*PERSONS, ["", "", "", "", "", ""], ["u2", "Bo", "Holm", "", "", "10"]]
    data = read(csv_bytes(ORG), csv_bytes(persons))
    assert [p.row for p in data.persons] == [2, 4]


def test_unit_row_with_unknown_kind_is_rejected_and_remembered():
    org = [
        ["Number", "Name", "Parent", "Type"],
        ["1", "A", "", "planet"],
        ["2", "B", "", "Lokation"],
    ]
    data = read(csv_bytes(org), csv_bytes(PERSONS))
    assert [u.kind for u in data.units] == ["location"]
    assert data.rejected_unit_keys == ["1"]
    assert (data.issues[0].row, data.issues[0].column, data.issues[0].value) == (
        2,
        "Type",
        "planet",
    )


def test_missing_column_message_gives_header_names_that_would_do():
    persons = [["Brugernavn", "Fornavn", "Efternavn", "Enhed"], ["u1", "Ida", "Lund", "1"]]
    data = read(csv_bytes(ORG), csv_bytes(persons))
    message = data.issues[0].message
    assert "division number ('Division number' or 'Afdelingsnummer')" in message
    assert "Columns found: Brugernavn, Fornavn, Efternavn, Enhed." in message


def test_columns_the_import_does_not_read_are_named_in_a_notice():
    persons = [[*PERSONS[0], "Titel"], [*PERSONS[1], "Chef"]]
    data = read(csv_bytes(ORG), csv_bytes(persons))
    assert not data.fatal
    (notice,) = data.issues
    assert (notice.severity, notice.file, notice.row, notice.column) == (
        "notice",
        "persons.csv",
        1,
        "Titel",
    )


def test_a_repeated_column_is_named_and_only_the_first_read():
    persons = [[*PERSONS[0], "Brugernavn"], [*PERSONS[1], "other"]]
    data = read(csv_bytes(ORG), csv_bytes(persons))
    assert data.persons[0].username == "u1001"
    assert [i.message for i in data.issues] == [
        "The column 'Brugernavn' appears twice; only the first one is read."
    ]
