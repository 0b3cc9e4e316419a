"""A sync run from start to report: read -> plan -> guards -> apply -> stored report.

Unlike a request's operations, a run owns its transactions: the run row is committed first
so that it outlives a failure, then everything the run changes is committed at once (or, on
any error, rolled back and the run marked failed).
"""

import json
import logging
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, exists, func, select, update

from portal.core import audit
from portal.core.db import db, utcnow
from portal.core.errors import Conflict, NotFound
from portal.directory.models import Customer
from sync.apply import apply_changes, store_issues, store_report
from sync.guards import GuardLimits, hold_reason
from sync.models import RunStatus, SyncChange, SyncFile, SyncIssue, SyncRun
from sync.notify import notify_hr_contacts
from sync.plan import ChangeSet, counts_from_tally, plan
from sync.records import Issue, SourceData
from sync.sources.files import FileInput, read_files

__all__ = [
    "FileInput",
    "import_files",
    "run_source",
    "approve_run",
    "discard_run",
    "apply_preview",
    "out_of_date",
    "revert_run",
    "hold_notice",
    "run_summary",
    "report_rows",
    "get_run",
]
logger = logging.getLogger(__name__)
Progress = Callable[[str, float], None]


def _no_progress(stage: str, done: float) -> None:
    pass


def import_files(
    customer: Customer,
    org: FileInput,
    persons: FileInput,
    *,
    actor: str,
    dry_run: bool = False,
    progress: Progress | None = None,
    via: str = "",
) -> SyncRun:
    """Import the organisation and persons files of a customer.

    `via` names the way the files came ("drop" for the file drop) on the run only: the units
    the import creates are labelled "files" however the files came.
    """
    progress = progress or _no_progress
    read_started = time.perf_counter()
    customer_settings = current_app.config["KURSA"].get("customers", {}).get(customer.slug, {})
    data = read_files(
        org, persons, match_by=customer.match_by, columns=customer_settings.get("columns")
    )
    progress("read", 1.0)
    return run_source(
        customer,
        data,
        actor=actor,
        dry_run=dry_run,
        progress=progress,
        read_started=read_started,
        via=via,
    )


def run_source(
    customer: Customer,
    data: SourceData,
    *,
    actor: str,
    dry_run: bool = False,
    progress: Progress | None = None,
    preview_of: int | None = None,
    read_started: float | None = None,
    via: str = "",
) -> SyncRun:
    """Plan what `data` means for the directory, then preview, hold or apply it.

    `read_started` (a time.perf_counter() value) makes the run's duration include the
    reading of the source, so the report shows what the whole sync took.
    """
    progress = progress or _no_progress
    run = _start(customer, data, actor=actor, dry_run=dry_run, preview_of=preview_of, via=via)
    run_id, started = run.id, read_started or time.perf_counter()
    try:
        lock_customer(customer.id)
        _close_interrupted(customer.id, run_id)
        changes = plan(data, customer)
        progress("plan", 1.0)
        reason = None if changes.fatal else hold_reason(changes, _limits())
        if changes.fatal:
            _store_outcome(run, RunStatus.FAILED, changes, error=_fatal_message(changes))
        elif dry_run:
            # The preview says up front when applying it would be held for approval.
            _store_outcome(run, RunStatus.DRY_RUN, changes, payload=data, hold_reason=reason)
        elif reason:
            _store_outcome(run, RunStatus.HELD, changes, payload=data, hold_reason=reason)
        else:
            apply_changes(changes, customer, run_id, batch_size=_batch_size(), progress=progress)
            _finish(run, RunStatus.APPLIED, changes)
        _close(run, started)
        audit.record(
            actor,
            f"sync.{run.status}",
            "sync_run",
            run_id,
            customer=customer.slug,
            counts=run.counts,
        )
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        _mark_failed(run_id, exc, started)
    run = db.session.get(SyncRun, run_id)
    logger.info("sync run %s of customer %s by %s: %s", run.id, customer.slug, actor, run.status)
    notify_run(run)
    return run


