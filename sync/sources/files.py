"""The two-file source: organisation and persons, as CSV (UTF-8 or Windows-1252) or XLSX.

Headers are matched case-, space- and punctuation-insensitively against English and Danish
names, plus a customer's own names from config. Cells are read as text, so '00123' keeps its
zeros. Anything that keeps a file from being read at all is fatal; a bad row is only skipped.
"""

import hashlib
import re
from collections.abc import Iterator
from operator import itemgetter

from sync.records import FileInfo, Issue, PersonRecord, SourceData, UnitRecord
from sync.sources.tables import MAX_CELL, FileInput, FileProblem, read_table

__all__ = ["FileInput", "FileProblem", "map_columns", "read_files", "read_table"]

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


def header_key(text: str) -> str:
    return _HEADER_NOISE.sub("", text.strip().lstrip("\ufeff").casefold())


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
