"""Reading a table out of an uploaded file: CSV (UTF-8, Windows-1252, UTF-16 with a BOM; the
delimiter taken from the header) or the first sheet of an XLSX workbook, cells as text.

Anything that keeps the file from being read at all raises FileProblem with the issue that
says why, naming the file (and the row where that is known).
"""

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sync.records import Issue

XLSX_MAGIC = b"PK\x03\x04"
MAX_XLSX_UNPACKED = 256 * 2**20
MAX_CELL = 10_000  # characters; no name, address or number is longer
DELIMITERS = (";", ",", "\t")


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