def notify_run(run: SyncRun) -> None:
    """Queue the HR contacts' messages about a failed or held run; the run stands either way."""
    try:
        notify_hr_contacts(run)
        db.session.commit()
    except Exception:
        db.session.rollback()
        logger.exception("HR contacts of sync run %s could not be notified", run.id)


def approve_run(run_id: int, *, actor: str) -> SyncRun:
    """Apply a held run, skipping the guard that held it."""
    run = get_run(run_id)
    if run.status != RunStatus.HELD:
        raise Conflict(
            f"Run {run.id} is {run.status.replace('_', ' ')}, not held; only a held "
            "run can be approved."
        )
    data = _payload(run)
    held_inactivations = run.counts["persons"]["inactivated"]
    started = time.perf_counter()
    try:
        lock_customer(run.customer_id)
        stale = out_of_date(run)
        if stale:
            raise Conflict(stale)
        _clear_report(run.id)
        changes = plan(data, run.customer)
        if changes.fatal:
            _store_outcome(run, RunStatus.FAILED, changes, error=_fatal_message(changes))
        elif changes.count("person", "inactivated") > held_inactivations:
            raise Conflict(
                "The directory changed since the run was held: it would now "
                f"inactivate more persons than were approved. {_read_again(run)}"
            )
        else:
            apply_changes(changes, run.customer, run.id, batch_size=_batch_size())
            run.approved_by, run.approved_at = actor, utcnow()
            _finish(run, RunStatus.APPLIED, changes)
            audit.record(actor, "sync.approved", "sync_run", run.id)
        _close(run, started)
        db.session.commit()
    except Conflict:
        db.session.rollback()
        raise
    except Exception as exc:
        db.session.rollback()
        _mark_failed(run_id, exc, started)
        notify_run(db.session.get(SyncRun, run_id))
    logger.info("held sync run %s approved by %s", run_id, actor)
    return db.session.get(SyncRun, run_id)


def discard_run(run_id: int, *, actor: str) -> SyncRun:
    """Close a held run without applying it: it changes nothing and needs no one any more.

    Its report (the changes it planned, its issues) stays, with who discarded it and when;
    the records kept for approving it are dropped, as it can no longer be approved.
    """
    run = get_run(run_id)
    lock_customer(run.customer_id)  # an approval going on at the same time finishes first
    db.session.refresh(run)
    if run.status != RunStatus.HELD:
        db.session.rollback()
        raise Conflict(
            f"Run {run.id} is {run.status.replace('_', ' ')}, not held; only a held "
            "run can be discarded."
        )

    run.status = RunStatus.DISCARDED
    run.discarded_by, run.discarded_at = actor, utcnow()
    run.payload = None
    audit.record(actor, "sync.discarded", "sync_run", run.id)
    db.session.commit()
    logger.info("held sync run %s discarded by %s", run_id, actor)
    return run


def apply_preview(run_id: int, *, actor: str) -> SyncRun:
    """Apply the records a dry run previewed, as a new run (which the guards may hold)."""
    run = get_run(run_id)
    if run.status != RunStatus.DRY_RUN or run.payload is None:
        raise Conflict(f"Run {run.id} is not a dry run that can be applied.")
    lock_customer(run.customer_id)  # two clicks on Apply must not both pass the checks below
    earlier = db.session.scalar(select(SyncRun.id).where(SyncRun.preview_of_id == run.id))
    if earlier is not None:
        db.session.rollback()
        raise Conflict(f"This preview was applied already, as run {earlier}.")
    stale = out_of_date(run)
    if stale:
        db.session.rollback()
        raise Conflict(stale)
    data = _payload(run)
    db.session.commit()
    return run_source(run.customer, data, actor=actor, preview_of=run.id)


