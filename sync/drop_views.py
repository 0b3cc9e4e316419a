"""The file drop over HTTPS: `/sync/drop/<slug>` shows a customer's inbox and takes uploads.

An upload lands in the same inbox as an FTPS one and is written the same way: to
`.<name>.<token>.part` in the inbox, fsynced, then put in place under its final name in one step, so
the daily import (which never reads a temporary name) only ever sees whole files. A name that
is already in the inbox is refused, never overwritten. Who may: HR and IT admins granted at
the customer's root, and platform admins; everyone else gets a 404.
"""

import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired

from portal.core import access, audit
from portal.core.db import db
from portal.core.errors import NotFound, UserError
from sync import drop

logger = logging.getLogger(__name__)
bp = Blueprint("drop", __name__, url_prefix="/sync/drop")
WHOLE = {"roles": access.SYNC_ROLES, "whole": True}
ARCHIVE_DAYS_SHOWN = 7
MAX_NAME_SHOWN = 60  # characters of a refused name echoed back
CHUNK = 1024 * 1024


class DropForm(FlaskForm):
    first = FileField("File", [FileRequired("Choose a file to upload.")])
    second = FileField("Second file (optional)")


@dataclass(frozen=True)
class Waiting:
    name: str
    size: int
    modified: datetime
    role: str | None
    stamp: str | None
    note: str | None  # why it waits or is not read; None when it is part of a complete pair


def clean_name(raw: str | None) -> str:
    """The file name without any folder, with Danish letters and the date stamp kept.

    Letters (any script), digits, `-`, `_`, `.` stay; anything else becomes `_`. Leading dots
    and `~` are dropped (they would make a name the import never reads).
    """
    name = re.split(r"[\\/]", unicodedata.normalize("NFC", raw or ""))[-1]
    name = re.sub(r"[^\w.\-]", "_", name, flags=re.UNICODE)
    return name.lstrip(".~_").strip()


def check_name(raw: str | None) -> str:
    """The name a file is stored under, or a UserError in words the uploader understands."""
    name = clean_name(raw)
    shown = _shown(raw or "The file")
    if Path(name.lower()).suffix not in drop.SUFFIXES:
        raise UserError(f"{shown}: only .csv and .xlsx files can be dropped.")
    if too_long := drop.name_too_long(name):
        raise UserError(f"{shown}: {too_long}")
    if problem := drop.name_problem(name):
        raise UserError(
            f"{shown}: {problem}. The name must say organisation or persons and carry a date, "
            "e.g. organisation_2026-12-03.csv or medarbejdere_20261203.xlsx."
        )
    return name


def _shown(raw: str) -> str:
    """A refused name as echoed back: its start, not 100 KB of it."""
    return raw if len(raw) <= MAX_NAME_SHOWN else f"{raw[:MAX_NAME_SHOWN]}…"


def write_into(inbox: Path, name: str, stream) -> Path:
    """Write `stream` to `inbox/name` whole or not at all; an existing name is refused."""
    inbox.mkdir(parents=True, exist_ok=True)
    target = inbox / name
    part = inbox / drop.part_name(name)
    if target.resolve().parent != inbox.resolve():  # clean_name keeps it in; make sure
        raise UserError(f"{name}: that name cannot be used.")
    try:
        with open(part, "xb") as out:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except FileExistsError:
        raise UserError(f"{name} is being uploaded already; try again in a moment.") from None
    try:
        # A link never replaces a file that arrived meanwhile (os.replace would); then the
        # part goes. The final name appears in one step, whole.
        os.link(part, target)
    except FileExistsError:
        raise UserError(f"{name} is in the inbox already; it was not replaced.") from None
    finally:
        part.unlink(missing_ok=True)
    _fsync_folder(inbox)
    return target


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def waiting_files(inbox: Path) -> list[Waiting]:
    """The files in the inbox (not uploads in progress), newest first."""
    found, notes = [], drop.waiting_notes(inbox)
    for path in inbox.iterdir() if inbox.is_dir() else []:
        if path.is_file() and not drop.is_temporary(path.name):
            stat = path.stat()
            modified = datetime.fromtimestamp(stat.st_mtime, UTC)
            found.append(
                Waiting(
                    path.name,
                    stat.st_size,
                    modified,
                    drop.role_of(path.name),
                    drop.stamp_of(path.name),
                    notes.get(path.name),
                )
            )
    return sorted(found, key=lambda w: (w.modified, w.name), reverse=True)


def archive_days(slug: str, shown: int = ARCHIVE_DAYS_SHOWN) -> list[tuple[str, list[str]]]:
    """The newest archive days with their file names."""
    folder = drop.archive_of(slug)
    if not folder.is_dir():
        return []
    days = sorted(
        (d for d in folder.iterdir() if drop.archive_day_of(d) is not None),
        key=lambda d: d.name,
        reverse=True,
    )[:shown]
    return [(d.name, sorted(p.name for p in d.iterdir() if p.is_file())) for d in days]


@bp.route("/<slug>", methods=["GET", "POST"])
@login_required
def inbox(slug: str):
    customer = access.chosen_customer(current_user, slug, **WHOLE)
    if customer is None:
        raise NotFound(access.HIDDEN)
    form = DropForm()
    folder = drop.inbox_of(customer.slug)
    if form.validate_on_submit():
        try:
            names = _store(folder, [f for f in (form.first.data, form.second.data) if f])
        except UserError as exc:
            flash(str(exc), "error")
        else:
            audit.record(current_user.actor, "drop.upload", "customer", customer.id, files=names)
            db.session.commit()
            logger.info("file drop %s: %s uploaded by %s", slug, names, current_user.actor)
            flash(_stored_message(folder, names), "info")
            return redirect(url_for("drop.inbox", slug=customer.slug))
    return render_template(
        "sync/drop.html",
        customer=customer,
        form=form,
        waiting=waiting_files(folder),
        archive=archive_days(customer.slug),
        role_rules={role: drop.role_rule(role) for role in drop.ROLE_WORDS},
        keep_days=current_app.config["KURSA"]["drop"]["keep_days"],
    )


def _stored_message(folder: Path, names: list[str]) -> str:
    """What the uploader is told: imported by the next daily run, or why a file waits."""
    notes = drop.waiting_notes(folder)
    waits = [f"{name} {notes[name]}" for name in names if name in notes]
    if not waits:
        return f"In the inbox: {', '.join(names)}. The next daily run imports them."
    return f"In the inbox: {', '.join(names)}. Not imported yet: {'; '.join(waits)}"


def _store(folder: Path, files: list) -> list[str]:
    """Check every name before writing any, then write them one by one."""
    names = [check_name(f.filename) for f in files]
    if len(set(names)) != len(names):
        raise UserError("The two files have the same name.")
    for name in names:
        if (folder / name).exists():
            raise UserError(f"{name} is in the inbox already; it was not replaced.")
    for name, file in zip(names, files, strict=True):
        write_into(folder, name, file.stream)
    return names
