"""The two-file source: organisation and persons, as CSV (UTF-8 or Windows-1252) or XLSX.

Headers are matched case-, space- and punctuation-insensitively against English and Danish
names, plus a customer's own names from config. Cells are read as text, so '00123' keeps its
zeros. Anything that keeps a file from being read at all is fatal; a bad row is only skipped.
"""

import csv
import hashlib
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from operator import itemgetter
from pathlib import Path

from sync.records import FileInfo, Issue, PersonRecord, SourceData, UnitRecord

XLSX_MAGIC = b"PK\x03\x04"
MAX_XLSX_UNPACKED = 256 * 2**20
MAX_CELL = 10_000  # characters; no name, address or number is longer
DELIMITERS = (";", ",", "\t")
_HEADER_NOISE = re.compile(r"[\s_\-.:/()#]+")

ORG_COLUMNS: dict[str, tuple[str, ...]] = {
    "number": (
        "number",
        "unit number",
        "division number",
        "unit id",
        "afdelingsnummer",
        "afdelingsnr",
        "enhedsnummer",
        "enhedsnr",
        "nummer",
        "nr",
    ),
    "name": ("name", "unit name", "division name", "navn", "afdelingsnavn", "enhedsnavn"),
    "parent": (
        "parent",
        "parent number",
        "parent unit",
        "parent unit number",
        "overordnet",
        "overordnet afdeling",
        "overordnet enhed",
        "overordnet nummer",
        "overordnet afdelingsnummer",
        "forælder",
    ),
    "kind": ("kind", "type", "unit type", "unit kind", "enhedstype", "afdelingstype", "art"),
}
PERSON_COLUMNS: dict[str, tuple[str, ...]] = {
    "username": (
        "username",
        "user name",
        "login",
        "user id",
        "brugernavn",
        "bruger id",
        "brugerid",
    ),
    "first_name": ("first name", "firstname", "given name", "fornavn", "fornavne"),
    "last_name": ("last name", "lastname", "surname", "family name", "efternavn"),
    "email": (
        "email",
        "e-mail",
        "mail",
        "email address",
        "e-mail adresse",
        "emailadresse",
        "mailadresse",
    ),
    "employee_number": (
        "employee number",
        "employee no",
        "employee id",
        "medarbejdernummer",
        "medarbejdernr",
        "medarbejder id",
        "lønnummer",
        "loennummer",
        "ansatnummer",
    ),
    "division_number": (
        "division number",
        "unit number",
        "department number",
        "division",
        "afdelingsnummer",
        "afdelingsnr",
        "enhedsnummer",
        "afdeling nr",
    ),
    "division_name": (
        "division name",
        "unit name",
        "department",
        "department name",
        "afdeling",
        "afdelingsnavn",
        "enhedsnavn",
    ),
}
KIND_NAMES = {
    "": "department",
    "department": "department",
    "afdeling": "department",
    "location": "location",
    "lokation": "location",
    "sted": "location",
    "division": "division",
    "divison": "division",
}
# For messages about a missing column: an English and a Danish header that would do.
EXAMPLE_HEADERS = {
    "number": "'Number' or 'Afdelingsnummer'",
    "name": "'Name' or 'Navn'",
    "username": "'Username' or 'Brugernavn'",
    "first_name": "'First name' or 'Fornavn'",
    "last_name": "'Last name' or 'Efternavn'",
    "division_number": "'Division number' or 'Afdelingsnummer'",
    "division_name": "'Division name' or 'Afdelingsnavn'",
}
COLUMN_LABELS = {
    "number": "unit number",
    "name": "name",
    "parent": "parent",
    "kind": "kind",
    "username": "username",
    "first_name": "first name",
    "last_name": "last name",
    "email": "email",
    "employee_number": "employee number",
    "division_number": "division number",
    "division_name": "division name",
}


@dataclass(frozen=True)
class FileInput:
    name: str
    data: bytes

    @classmethod
    def from_path(cls, path: str | Path) -> "FileInput":
        path = Path(path)
        return cls(path.name, path.read_bytes())


class FileProblem(Exception):
    """The file cannot be used at all; carries the issue that says why."""

    def __init__(self, issue: Issue):
        super().__init__(issue.message)
        self.issue = issue


