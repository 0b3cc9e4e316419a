"""The daily file drop: each customer's inbox folder, imported once a day and then archived.

Folders: `<[drop] root>/<slug>/inbox` receives files (FTPS, or copied there); after a run its
files move to `<root>/<slug>/archive/<YYYY-MM-DD>/` (the day they were archived), and archive
days older than `[drop] keep_days` are deleted.

Naming rule (tell customers): a file is CSV or XLSX; its name says
its role and carries a date stamp, e.g. `organisation_2026-12-03.csv` + `persons_20261203.xlsx`.
- organisation file: a word of the name starts with org, afdeling or enhed (organisation,
  organization, afdelinger, enheder; words split at signs, digits and camelCase; "Norge" is
  no role);
- persons file: a word starts with person, medarbejder or employee (persons, personer,
  medarbejdere, employee, employees);
- the date stamp is YYYYMMDD or YYYY-MM-DD in ASCII digits, optionally followed by a time
  HHMM or HHMMSS (20261203T0200, 2026-12-03_020000); an impossible date or time is no stamp.
Two files with the same stamp, one of each role, are a pair. The newest complete pair is
imported; older pairs still in the inbox are archived unread (they are out of date). A lone
file waits for its partner. A name with both roles, or none, or no stamp is left alone.

A file still being written is never read: temporary names (*.part, *.tmp, *.filepart,
.hidden, ~lock files) are skipped, and a pair is read only when the size and modification
time of both files are the same twice, `[drop] settle_seconds` apart.
"""

import logging
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from flask import current_app

from portal.directory.models import Customer
from sync.locks import run_lock
from sync.models import SyncRun
from sync.runs import FileInput, import_files

logger = logging.getLogger(__name__)
SUFFIXES = {".csv", ".xlsx"}
TEMPORARY_SUFFIXES = {".part", ".tmp", ".temp", ".filepart", ".partial", ".crdownload"}
# A role is said by a whole word of the name (split at signs, digits and camelCase), not by
# letters inside another word: "Norge", "Georg" and "storgade" say nothing.
# The page, the refusals and docs/drop.md say it as role_rule does.
ROLE_WORDS = {"org": ("org", "afdeling", "enhed"), "persons": ("person", "medarbejder", "employee")}
ROLE_NAMES = {"org": "organisation", "persons": "persons"}
# ASCII digits only: \d would take Arabic-Indic and other digits, and such a stamp sorts as newest.
STAMP = re.compile(
    r"(?<![0-9])([0-9]{4})-?([0-9]{2})-?([0-9]{2})"
    r"(?:[T_ -]?([0-9]{2})([0-9]{2})([0-9]{2})?)?(?![0-9])"
)
ARCHIVE_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# One name may have 255 bytes on Linux file systems; an upload is first written as
# `.<name>.<8 hex>.part`, so the name itself may have 15 bytes fewer.
PART_TOKEN_HEX = 8
MAX_NAME_BYTES = 255 - len("...part") - PART_TOKEN_HEX  # 240


@dataclass(frozen=True)
class Pair:
    stamp: str
    org: Path
    persons: Path

    @property
    def files(self) -> tuple[Path, Path]:
        return self.org, self.persons


@dataclass
class DropResult:
    """What one look at the inbox did: the run (if a pair was imported) and a sentence."""

    run: SyncRun | None
    message: str
    archived: int = 0
    deleted: int = 0
    waiting: list[str] = field(default_factory=list)  # "name: why it waits or is not read"


def drop_root() -> Path:
    root = current_app.config["KURSA"]["drop"]["root"]
    return Path(root) if root else Path(current_app.instance_path) / "drop"


def inbox_of(slug: str) -> Path:
    return drop_root() / slug / "inbox"


def archive_of(slug: str) -> Path:
    return drop_root() / slug / "archive"


def customers_with_inbox() -> list[str]:
    """Slugs whose inbox folder exists (the customers the daily drop job is for)."""
    root = drop_root()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/inbox") if p.is_dir())