def out_of_date(run: SyncRun) -> str | None:
    """Why the records of a held or previewed run may no longer be applied, or None.

    They are out of date once another run changed the customer's directory after this one
    planned against it: applying them would put back what the source said before, over what
    it says now. A run that changed nothing leaves the directory as this one found it.
    """
    later = _changed_since(run)
    if later is None:
        return None
    return (
        f"Run {later} changed the directory after run {run.id} read its source, so what run "
        f"{run.id} read is out of date: applying it could undo newer changes. {_read_again(run)}"
    )


def _changed_since(run: SyncRun) -> int | None:
    """The first run that changed the customer's directory after `run` planned against it.

    It changed something: an applied run with at least one change, a revert, an approval.
    After: it started later, or it was applied (or approved) after `run` ended. Runs of a
    customer plan one at a time (lock_customer), so one that ended before is in `run`'s plan.
    """
    changed_at = func.coalesce(SyncRun.approved_at, SyncRun.finished_at)
    has_changes = exists().where(SyncChange.run_id == SyncRun.id)
    return db.session.scalar(
        select(SyncRun.id)
        .where(
            SyncRun.customer_id == run.customer_id,
            SyncRun.status == RunStatus.APPLIED,
            SyncRun.id != run.id,
            (SyncRun.id > run.id) | (changed_at > (run.finished_at or run.started_at)),
            SyncRun.revert_of_id.is_not(None) | SyncRun.approved_at.is_not(None) | has_changes,
        )
        .order_by(SyncRun.id)
        .limit(1)
    )


def _read_again(run: SyncRun) -> str:
    """What to do instead of applying `run`'s out-of-date records: read its source again."""
    preview = " --dry-run" if run.status == RunStatus.DRY_RUN else ""
    if run.source_kind == "ldap":
        name = run.source_name
        return (
            f"Run a full {'preview' if preview else 'sync'} of source {name} again, from its "
            f"page or with 'flask directory sync {name} --full{preview}'."
        )
    if run.source_name == "drop":
        slug = run.customer.slug
        return (
            f"Import the drop's files again with 'flask drop import {slug}{preview}' (or wait "
            "for the daily run); upload them again on the drop page if they were archived."
        )
    return "Import the files again."


def revert_run(run_id: int, *, actor: str) -> SyncRun:
    """Undo what an applied run changed, as a new run. Later edits of the same values win."""
    from sync.revert import revert_changes

    run = get_run(run_id)
    if run.status != RunStatus.APPLIED:
        raise Conflict(
            f"Run {run.id} is {run.status.replace('_', ' ')}; only an applied run can be reverted."
        )
    if run.reverted_by_id:
        raise Conflict(f"Run {run.id} was reverted already by run {run.reverted_by_id}.")
    if run.revert_of_id:
        raise Conflict(
            f"Run {run.id} is itself a revert; import the files or sync the source again instead."
        )
    new = SyncRun(
        customer_id=run.customer_id,
        source_kind="revert",
        source_name=f"run {run.id}",
        started_by=actor,
        revert_of_id=run.id,
    )
    db.session.add(new)
    db.session.commit()
    new_id, started = new.id, time.perf_counter()
    try:
        lock_customer(run.customer_id)
        changes = revert_changes(run, new_id)
        store_report(db.session.connection(), new_id, changes, {}, _batch_size())
        run.reverted_by_id = new_id
        _finish(new, RunStatus.APPLIED, changes)
        audit.record(actor, "sync.reverted", "sync_run", run.id, revert_run=new_id)
        _close(new, started)
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        _mark_failed(new_id, exc, started)
    logger.info("sync run %s reverted by %s as run %s", run_id, actor, new_id)
    new = db.session.get(SyncRun, new_id)
    notify_run(new)  # a failed revert leaves the directory as the reverted run made it
    return new