@dataclass
class Table:
    headers: list[str]
    rows: Iterator[tuple[int, list[str]]]  # (row number as the user sees it, cells)


def header_key(text: str) -> str:
    return _HEADER_NOISE.sub("", text.strip().lstrip("\ufeff").casefold())


def read_table(file: FileInput) -> Table:
    """Open a CSV or XLSX file; the first non-empty row is the header."""
    if file.data.startswith(XLSX_MAGIC):
        return _read_xlsx(file)
    if file.name.lower().endswith((".xlsx", ".xlsm")):
        raise FileProblem(
            Issue(
                "The file is named like an XLSX workbook but is not one; if it "
                "is CSV text, name it .csv.",
                file=file.name,
            )
        )
    return _read_csv(file)


def _read_csv(file: FileInput) -> Table:
    text = _decode(file)
    first = next((line for line in text.splitlines() if line.strip()), None)
    if first is None:
        raise FileProblem(Issue("The file is empty.", file=file.name))
    delimiter = max(DELIMITERS, key=first.count)
    # strict: an unbalanced quote is an error, never a cell that swallows the rows after it.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records = enumerate(reader, start=1)  # row numbers as a spreadsheet shows them
    try:
        for _, header in records:
            if any(cell.strip() for cell in header):
                break
        else:
            raise FileProblem(Issue("The file has no header row.", file=file.name))
    except csv.Error as exc:
        raise FileProblem(Issue(f"The file is not valid CSV: {exc}.", file=file.name)) from None
    return Table([h.strip() for h in header], _csv_rows(file, records))


def _csv_rows(file: FileInput, records) -> Iterator[tuple[int, list[str]]]:
    row = 1
    try:
        for row, cells in records:
            yield row, [c.strip() for c in cells]
    except csv.Error as exc:
        problem = (
            f'The file is not valid CSV after row {row}: {exc}. A quote (") that '
            "opens a value must close it; nothing was imported."
        )
        raise FileProblem(Issue(problem, file=file.name, row=row + 1)) from None


def _decode(file: FileInput) -> str:
    data = file.data
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        # Excel's "Unicode text" export: UTF-16 with a byte-order mark, tab-separated.
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise FileProblem(
                Issue(f"The file is not valid UTF-16 text (byte {exc.start}).", file=file.name)
            ) from None
    if data[:65536].count(b"\x00") > len(data[:65536]) // 100:
        raise FileProblem(
            Issue(
                "The file is neither CSV text nor an XLSX workbook (it holds "
                "NUL bytes: UTF-16 without a byte-order mark, or binary).",
                file=file.name,
            )
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Danish Excel saves "CSV" in Windows-1252; its 5 unused bytes are still errors.
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise FileProblem(
            Issue(
                f"The file is neither UTF-8 nor Windows-1252 text (byte {exc.start}).",
                file=file.name,
            )
        ) from None


def _read_xlsx(file: FileInput) -> Table:
    from openpyxl import load_workbook

    _refuse_unpacking_too_much(file)
    try:
        workbook = load_workbook(io.BytesIO(file.data), read_only=True, data_only=True)
        sheet = workbook.worksheets[0]
        # Read-only mode trusts the sheet's stored <dimension>, which some writers leave stale
        # (rows and columns beyond it would be dropped without a word).
        sheet.reset_dimensions()
        rows = sheet.iter_rows()
        for header_cells in rows:
            header = [_cell_text(c) for c in header_cells]
            if any(header):
                break
        else:
            workbook.close()
            raise FileProblem(Issue("The workbook's first sheet is empty.", file=file.name))
    except FileProblem:
        raise
    except Exception as exc:  # openpyxl raises many kinds on a damaged workbook
        raise FileProblem(
            Issue(
                f"The file is not a readable XLSX workbook ({type(exc).__name__}).", file=file.name
            )
        ) from None
    return Table(header, _xlsx_rows(file, workbook, rows))


def _refuse_unpacking_too_much(file: FileInput) -> None:
    try:
        unpacked = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(file.data)).infolist())
    except zipfile.BadZipFile:
        raise FileProblem(
            Issue("The file is not a readable XLSX workbook (a damaged zip).", file=file.name)
        ) from None
    if unpacked > MAX_XLSX_UNPACKED:
        raise FileProblem(
            Issue(
                f"The workbook unpacks to {unpacked // 2**20} MB, more than "
                f"{MAX_XLSX_UNPACKED // 2**20} MB; save it as CSV instead.",
                file=file.name,
            )
        )