def role_of(name: str) -> str | None:
    """'org', 'persons' or None (ambiguous, temporary or not a data file)."""
    if is_temporary(name) or Path(name.lower()).suffix not in SUFFIXES:
        return None
    found = role_words(name)
    if bool(found["org"]) == bool(found["persons"]):
        return None
    return "org" if found["org"] else "persons"


def role_words(name: str) -> dict[str, list[str]]:
    """The words of the name that say each role (a word that starts with a role word)."""
    stem = re.sub(r"([a-zæøå])([A-ZÆØÅ])", r"\1 \2", Path(name).stem)
    words = re.findall(r"[^\W\d_]+", stem.lower())
    return {role: [w for w in words if w.startswith(starts)] for role, starts in ROLE_WORDS.items()}


def role_rule(role: str) -> str:
    """What a name needs to say `role`: 'a word starting with person, medarbejder or employee'."""
    *words, last = ROLE_WORDS[role]
    return f"a word starting with {', '.join(words)} or {last}"


def name_problem(name: str) -> str | None:
    """Why the import would never read a file of this name, in words; None if it would."""
    if Path(name.lower()).suffix not in SUFFIXES:
        return "only .csv and .xlsx files are read"
    if is_temporary(name):
        return "a temporary name (upload in progress) is never read"
    found = role_words(name)
    if found["org"] and found["persons"]:
        return (
            f"the name says both organisation ({', '.join(found['org'])}) and persons "
            f"({', '.join(found['persons'])}); it must say one of them"
        )
    if not found["org"] and not found["persons"]:
        return (
            f"the name says neither organisation ({role_rule('org')}) nor persons "
            f"({role_rule('persons')})"
        )
    return stamp_problem(name)


def waiting_notes(inbox: Path) -> dict[str, str]:
    """Why each file of the inbox that is not part of a complete pair waits or is not read."""
    files = [p.name for p in inbox.iterdir() if p.is_file()] if inbox.is_dir() else []
    notes, by_stamp = {}, {}
    for name in files:
        if is_temporary(name):
            continue
        if problem := name_problem(name):
            notes[name] = f"not read: {problem}."
        else:
            by_stamp.setdefault(stamp_of(name), []).append(name)
    for stamp, names in by_stamp.items():
        roles = [role_of(n) for n in names]
        if sorted(roles) == ["org", "persons"]:
            continue
        for name, role in zip(names, roles, strict=True):
            if roles.count(role) > 1:
                notes[name] = (
                    f"waits: {roles.count(role)} {ROLE_NAMES[role]} files carry the stamp "
                    f"{shown_stamp(stamp)}; take away all but one."
                )
            else:
                notes[name] = _lone_note(role, stamp, by_stamp)
    return notes


def _lone_note(role: str, stamp: str, by_stamp: dict[str, list[str]]) -> str:
    partner = "persons" if role == "org" else "org"
    article = "an" if partner == "org" else "a"
    note = f"waits for {article} {ROLE_NAMES[partner]} file with the stamp {shown_stamp(stamp)}"
    near = [
        n for s, names in by_stamp.items() if s != stamp and s[:8] == stamp[:8]
        for n in names if role_of(n) == partner
    ]  # fmt: skip
    if near:
        return (
            f"{note}; {near[0]} has the same day but the stamp {shown_stamp(stamp_of(near[0]))}:"
            " a pair needs the same stamp, time included."
        )
    return f"{note}."


def shown_stamp(stamp: str) -> str:
    """'20261203020000' as '2026-12-03 02:00' (the time only when there is one)."""
    day = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}"
    if stamp[8:] == "000000":
        return day
    return f"{day} {stamp[8:10]}:{stamp[10:12]}" + (f":{stamp[12:]}" if stamp[12:] != "00" else "")


