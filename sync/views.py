"""Sync pages: the run history, a run's report, uploading the two files, a person's history."""

import csv
import io
import logging
from typing import NamedTuple

from flask import (
    Blueprint,
    Response,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from wtforms import BooleanField, SelectChoice, SelectField

from portal.core import access
from portal.core.db import db
from portal.core.errors import UserError
from portal.directory.models import OrgUnit, Person
from portal.web import add_banner, add_person_panel, paginate
from sync import history
from sync.approval import apply_preview, approve_run, discard_run, out_of_date
from sync.models import RunStatus, SyncChange, SyncIssue, SyncRun
from sync.report import report_rows
from sync.revert import revert_run
from sync.runs import FileInput, import_files

logger = logging.getLogger(__name__)
bp = Blueprint("sync", __name__, url_prefix="/sync")
RUNS_PER_PAGE = 50
CHANGES_PER_PAGE = 100
ISSUES_SHOWN = 500
HISTORY_SHOWN = 50
CSV_CHUNK_ROWS = 1000
# A run reads and changes a whole customer: HR and IT admins granted at its root see runs.
WHOLE = {"roles": access.SYNC_ROLES, "whole": True}
NO_RUNS = "Only HR and IT admins of a whole customer import files and see sync runs."
WAITING = (RunStatus.HELD, RunStatus.DRY_RUN)  # runs whose records may be applied later
UNIT_NUMBER_FIELDS = ("unit", "parent")  # change fields whose values are unit numbers
CHART_COLOURS = {
    "created": "#2e7d32",
    "moved": "#1565c0",
    "inactivated": "#ef6c00",
    "errors": "#c62828",
}


class Subject(NamedTuple):
    """Who or what a change is about, by name, and the person page to link to (if any)."""

    name: str
    person_id: int | None = None


class UploadForm(FlaskForm):
    customer = SelectField("Customer")
    org = FileField(
        "Organisation file",
        validators=[
            FileRequired("Choose the organisation file."),
            FileAllowed(["csv", "xlsx"], "The organisation file must be a .csv or .xlsx file."),
        ],
    )
    persons = FileField(
        "Persons file",
        validators=[
            FileRequired("Choose the persons file."),
            FileAllowed(["csv", "xlsx"], "The persons file must be a .csv or .xlsx file."),
        ],
    )
    dry_run = BooleanField("Dry run: preview the changes without applying them", default=True)


class ActionForm(FlaskForm):
    """A button that changes something: it carries only the CSRF token."""


@bp.app_template_filter("duration")
def format_duration(ms: int | None) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s"


@bp.app_template_filter("counts_summary")
def counts_summary(counts: dict | None) -> str:
    """'persons: 3 created, 1 moved; units: 1 created' (only what is not zero)."""
    parts = []
    for entity in ("persons", "units"):
        done = [f"{n} {action}" for action, n in (counts or {}).get(entity, {}).items() if n]
        if done:
            parts.append(f"{entity}: {', '.join(done)}")
    return "; ".join(parts) or "no changes"


@bp.route("/runs")
@login_required
def runs():
    access.require(current_user, refusal=NO_RUNS, **WHOLE)
    query = (
        select(SyncRun)
        .options(selectinload(SyncRun.customer))
        .where(SyncRun.customer_id.in_(access.visible_customer_ids(current_user, **WHOLE)))
        .order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
    )
    customer = access.chosen_customer(current_user, request.args.get("customer"), **WHOLE)
    visible = access.visible_customer_ids(current_user, **WHOLE)
    return render_template(
        "sync/runs.html",
        page=paginate(query, RUNS_PER_PAGE),
        attention=history.needing_attention(visible),
        customer=customer,
        customers=db.session.scalars(access.visible_customers(current_user, **WHOLE)).all(),
        chart=history.chart_runs(customer.id) if customer else [],
        series=history.SERIES,
        slots=history.CHART_RUNS,
        colours=CHART_COLOURS,
    )


@bp.route("/runs/<id:run_id>")
@login_required
def run(run_id: int):
    run = access.get_visible(current_user, SyncRun, run_id)
    action = request.args.get("action") or None
    entity = request.args.get("entity") or None

    changes = select(SyncChange).where(SyncChange.run_id == run.id).order_by(SyncChange.id)
    if action:
        changes = changes.where(SyncChange.action == action)
    if entity:
        changes = changes.where(SyncChange.entity == entity)
    page = paginate(changes, CHANGES_PER_PAGE)
    rows = [(change, changed_fields(change)) for change in page.items]
    applied_as = _applied_as(run)
    return render_template(
        "sync/run.html",
        run=run,
        form=ActionForm(),
        kinds=_change_kinds(run),
        action=action,
        entity=entity,
        page=page,
        rows=rows,
        subjects=change_subjects(page.items),
        unit_names=unit_names(run.customer_id, [fields for _, fields in rows]),
        issues=_issues(run),
        issue_count=db.session.scalar(
            select(func.count()).select_from(SyncIssue).where(SyncIssue.run_id == run.id)
        ),
        applied_as=applied_as,
        # a held run or preview that can no longer be applied says why instead of offering to
        stale=out_of_date(run) if run.status in WAITING and not applied_as else None,
        shown=ISSUES_SHOWN,
    )


@bp.route("/runs/<id:run_id>/report.csv")
@login_required
def report_csv(run_id: int):
    run = access.get_visible(current_user, SyncRun, run_id)

    def generate():
        buffer = io.StringIO()
        buffer.write("\ufeff")  # so that Excel reads the file as UTF-8
        writer = csv.writer(buffer)
        for number, row in enumerate(report_rows(run), start=1):
            writer.writerow(row)
            if number % CSV_CHUNK_ROWS == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    filename = f"kursa-run-{run.id}.csv"
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.route("/runs/<id:run_id>/approve", methods=["POST"])
@login_required
def approve(run_id: int):
    run = access.get_visible(current_user, SyncRun, run_id)
    return _act(run, approve_run)


@bp.route("/runs/<id:run_id>/discard", methods=["POST"])
@login_required
def discard(run_id: int):
    run = access.get_visible(current_user, SyncRun, run_id)  # HR and IT at the root, as approve
    return _act(run, discard_run)


@bp.route("/runs/<id:run_id>/apply", methods=["POST"])
@login_required
def apply(run_id: int):
    run = access.get_visible(current_user, SyncRun, run_id)
    return _act(run, apply_preview)


@bp.route("/runs/<id:run_id>/revert", methods=["GET", "POST"])
@login_required
def revert(run_id: int):
    run = access.get_visible(current_user, SyncRun, run_id)
    form = ActionForm()
    if form.validate_on_submit():
        return _act(run, revert_run)
    return render_template("sync/revert.html", run=run, form=form)


@bp.route("/upload", methods=["GET", "POST"])
@login_required
def upload():
    access.require(current_user, refusal=NO_RUNS, **WHOLE)
    customers = db.session.scalars(access.visible_customers(current_user, **WHOLE)).all()
    form = UploadForm(customer=request.args.get("customer"))
    form.customer.choices = [SelectChoice(c.slug, c.name) for c in customers]
    if not form.validate_on_submit():
        return render_template("sync/upload.html", form=form, customers=customers)

    customer = access.chosen_customer(current_user, form.customer.data, **WHOLE)
    try:
        run = import_files(
            customer,
            _file_input(form.org.data),
            _file_input(form.persons.data),
            actor=current_user.actor,
            dry_run=form.dry_run.data,
        )
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return render_template("sync/upload.html", form=form, customers=customers)
    flash(_status_message(run), "error" if run.status == RunStatus.FAILED else "info")
    return redirect(url_for("sync.run", run_id=run.id))


def person_history(person) -> Markup:
    """The person page's section: changes of applied runs to this person, newest first."""
    query = (
        select(SyncChange, SyncRun)
        .join(SyncRun, SyncChange.run_id == SyncRun.id)
        .where(SyncChange.entity == "person", SyncChange.entity_id == person.id)
        .where(SyncRun.status == RunStatus.APPLIED)
        .order_by(SyncChange.id.desc())
        .limit(HISTORY_SHOWN)
    )
    rows = [(change, run, changed_fields(change)) for change, run in db.session.execute(query)]
    names = unit_names(person.customer_id, [fields for _, _, fields in rows])
    return Markup(
        render_template(
            "sync/person_history.html",
            rows=rows,
            person=person,
            unit_names=names,
            cap=HISTORY_SHOWN,
        )
    )


def attention_banner() -> Markup | None:
    """On the organisation page (the dashboard): the runs that need someone, if any."""
    if request.endpoint != "directory.tree" or not current_user.is_authenticated:
        return None
    runs = history.needing_attention(access.visible_customer_ids(current_user, **WHOLE))
    return Markup(render_template("sync/attention.html", runs=runs)) if runs else None


def _attach(state) -> None:
    add_person_panel(state.app, person_history)
    add_banner(state.app, attention_banner)


bp.record_once(_attach)


def changed_fields(change: SyncChange) -> list[tuple[str, object, object]]:
    """(field, before, after) for what the change altered; every filled field when created.

    Internal ids the engine keeps for a revert (a moved person's `unit_id`) are left out:
    they mean nothing to a reader.
    """
    before, after = change.before or {}, change.after or {}
    if not before:
        return [
            (name, None, value)
            for name, value in after.items()
            if value not in (None, "") and not name.endswith("_id")
        ]
    names = list(before) + [name for name in after if name not in before]
    return [
        (name, before.get(name), after.get(name))
        for name in names
        if name in after and before.get(name) != after.get(name) and not name.endswith("_id")
    ]


def change_subjects(changes: list[SyncChange]) -> dict[int, Subject]:
    """change id -> the person or unit it is about, named as it is now: one query per page.

    A change of a preview that would create someone has no row to join yet; it is named from
    the values it would write.
    """
    subjects = {change.id: subject for change in changes if (subject := _named_by(change))}
    ids = [change.id for change in changes if change.entity_id is not None]
    if not ids:
        return subjects
    query = (
        select(SyncChange.id, Person.id, Person.first_name, Person.last_name, OrgUnit.name)
        .select_from(SyncChange)
        .outerjoin(Person, (SyncChange.entity == "person") & (Person.id == SyncChange.entity_id))
        .outerjoin(OrgUnit, (SyncChange.entity == "unit") & (OrgUnit.id == SyncChange.entity_id))
        .where(SyncChange.id.in_(ids))
    )
    for change_id, person_id, first_name, last_name, unit_name in db.session.execute(query):
        if person_id is not None:
            subjects[change_id] = Subject(f"{first_name} {last_name}".strip(), person_id)
        elif unit_name is not None:
            subjects[change_id] = Subject(unit_name)
    return subjects


def unit_names(customer_id: int, diffs: list[list[tuple]]) -> dict[str, str]:
    """unit number -> name, for the numbers the diffs show as a unit or parent: one query."""
    numbers = {
        value
        for fields in diffs
        for name, before, after in fields
        if name in UNIT_NUMBER_FIELDS
        for value in (before, after)
        if isinstance(value, str) and value
    }
    if not numbers:
        return {}
    query = select(OrgUnit.number, OrgUnit.name).where(
        OrgUnit.customer_id == customer_id, OrgUnit.number.in_(numbers)
    )
    return {number: name for number, name in db.session.execute(query)}


def _named_by(change: SyncChange) -> Subject | None:
    after = change.after or {}
    if change.entity == "unit":
        name = after.get("name") or ""
    else:
        name = " ".join(part for part in (after.get("first_name"), after.get("last_name")) if part)
    return Subject(name) if name else None


def _act(run: SyncRun, operation):
    """Call an engine operation on the run; show the run it leaves (or why it refused)."""
    try:
        result = operation(run.id, actor=current_user.actor)
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("sync.run", run_id=run.id))
    failed = result.status == RunStatus.FAILED or result.error
    flash(_status_message(result), "error" if failed else "info")
    return redirect(url_for("sync.run", run_id=result.id))