def _xlsx_rows(file: FileInput, workbook, rows) -> Iterator[tuple[int, list[str]]]:
    row = 1
    try:
        for cells in rows:
            if not cells:
                continue
            row = cells[0].row
            yield row, [_cell_text(c) for c in cells]
    except FileProblem:
        raise
    except Exception as exc:
        raise FileProblem(
            Issue(
                f"The workbook is damaged after row {row} "
                f"({type(exc).__name__}); nothing was imported.",
                file=file.name,
                row=row + 1,
            )
        ) from None
    finally:
        workbook.close()


def _cell_text(cell) -> str:
    value = getattr(cell, "value", None)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return (
            value.date().isoformat()
            if value.time() == datetime.min.time()
            else value.isoformat(sep=" ")
        )
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float):
        number = int(value) if float(value).is_integer() else value
        text = str(number) if isinstance(number, int) else f"{number:.15g}"
        # A number formatted as '00000' shows its leading zeros in Excel: keep them.
        fmt = getattr(cell, "number_format", "") or ""
        if isinstance(number, int) and fmt and set(fmt) == {"0"} and len(fmt) > len(text):
            text = text.rjust(len(fmt), "0")
        return text
    return str(value).strip()


def map_columns(
    headers: list[str],
    aliases: dict[str, tuple[str, ...]],
    extra: dict[str, list[str]] | None = None,
) -> dict[str, int]:
    """field -> column index, by the first header that names it."""
    wanted: dict[str, str] = {}
    for field, names in aliases.items():
        for name in [*(extra or {}).get(field, []), *names]:
            wanted.setdefault(header_key(name), field)
    found: dict[str, int] = {}
    for index, header in enumerate(headers):
        field = wanted.get(header_key(header))
        if field and field not in found:
            found[field] = index
    return found


def file_info(role: str, file: FileInput) -> FileInfo:
    return FileInfo(role, file.name, len(file.data), hashlib.sha256(file.data).hexdigest())


class _Reader:
    """Reads one file of the pair into records, collecting issues."""

    def __init__(
        self,
        role: str,
        file: FileInput,
        required: list[str],
        aliases: dict[str, tuple[str, ...]],
        extra: dict[str, list[str]] | None,
    ):
        self.file = file
        self.table = read_table(file)
        self.columns = map_columns(self.table.headers, aliases, extra)
        missing = [f for f in required if f not in self.columns]
        if missing:
            labels = "; ".join(f"{COLUMN_LABELS[f]} ({EXAMPLE_HEADERS[f]})" for f in missing)
            seen = ", ".join(h for h in self.table.headers if h) or "none"
            raise FileProblem(
                Issue(
                    f"The {role} file lacks the required column(s): {labels}. "
                    f"Columns found: {seen}. docs/import-files.md lists every accepted name.",
                    file=file.name,
                    row=1,
                    column=COLUMN_LABELS[missing[0]],
                )
            )
        self.headers = {f: self.table.headers[i] for f, i in self.columns.items()}
        used = set(self.columns.values())
        self.unused = [h for i, h in enumerate(self.table.headers) if h and i not in used]

    @staticmethod
    def _row_problem(cells: list[str], header_width: int) -> str | None:
        if len(cells) > header_width and any(cells[header_width:]):
            return (
                f"The row has {len(cells)} values but the header has {header_width} "
                "columns; a delimiter inside a value must be in quotes. The row is skipped."
            )
        if max(map(len, cells)) > MAX_CELL:
            return f"A value is longer than {MAX_CELL} characters; the row is skipped."
        return None

    def notices(self) -> list[Issue]:
        """Columns the import does not read: a misspelt header would otherwise go unseen."""
        read = {header_key(h) for h in self.headers.values()}
        return [
            Issue(
                f"The column {header!r} appears twice; only the first one is read."
                if header_key(header) in read
                else f"The column {header!r} is not one the import reads; it was ignored.",
                self.file.name,
                1,
                header,
                severity="notice",
            )
            for header in self.unused
        ]

    def rows(
        self, issues: list[Issue], rejected: list[str], key: str
    ) -> Iterator[tuple[int, dict[str, str]]]:
        """The data rows as field -> text. A row that cannot be trusted is reported, its
        `key` field (when readable) added to `rejected`, and skipped."""
        count = 0
        fields = list(self.columns)
        indexes = list(self.columns.values())
        width, header_width = max(indexes) + 1, len(self.table.headers)
        pick = itemgetter(*indexes) if len(indexes) > 1 else lambda cells: (cells[indexes[0]],)
        for row_number, cells in self.table.rows:
            if not any(cells):
                continue
            count += 1
            if len(cells) < width:
                cells = cells + [""] * (width - len(cells))
            values = dict(zip(fields, pick(cells), strict=True))
            problem = self._row_problem(cells, header_width)
            if problem:
                issues.append(
                    Issue(problem, self.file.name, row_number, None, values.get(key, "")[:200])
                )
                if values.get(key):
                    rejected.append(values[key])
                continue
            yield row_number, values
        if count == 0:
            raise FileProblem(Issue("The file has a header but no data rows.", file=self.file.name))