def lock_customer(customer_id: int) -> None:
    """Serialise runs of one customer until this transaction ends, across processes.

    Writing the customer's row takes a row lock on PostgreSQL and the database's write lock on
    SQLite, so a second run waits here and then plans against what the first one committed.
    """
    db.session.execute(
        update(Customer).where(Customer.id == customer_id).values(updated_at=utcnow())
    )


INTERRUPTED_AFTER = timedelta(minutes=2)


def _close_interrupted(customer_id: int, current_run_id: int) -> None:
    """Mark as failed the runs of this customer that a killed process left 'running'.

    Holding the customer's lock, no other run of it can be applying; one merely waiting for
    the lock overwrites this status when it finishes. Runs younger than a couple of minutes
    are left alone, as they may still be reading their files. HR hears of each closed run
    once, with this run's transaction: a run is closed only while it is still 'running'.
    """
    interrupted = list(
        db.session.scalars(
            select(SyncRun).where(
                SyncRun.customer_id == customer_id,
                SyncRun.status == RunStatus.RUNNING,
                SyncRun.id != current_run_id,
                SyncRun.started_at < utcnow() - INTERRUPTED_AFTER,
            )
        )
    )
    for run in interrupted:
        run.status, run.finished_at = RunStatus.FAILED.value, utcnow()
        run.error = (
            "The run was interrupted (its process stopped) before it finished; "
            "nothing of it was applied."
        )
        db.session.flush()
        notify_hr_contacts(run)
        logger.warning("sync run %s was interrupted; closed as failed", run.id)


def get_run(run_id: int) -> SyncRun:
    run = db.session.get(SyncRun, run_id)
    if run is None:
        raise NotFound(f"There is no sync run {run_id}.")
    return run


def run_summary(run: SyncRun) -> dict:
    """The run as the CLI's JSON contract shows it.

    A held run carries the reason it is held as one more issue, without file or row, and so
    does a dry run that applying would hold: the contract has no other place for it, and a
    tool must learn it before approving or applying.
    """
    stored = db.session.scalars(
        select(SyncIssue).where(SyncIssue.run_id == run.id).order_by(SyncIssue.id)
    )
    issues = [Issue(i.message, i.file, i.row, i.column, i.value).where() for i in stored]
    notice = hold_notice(run)
    if notice:
        issues.append(Issue(notice, severity="notice").where())
    return {
        "run_id": run.id,
        "status": run.status,
        "counts": run.counts or counts_from_tally(_zero()),
        "issues": issues,
    }


def hold_notice(run: SyncRun) -> str | None:
    """Why the run is held, or the warning that applying this dry run would be; else None."""
    if not run.hold_reason:
        return None
    if run.status == RunStatus.HELD:
        return f"This run is held for approval: {run.hold_reason}"
    if run.status == RunStatus.DRY_RUN:
        return f"Applying this preview would be held: {run.hold_reason}"
    return None


REPORT_HEADER = [
    "record",
    "entity",
    "key",
    "action",
    "before",
    "after",
    "severity",
    "file",
    "row",
    "column",
    "value",
    "message",
]


def report_rows(run: SyncRun) -> Iterator[list[str]]:
    """The run's changes and issues as CSV rows, header first; streams large runs."""
    yield REPORT_HEADER
    changes = db.session.execute(
        select(SyncChange)
        .where(SyncChange.run_id == run.id)
        .order_by(SyncChange.id)
        .execution_options(yield_per=2000)
    ).scalars()
    blank = [""] * 6
    for c in changes:
        row = ["change", c.entity, c.key, c.action, _plain(c.before), _plain(c.after), *blank]
        yield [_cell(cell) for cell in row]
    issues = db.session.scalars(
        select(SyncIssue).where(SyncIssue.run_id == run.id).order_by(SyncIssue.id)
    )
    for i in issues:
        row = [
            "issue",
            *blank[:5],
            i.severity,
            i.file or "",
            "" if i.row is None else str(i.row),
            i.column or "",
            i.value or "",
            i.message,
        ]
        yield [_cell(cell) for cell in row]