def _status_message(run: SyncRun) -> str:
    if run.status == RunStatus.HELD and run.error:  # its approval failed; it is still held
        return run.error
    return {
        RunStatus.APPLIED: "Run #{id} is applied.",
        RunStatus.HELD: "Run #{id} is held: nothing changes until an admin approves it.",
        RunStatus.FAILED: "Run #{id} failed and nothing changed. The report below says why.",
        RunStatus.DRY_RUN: "Run #{id} is a preview: nothing has changed yet.",
        RunStatus.DISCARDED: "Run #{id} is discarded: nothing changed, and it needs no one.",
    }.get(run.status, "Run #{id} is {status}.").format(id=run.id, status=run.status)


def _change_kinds(run: SyncRun) -> list[tuple[str, str, int]]:
    """(entity, action, count) of the run's changes, for the filter links."""
    query = (
        select(SyncChange.entity, SyncChange.action, func.count())
        .where(SyncChange.run_id == run.id)
        .group_by(SyncChange.entity, SyncChange.action)
        .order_by(SyncChange.entity.desc(), SyncChange.action)
    )
    return [tuple(row) for row in db.session.execute(query)]


def _issues(run: SyncRun) -> list[SyncIssue]:
    query = select(SyncIssue).where(SyncIssue.run_id == run.id).order_by(SyncIssue.id)
    return list(db.session.scalars(query.limit(ISSUES_SHOWN)))


def _applied_as(run: SyncRun) -> SyncRun | None:
    """The run that applied this dry run, if one did."""
    if run.status != RunStatus.DRY_RUN:
        return None
    query = select(SyncRun).where(SyncRun.preview_of_id == run.id).order_by(SyncRun.id.desc())
    return db.session.scalars(query).first()


def _file_input(upload) -> FileInput:
    # Browsers on Windows may send a whole path; keep only the file's own name.
    name = (upload.filename or "upload").replace("\\", "/").rsplit("/", 1)[-1]
    return FileInput(name=name, data=upload.read())