def read_files(
    org: FileInput, persons: FileInput, *, match_by: str = "number", columns: dict | None = None
) -> SourceData:
    """Read the pair. A file that cannot be read makes the result fatal; nothing is planned."""
    columns = columns or {}
    unit_field = "division_number" if match_by == "number" else "division_name"
    data = SourceData(
        kind="files",
        units=[],
        persons=[],
        files=[file_info("org", org), file_info("persons", persons)],
        person_unit_by=match_by,
        unit_match="number",
    )
    try:
        org_reader = _Reader(
            "organisation", org, ["number", "name"], ORG_COLUMNS, columns.get("org")
        )
        data.units = list(_unit_records(org_reader, data.issues, data.rejected_unit_keys))
        person_reader = _Reader(
            "persons",
            persons,
            ["username", "first_name", "last_name", unit_field],
            PERSON_COLUMNS,
            columns.get("persons"),
        )
        data.persons = list(
            _person_records(person_reader, unit_field, data.issues, data.rejected_person_keys)
        )
        data.headers = {"org": org_reader.headers, "persons": person_reader.headers}
        data.issues.extend(org_reader.notices() + person_reader.notices())
    except FileProblem as problem:
        data.issues.append(problem.issue)
        data.fatal = True
    return data


def _unit_records(
    reader: _Reader, issues: list[Issue], rejected: list[str]
) -> Iterator[UnitRecord]:
    name = reader.file.name
    for row, cells in reader.rows(issues, rejected, "number"):
        number, title = cells["number"], cells["name"]
        kind_text = cells.get("kind", "")
        kind = KIND_NAMES.get(kind_text.casefold())
        if number and (not title or kind is None):
            rejected.append(number)
        if not number:
            issues.append(
                Issue("The unit number is empty.", name, row, reader.headers["number"], "")
            )
        elif not title:
            issues.append(Issue("The unit name is empty.", name, row, reader.headers["name"], ""))
        elif kind is None:
            issues.append(
                Issue(
                    "Unknown unit kind; use department, location or division.",
                    name,
                    row,
                    reader.headers.get("kind"),
                    kind_text,
                )
            )
        else:
            parent = cells.get("parent") or None
            yield UnitRecord(
                key=number,
                number=number,
                name=title,
                parent_key=parent,
                kind=kind,
                file=name,
                row=row,
            )


def _person_records(
    reader: _Reader, unit_field: str, issues: list[Issue], rejected: list[str]
) -> Iterator[PersonRecord]:
    name = reader.file.name
    for row, cells in reader.rows(issues, rejected, "username"):
        yield PersonRecord(
            username=cells["username"],
            first_name=cells["first_name"],
            last_name=cells["last_name"],
            email=cells.get("email") or None,
            employee_number=cells.get("employee_number") or None,
            unit_ref=cells[unit_field],
            file=name,
            row=row,
        )