def stamp_of(name: str) -> str | None:
    """The date stamp as sortable 'YYYYMMDDHHMMSS', or None (none, or not a real date and
    time: see stamp_problem)."""
    found = STAMP.search(Path(name).stem)
    if found is None or stamp_problem(name) is not None:
        return None
    year, month, day, hour, minute, second = found.groups()
    return f"{year}{month}{day}{hour or '00'}{minute or '00'}{second or '00'}"


def stamp_problem(name: str) -> str | None:
    """Why the name's date stamp cannot be read, in words for the customer; None if it can."""
    found = STAMP.search(Path(name).stem)
    if found is None:
        return "it carries no date stamp YYYYMMDD or YYYY-MM-DD"
    year, month, day, hour, minute, second = found.groups()
    try:
        date(int(year), int(month), int(day))
    except ValueError:
        return f"{year}-{month}-{day} is not a date"
    if hour is not None and (int(hour) > 23 or int(minute) > 59 or int(second or 0) > 59):
        return f"{hour}{minute}{second or ''} is not a time of day (HHMM or HHMMSS)"
    return None


def part_name(name: str) -> str:
    """The temporary name one upload of `name` is written under: unique to the upload (two
    uploads of one name never share it), hidden, and never read by the import."""
    return f".{name}.{secrets.token_hex(PART_TOKEN_HEX // 2)}.part"


def name_too_long(name: str) -> str | None:
    """A sentence for a name that, wrapped as a part name, is too long for the file system."""
    size = len(os.fsencode(name))
    if size <= MAX_NAME_BYTES:
        return None
    return (
        f"the name is too long ({size} bytes); shorten it to at most {MAX_NAME_BYTES} bytes "
        "(a plain letter or digit is one byte, æ, ø and å are two, most other signs more)."
    )


def is_temporary(name: str) -> bool:
    lower = name.lower()
    return lower.startswith((".", "~")) or any(lower.endswith(s) for s in TEMPORARY_SUFFIXES)


def complete_pairs(inbox: Path) -> list[Pair]:
    """Every stamp with exactly one organisation and one persons file, newest first."""
    found: dict[str, dict[str, list[Path]]] = {}
    for path in inbox.iterdir() if inbox.is_dir() else []:
        role, stamp = role_of(path.name), stamp_of(path.name)
        if role and stamp and path.is_file():
            found.setdefault(stamp, {"org": [], "persons": []})[role].append(path)
    pairs = []
    for stamp, roles in found.items():
        if len(roles["org"]) == 1 and len(roles["persons"]) == 1:
            pairs.append(Pair(stamp, roles["org"][0], roles["persons"][0]))
        elif len(roles["org"]) > 1 or len(roles["persons"]) > 1:
            logger.warning("file drop %s: stamp %s has several files of one role", inbox, stamp)
    return sorted(pairs, key=lambda p: p.stamp, reverse=True)


def is_settled(paths: tuple[Path, ...], seconds: float) -> bool:
    """True when no file changed size or time in `seconds` (nobody is writing them)."""
    before = [_look(p) for p in paths]
    _pause(seconds)
    after = [_look(p) for p in paths]
    return None not in before and before == after


