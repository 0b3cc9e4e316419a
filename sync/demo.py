"""Fictional demo data: the organisation and persons files of the demo customer "Demo A/S".

The same seed gives the same files, byte for byte. Persons are common Danish first and last
names paired at random, so they are made up; usernames are ids (DEMO_u10042), never a name,
initials or a CPR number; email addresses are under example.test, which cannot be delivered.
The headers are Danish on purpose: the import recognises them as aliases.

Regenerate the small examples in docs/ with `python -m sync.demo docs/examples`.
"""

import csv
import random
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ORG_HEADERS = ("Afdelingsnummer", "Navn", "Overordnet", "Type")
PERSON_HEADERS = (
    "Brugernavn",
    "Fornavn",
    "Efternavn",
    "E-mail",
    "Medarbejdernummer",
    "Afdelingsnummer",
)
DEMO_FILES = ("demo-organisation.csv", "demo-persons.csv")
USERNAME_PREFIX = "DEMO_"
EMAIL_DOMAIN = "example.test"
# Kinds as a Danish HR system writes them; the import maps them to division/location/department.
DIVISION, LOCATION, DEPARTMENT = "Division", "Lokation", "Afdeling"


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(","))


FIRST_NAMES = _names(
    """
    Anne, Mette, Kirsten, Hanne, Helle, Susanne, Lene, Camilla, Louise, Maria, Pia, Charlotte,
    Tina, Marianne, Ida, Emma, Sofie, Freja, Line, Bodil, Åse, Signe, Astrid, Birgitte,
    Anne-Mette, Maja, Julie, Sara, Peter, Jens, Lars, Michael, Henrik, Thomas, Søren, Jan,
    Niels, Rasmus, Martin, Jesper, Morten, Anders, Christian, Mads, Frederik, Jørgen, Bjørn,
    Kasper, Mikkel, Oliver, William, Emil, Magnus, Troels, Kåre, Hans Erik
    """
)
LAST_NAMES = _names(
    """
    Jensen, Nielsen, Hansen, Pedersen, Andersen, Christensen, Larsen, Sørensen, Rasmussen,
    Jørgensen, Petersen, Madsen, Kristensen, Olsen, Thomsen, Christiansen, Poulsen, Johansen,
    Møller, Mortensen, Knudsen, Jakobsen, Mikkelsen, Olesen, Frederiksen, Laursen, Henriksen,
    Lund, Holm, Schmidt, Eriksen, Clausen, Simonsen, Svendsen, Iversen, Østergaard, Jeppesen,
    Vestergaard, Nissen, Lauridsen, Kjær, Skov, Dam, Bach, Krogh, Friis, Aagaard, Bruun,
    Winther, Kristiansen
    """
)
_ASCII = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "é": "e", " ": ".", "-": "."})


@dataclass(frozen=True, slots=True)
class Unit:
    number: str
    name: str
    parent: str  # "" for a top-level unit, which sits directly under the customer
    kind: str


# number, name, parent number, kind: divisions -> departments or locations -> teams.
DEMO_UNITS = tuple(
    Unit(*row)
    for row in (
        ("1000", "Salg og marked", "", DIVISION),
        ("1100", "Salg Danmark", "1000", DEPARTMENT),
        ("1110", "Salgsteam Øst", "1100", DEPARTMENT),
        ("1120", "Salgsteam Vest", "1100", DEPARTMENT),
        ("1200", "Marketing", "1000", DEPARTMENT),
        ("1210", "Kommunikation", "1200", DEPARTMENT),
        ("1220", "Digital markedsføring", "1200", DEPARTMENT),
        ("2000", "Produktion", "", DIVISION),
        ("2100", "Fabrik Aarhus", "2000", LOCATION),
        ("2110", "Montage Aarhus", "2100", DEPARTMENT),
        ("2120", "Kvalitet Aarhus", "2100", DEPARTMENT),
        ("2130", "Lager Aarhus", "2100", DEPARTMENT),
        ("2200", "Fabrik Odense", "2000", LOCATION),
        ("2210", "Montage Odense", "2200", DEPARTMENT),
        ("2220", "Vedligehold Odense", "2200", DEPARTMENT),
        ("2300", "Indkøb", "2000", DEPARTMENT),
        ("3000", "IT og udvikling", "", DIVISION),
        ("3100", "Udvikling", "3000", DEPARTMENT),
        ("3110", "Team Platform", "3100", DEPARTMENT),
        ("3120", "Team Web", "3100", DEPARTMENT),
        ("3200", "Drift og support", "3000", DEPARTMENT),
        ("3210", "Servicedesk", "3200", DEPARTMENT),
        ("3220", "Infrastruktur", "3200", DEPARTMENT),
        ("4000", "Økonomi og administration", "", DIVISION),
        ("4100", "Økonomi", "4000", DEPARTMENT),
        ("4110", "Bogholderi", "4100", DEPARTMENT),
        ("4120", "Controlling", "4100", DEPARTMENT),
        ("4200", "HR", "4000", DEPARTMENT),
        ("4210", "Løn og personale", "4200", DEPARTMENT),
        ("4220", "Rekruttering og uddannelse", "4200", DEPARTMENT),
        ("4300", "Direktionssekretariat", "4000", DEPARTMENT),
        ("5000", "Kundeservice", "", DIVISION),
        ("5100", "Kundecenter Aalborg", "5000", LOCATION),
        ("5110", "Telefonisk service", "5100", DEPARTMENT),
        ("5120", "Skriftlig service", "5100", DEPARTMENT),
        ("5200", "Kundecenter København", "5000", LOCATION),
    )
)
DEMO_PERSONS = 500

