"""A sync run from start to report: read -> plan -> guards -> apply -> stored report.

Unlike a request's operations, a run owns its transactions: the run row is committed first
so that it outlives a failure, then everything the run changes is committed at once (or, on
any error, rolled back and the run marked failed). The helpers that record a run's outcome on
its row are shared with sync.approval and sync.revert, which finish runs the same way.
"""

import json
import logging
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from portal.core import audit
from portal.core.db import db, utcnow
from portal.core.errors import Conflict, NotFound
from portal.directory.models import Customer
from sync.apply import apply_changes, store_issues, store_report
from sync.guards import GuardLimits, hold_reason
from sync.models import RunStatus, SyncFile, SyncRun
from sync.notify import notify_hr_contacts
from sync.plan import ChangeSet, counts_from_tally, plan
from sync.records import Issue, SourceData
from sync.sources.files import FileInput, read_files

__all__ = [
    "FileInput",
    "import_files",
    "run_source",
    "notify_run",
    "lock_customer",
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
    full: bool = True,
    check: Callable[[SyncRun], None] | None = None,
) -> SyncRun:
    """Plan what `data` means for the directory, then preview, hold or apply it.

    `read_started` (a time.perf_counter() value) makes the run's duration include the
    reading of the source, so the report shows what the whole sync took. `full` False: the
    run was asked to read only what changed; it is then not recorded as a full run even when
    the source had to be read whole (no state yet), so it never pays off the scheduler's full
    run (schedule.last_run_at): at worst the full run reads once more than needed.

    `check` is called with the new run once it holds the customer's lock, so what it checks
    cannot change until the run ends. A Conflict it raises withdraws the run (its row is
    deleted: it never planned anything) and reaches the caller.
    """
    progress = progress or _no_progress
    run = _start(
        customer, data, actor=actor, dry_run=dry_run, preview_of=preview_of, via=via, full=full
    )
    run_id, started = run.id, read_started or time.perf_counter()
    try:
        lock_customer(customer.id)
        if check is not None:
            check(run)
        _close_interrupted(customer.id, run_id)
        changes = plan(data, customer)
        progress("plan", 1.0)
        reason = None if changes.fatal else hold_reason(changes, _limits())
        if changes.fatal:
            store_outcome(run, RunStatus.FAILED, changes, error=fatal_message(changes))
        elif dry_run:
            # The preview says up front when applying it would be held for approval.
            store_outcome(run, RunStatus.DRY_RUN, changes, payload=data, hold_reason=reason)
        elif reason:
            store_outcome(run, RunStatus.HELD, changes, payload=data, hold_reason=reason)
        else:
            apply_changes(changes, customer, run_id, batch_size=batch_size(), progress=progress)
            finish_run(run, RunStatus.APPLIED, changes)
        close_run(run, started)
        audit.record(
            actor,
            f"sync.{run.status}",
            "sync_run",
            run_id,
            customer=customer.slug,
            counts=run.counts,
        )
        db.session.commit()
    except Conflict:
        db.session.rollback()
        _withdraw(run_id)
        raise
    except Exception as exc:
        db.session.rollback()
        mark_failed(run_id, exc, started)
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
    full: bool = True,
) -> SyncRun:
    run = SyncRun(
        customer_id=customer.id,
        source_kind=data.kind,
        source_name=via or data.source_name,
        started_by=actor,
        is_dry_run=dry_run,
        is_full=full and data.persons_complete,
        preview_of_id=preview_of,
        counts=counts_from_tally(_zero()),
    )
    run.files = [
        SyncFile(role=f.role, filename=f.filename, size=f.size, sha256=f.sha256) for f in data.files
    ]
    db.session.add(run)
    db.session.commit()
    return run


def _withdraw(run_id: int) -> None:
    """Delete a run its check refused before it planned anything, in its own commit."""
    db.session.delete(db.session.get(SyncRun, run_id))
    db.session.commit()
    logger.info("sync run %s was refused before it started planning; withdrawn", run_id)


def store_outcome(
    run: SyncRun,
    status: RunStatus,
    changes: ChangeSet,
    *,
    payload: SourceData | None = None,
    error: str | None = None,
    hold_reason: str | None = None,
) -> None:
    """Store what the run planned (its report; only its issues when it failed) and, for a run
    applied later (held, dry run), the records it read; then finish it as `status`."""
    conn = db.session.connection()
    if status == RunStatus.FAILED:
        store_issues(conn, run.id, changes.issues)
    else:
        store_report(conn, run.id, changes, {}, batch_size())
    if payload is not None:
        run.payload = zlib.compress(json.dumps(payload.to_json()).encode(), 6)
    run.error, run.hold_reason = error, hold_reason
    finish_run(run, status, changes)


def finish_run(run: SyncRun, status: RunStatus, changes: ChangeSet) -> None:
    """Set the run's status and counts; an applied run no longer keeps its records."""
    run.status = status.value
    if status != RunStatus.FAILED:
        run.error = None
    run.counts = changes.counts() if status != RunStatus.FAILED else counts_from_tally(_zero())
    if status == RunStatus.APPLIED:
        run.payload = None


def close_run(run: SyncRun, started: float) -> None:
    """Stamp the run's end and its duration since `started` (a time.perf_counter() value)."""
    run.finished_at = utcnow()
    run.duration_ms = int((time.perf_counter() - started) * 1000)


def mark_failed(run_id: int, exc: Exception, started: float) -> None:
    """After the rollback of an unexpected error: record the run as failed, in its own commit."""
    logger.exception("sync run %s failed; nothing was changed", run_id, exc_info=exc)
    run = db.session.get(SyncRun, run_id)
    run.status = RunStatus.FAILED.value
    run.counts = counts_from_tally(_zero())
    run.error = (
        f"The run stopped on an unexpected error ({type(exc).__name__}) and nothing "
        f"was changed. The server log has the details under run {run_id}."
    )
    store_issues(db.session.connection(), run_id, [Issue(run.error)])
    close_run(run, started)
    db.session.commit()


def kept_records(run: SyncRun) -> SourceData:
    """The records a held run or a dry run kept to be applied later; Conflict when none are."""
    if run.payload is None:
        raise Conflict(f"Run {run.id} kept no records to apply.")
    return SourceData.from_json(json.loads(zlib.decompress(run.payload)))


def fatal_message(changes: ChangeSet) -> str:
    """The run's error when the source could not be used at all."""
    first = next((i for i in changes.issues if i.severity == "error"), None)
    detail = f" {first.message}" if first else ""
    return f"The source could not be used, so nothing was changed.{detail}"


def _limits() -> GuardLimits:
    return GuardLimits.from_settings(current_app.config["KURSA"])


def batch_size() -> int:
    """`[sync] batch_size`: how many rows the run writes at a time."""
    return current_app.config["KURSA"]["sync"]["batch_size"]