def _look(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _pause(seconds: float) -> None:
    time.sleep(seconds)


def import_drop(customer: Customer, *, actor: str, dry_run: bool = False) -> DropResult:
    """Import the newest complete, settled pair of the customer's inbox, then archive.

    Holds the run lock `drop:<slug>` so two processes never import the same files. A dry run
    archives and deletes nothing.
    """
    with run_lock(f"drop:{customer.slug}"):
        result = _import_locked(customer, actor=actor, dry_run=dry_run)
        if not dry_run:
            _mark_looked(customer.slug)
        return result


def last_look_at(slug: str) -> datetime | None:
    """When the inbox was last looked at (imported or found empty), for the scheduler's
    catch-up of a missed daily run. A file beside the inbox: no run is recorded when the inbox
    holds nothing to import."""
    try:
        return datetime.fromtimestamp(_marker(slug).stat().st_mtime, UTC)
    except FileNotFoundError:
        return None


def _mark_looked(slug: str) -> None:
    # A customer that has never had an inbox (no upload, no FTPS password yet) has no folder.
    marker = _marker(slug)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


def _marker(slug: str) -> Path:
    return drop_root() / slug / "last-look"


def _import_locked(customer: Customer, *, actor: str, dry_run: bool) -> DropResult:
    slug, settings = customer.slug, current_app.config["KURSA"]["drop"]
    inbox = inbox_of(slug)
    pairs = complete_pairs(inbox)
    if not pairs:
        deleted = 0 if dry_run else purge_archive(slug, settings["keep_days"])
        message = f"No complete pair of files in the inbox of {slug}."
        return DropResult(None, message, 0, deleted, _waiting(slug, inbox))

    newest = pairs[0]
    if not is_settled(newest.files, settings["settle_seconds"]):
        logger.info("file drop %s: pair %s is still being written; left", slug, newest.stamp)
        return DropResult(
            None, f"The newest files of {slug} are still being written; nothing was imported."
        )

    org, persons = (FileInput.from_path(p) for p in newest.files)
    run = import_files(customer, org, persons, actor=actor, dry_run=dry_run, via="drop")
    if dry_run:
        return DropResult(run, f"Previewed the pair {newest.stamp} of {slug}.")

    # Older pairs left in the inbox are out of date now: archived unread, kept for reference.
    archived = sum(archive(slug, pair.files) for pair in pairs)
    deleted = purge_archive(slug, settings["keep_days"])
    logger.info(
        "file drop %s: run %s %s; %s files archived, %s deleted",
        slug,
        run.id,
        run.status,
        archived,
        deleted,
    )
    message = f"Imported the pair {newest.stamp} of {slug}."
    return DropResult(run, message, archived, deleted, _waiting(slug, inbox))


def _waiting(slug: str, inbox: Path) -> list[str]:
    """The inbox's files that wait or are never read, each with why; logged, not silent."""
    lines = [f"{name}: {note}" for name, note in sorted(waiting_notes(inbox).items())]
    for line in lines:
        logger.info("file drop %s: %s", slug, line)
    return lines


def archive(slug: str, files: tuple[Path, ...], today: date | None = None) -> int:
    """Move files into today's archive folder; a name taken there gets a numbered suffix."""
    folder = archive_of(slug) / (today or date.today()).isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    moved = 0
    for path in files:
        target, n = folder / path.name, 1
        while target.exists():
            target, n = folder / f"{path.stem}.{n}{path.suffix}", n + 1
        try:
            shutil.move(path, target)
        except FileNotFoundError:
            # Deleted (e.g. over FTPS) after it was read: the run stands, nothing to archive.
            logger.warning("file drop %s: %s was gone when archived; skipped", slug, path.name)
            continue
        moved += 1
    return moved


def purge_archive(slug: str, keep_days: int, today: date | None = None) -> int:
    """Delete archive days older than `keep_days`; returns the number of files deleted."""
    folder = archive_of(slug)
    if not folder.is_dir():
        return 0
    oldest_kept = (today or date.today()) - timedelta(days=keep_days)
    deleted = 0
    for day in folder.iterdir():
        archived_on = archive_day_of(day)
        if archived_on is None:
            logger.warning("file drop %s: archive/%s is not an archive day; left", slug, day.name)
        elif archived_on < oldest_kept:
            deleted += sum(1 for p in day.rglob("*") if p.is_file())
            shutil.rmtree(day)
    return deleted


def archive_day_of(folder: Path) -> date | None:
    """The day of an archive folder `YYYY-MM-DD`, or None for anything else."""
    if not folder.is_dir() or not ARCHIVE_DAY.match(folder.name):
        return None
    try:
        return date.fromisoformat(folder.name)
    except ValueError:
        return None
