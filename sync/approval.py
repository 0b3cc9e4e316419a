"""Held runs and dry runs: approve or discard a held run, apply what a dry run previewed.

Both kinds keep the records they read (the run's payload) to be applied later. Those records
go out of date once another run changed the customer's directory (out_of_date), and are then
refused: what the source says now must be read again.
"""

import logging
import time

from sqlalchemy import delete, exists, func, select

from portal.core import audit
from portal.core.db import db, utcnow
from portal.core.errors import Conflict
from sync.apply import apply_changes
from sync.models import RunStatus, SyncChange, SyncIssue, SyncRun
from sync.plan import plan
from sync.runs import (
    batch_size,
    close_run,
    fatal_message,
    finish_run,
    get_run,
    kept_records,
    lock_customer,
    run_source,
    store_outcome,
)

logger = logging.getLogger(__name__)


def approve_run(run_id: int, *, actor: str) -> SyncRun:
    """Apply a held run, skipping the guard that held it."""
    run = get_run(run_id)
    started = time.perf_counter()
    try:
        # Checked under the lock, on the run as it is now: an approval or a discard clicked at
        # the same time may have finished while this one waited for the lock.
        lock_customer(run.customer_id)
        db.session.refresh(run)
        if run.status != RunStatus.HELD:
            raise _not_held(run, "approved")
        data = kept_records(run)
        held_inactivations = run.counts["persons"]["inactivated"]
        stale = out_of_date(run)
        if stale:
            raise Conflict(stale)
        _clear_report(run.id)
        changes = plan(data, run.customer)
        if changes.fatal:
            store_outcome(run, RunStatus.FAILED, changes, error=fatal_message(changes))
        elif changes.count("person", "inactivated") > held_inactivations:
            raise Conflict(
                "The directory changed since the run was held: it would now "
                f"inactivate more persons than were approved. {_read_again(run)}"
            )
        else:
            apply_changes(changes, run.customer, run.id, batch_size=batch_size())
            run.approved_by, run.approved_at = actor, utcnow()
            finish_run(run, RunStatus.APPLIED, changes)
            audit.record(actor, "sync.approved", "sync_run", run.id)
        close_run(run, started)
        db.session.commit()
    except Conflict:
        db.session.rollback()
        raise
    except Exception as exc:
        db.session.rollback()
        _approval_failed(run_id, exc)
    else:
        logger.info("held sync run %s approved by %s: %s", run_id, actor, run.status)
    return db.session.get(SyncRun, run_id)


def _approval_failed(run_id: int, exc: Exception) -> None:
    """After the rollback of an unexpected error: nothing of the run was applied and its
    report is as it was, so it stays held, to be approved again; its error says what went
    wrong until then (a failed run's report would list changes it never made)."""
    logger.exception(
        "approval of held sync run %s failed; nothing was changed", run_id, exc_info=exc
    )
    run = db.session.get(SyncRun, run_id)
    run.error = (
        f"Approving the run stopped on an unexpected error ({type(exc).__name__}) and nothing "
        f"was changed; the run is still held and can be approved again. The server log has "
        f"the details under run {run_id}."
    )
    db.session.commit()


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
        raise _not_held(run, "discarded")

    run.status = RunStatus.DISCARDED
    run.discarded_by, run.discarded_at = actor, utcnow()
    run.payload, run.error = None, None  # the error of a failed approval no longer matters
    audit.record(actor, "sync.discarded", "sync_run", run.id)
    db.session.commit()
    logger.info("held sync run %s discarded by %s", run_id, actor)
    return run


def apply_preview(run_id: int, *, actor: str) -> SyncRun:
    """Apply the records a dry run previewed, as a new run (which the guards may hold)."""
    run = get_run(run_id)
    if run.status != RunStatus.DRY_RUN or run.payload is None:
        raise Conflict(f"Run {run.id} is not a dry run that can be applied.")
    data = kept_records(run)
    db.session.commit()

    # Checked by the new run under the customer's lock: a run (or a second click on Apply)
    # that slipped in between the checks and the apply would otherwise be overwritten.
    return run_source(
        run.customer,
        data,
        actor=actor,
        preview_of=run.id,
        check=lambda applying: _refuse_unless_applicable(run, applying),
    )


def _refuse_unless_applicable(preview: SyncRun, applying: SyncRun) -> None:
    """Conflict when the preview was applied already or its records are out of date."""
    earlier = db.session.scalar(
        select(SyncRun.id).where(
            SyncRun.preview_of_id == preview.id,
            SyncRun.id != applying.id,
            # one still running waits for the lock behind `applying` (or its process died)
            SyncRun.status != RunStatus.RUNNING,
        )
    )
    if earlier is not None:
        raise Conflict(f"This preview was applied already, as run {earlier}.")
    stale = out_of_date(preview)
    if stale:
        raise Conflict(stale)


def _not_held(run: SyncRun, verb: str) -> Conflict:
    return Conflict(
        f"Run {run.id} is {run.status.replace('_', ' ')}, not held; only a held run can be {verb}."
    )


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


def _clear_report(run_id: int) -> None:
    db.session.execute(delete(SyncChange).where(SyncChange.run_id == run_id))
    db.session.execute(delete(SyncIssue).where(SyncIssue.run_id == run_id))