def _cell(text: str) -> str:
    """Spreadsheets run a cell starting with = + - @ as a formula: quote it (OWASP advice)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _plain(values: dict | None) -> str:
    """Before/after values as HR reads them ('name: Sales, active: no'), without internal ids."""
    if not values:
        return ""
    shown = {k: v for k, v in values.items() if not k.endswith("_id")}
    return ", ".join(f"{k.replace('_', ' ')}: {_word(v)}" for k, v in shown.items())


def _word(value) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _zero():
    return defaultdict(int)


def _start(
    customer: Customer,
    data: SourceData,
    *,
    actor: str,
    dry_run: bool,
    preview_of: int | None,
    via: str = "",
) -> SyncRun:
    run = SyncRun(
        customer_id=customer.id,
        source_kind=data.kind,
        source_name=via or data.source_name,
        started_by=actor,
        is_dry_run=dry_run,
        preview_of_id=preview_of,
        counts=counts_from_tally(_zero()),
    )
    run.files = [
        SyncFile(role=f.role, filename=f.filename, size=f.size, sha256=f.sha256) for f in data.files
    ]
    db.session.add(run)
    db.session.commit()
    return run


def _store_outcome(
    run: SyncRun,
    status: RunStatus,
    changes: ChangeSet,
    *,
    payload: SourceData | None = None,
    error: str | None = None,
    hold_reason: str | None = None,
) -> None:
    conn = db.session.connection()
    if status == RunStatus.FAILED:
        store_issues(conn, run.id, changes.issues)
    else:
        store_report(conn, run.id, changes, {}, _batch_size())
    if payload is not None:
        run.payload = zlib.compress(json.dumps(payload.to_json()).encode(), 6)
    run.error, run.hold_reason = error, hold_reason
    _finish(run, status, changes)


def _finish(run: SyncRun, status: RunStatus, changes: ChangeSet) -> None:
    run.status = status.value
    if status != RunStatus.FAILED:
        run.error = None
    run.counts = changes.counts() if status != RunStatus.FAILED else counts_from_tally(_zero())
    if status == RunStatus.APPLIED:
        run.payload = None


def _close(run: SyncRun, started: float) -> None:
    run.finished_at = utcnow()
    run.duration_ms = int((time.perf_counter() - started) * 1000)


def _mark_failed(run_id: int, exc: Exception, started: float) -> None:
    logger.exception("sync run %s failed; nothing was changed", run_id, exc_info=exc)
    run = db.session.get(SyncRun, run_id)
    run.status = RunStatus.FAILED.value
    run.counts = counts_from_tally(_zero())
    run.error = (
        f"The run stopped on an unexpected error ({type(exc).__name__}) and nothing "
        f"was changed. The server log has the details under run {run_id}."
    )
    store_issues(db.session.connection(), run_id, [Issue(run.error)])
    _close(run, started)
    db.session.commit()


def _clear_report(run_id: int) -> None:
    db.session.execute(delete(SyncChange).where(SyncChange.run_id == run_id))
    db.session.execute(delete(SyncIssue).where(SyncIssue.run_id == run_id))


def _payload(run: SyncRun) -> SourceData:
    if run.payload is None:
        raise Conflict(f"Run {run.id} kept no records to apply.")
    return SourceData.from_json(json.loads(zlib.decompress(run.payload)))


def _fatal_message(changes: ChangeSet) -> str:
    first = next((i for i in changes.issues if i.severity == "error"), None)
    detail = f" {first.message}" if first else ""
    return f"The source could not be used, so nothing was changed.{detail}"


def _limits() -> GuardLimits:
    return GuardLimits.from_settings(current_app.config["KURSA"])


def _batch_size() -> int:
    return current_app.config["KURSA"]["sync"]["batch_size"]