EXAMPLE_UNITS = tuple(
    Unit(*row)
    for row in (
        ("1000", "Salg", "", DIVISION),
        ("1100", "Salg Danmark", "1000", DEPARTMENT),
        ("1200", "Marketing", "1000", DEPARTMENT),
        ("2000", "Produktion", "", DIVISION),
        ("2100", "Fabrik Aarhus", "2000", LOCATION),
        ("2110", "Montage Aarhus", "2100", DEPARTMENT),
        ("2120", "Kvalitet Aarhus", "2100", DEPARTMENT),
        ("2200", "Fabrik Odense", "2000", LOCATION),
        ("3000", "Administration", "", DIVISION),
        ("3100", "HR og løn", "3000", DEPARTMENT),
    )
)
EXAMPLE_PERSONS = 25
EXAMPLE_SEED = 11


def write_demo_files(folder: Path, seed: int = 7) -> tuple[Path, Path]:
    """Write demo-organisation.csv and demo-persons.csv (about 500 persons) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    persons = make_persons(DEMO_UNITS, DEMO_PERSONS, random.Random(seed), USERNAME_PREFIX)

    org_path, persons_path = (folder / name for name in DEMO_FILES)
    _write_csv(org_path, ORG_HEADERS, _unit_rows(DEMO_UNITS))
    _write_csv(persons_path, PERSON_HEADERS, persons)
    return org_path, persons_path


def write_example_files(folder: Path) -> list[Path]:
    """Write the small examples of docs/: organisation and persons, as CSV and as XLSX."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    units = _unit_rows(EXAMPLE_UNITS)
    # No prefix here: whichever customer imports them, the import adds its own.
    persons = make_persons(EXAMPLE_UNITS, EXAMPLE_PERSONS, random.Random(EXAMPLE_SEED), "")

    written = []
    for stem, headers, rows, sheet in (
        ("organisation", ORG_HEADERS, units, "Organisation"),
        ("persons", PERSON_HEADERS, persons, "Medarbejdere"),
    ):
        written.append(_write_csv(folder / f"{stem}.csv", headers, rows))
        written.append(_write_xlsx(folder / f"{stem}.xlsx", sheet, headers, rows))
    return written


def make_persons(
    units: tuple[Unit, ...], count: int, rng: random.Random, prefix: str
) -> list[tuple]:
    """Rows for the persons file: one per unit first (its head), the rest weighted to teams."""
    parents = {unit.parent for unit in units}
    # Teams (units with nothing below them) hold most people; a division mostly its staff.
    weights = [1 if unit.number in parents else 6 for unit in units]
    placed = [unit.number for unit in units]
    placed += rng.choices([unit.number for unit in units], weights, k=count - len(units))

    ids = rng.sample(range(10000, 100000), count)
    employee_numbers = rng.sample(range(1, 100000), count)
    emails: set[str] = set()
    rows = []
    for unit_number, user_id, employee_number in zip(placed, ids, employee_numbers, strict=True):
        first, last = _name(rng)
        rows.append(
            (
                f"{prefix}u{user_id}",
                first,
                last,
                _email(first, last, emails),
                f"{employee_number:06d}",
                unit_number,
            )
        )
    rows.sort(key=lambda row: row[4])  # as an HR export lists them: by employee number
    return rows


def _name(rng: random.Random) -> tuple[str, str]:
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    if rng.random() < 0.12:  # a double surname, as many Danes have
        last = f"{rng.choice(LAST_NAMES)} {last}"
    return first, last


def _email(first: str, last: str, taken: set[str]) -> str:
    local = f"{first}.{last}".lower().translate(_ASCII)
    candidate, n = local, 1
    while candidate in taken:
        n += 1
        candidate = f"{local}{n}"
    taken.add(candidate)
    return f"{candidate}@{EMAIL_DOMAIN}"


def _unit_rows(units: tuple[Unit, ...]) -> list[tuple]:
    return [(unit.number, unit.name, unit.parent, unit.kind) for unit in units]


def _write_csv(path: Path, headers: tuple, rows: list[tuple]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, delimiter=";", lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
    return path


def _write_xlsx(path: Path, title: str, headers: tuple, rows: list[tuple]) -> Path:
    # Imported here: only the docs examples need it, not the demo a server loads.
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = title
    sheet.append(headers)
    for row in rows:
        sheet.append(row)  # every value a string, so "004217" keeps its zeros
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for column in sheet.columns:
        width = max(len(str(cell.value or "")) for cell in column)
        sheet.column_dimensions[column[0].column_letter].width = width + 2
    sheet.freeze_panes = "A2"
    book.properties.creator = "Kursa"
    book.properties.created = book.properties.modified = datetime(2025, 1, 1)
    book.save(path)
    return path


if __name__ == "__main__":
    for written in write_example_files(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        sys.stdout.write(f"{written}\n")
