"""Runs a page asked for, done by the scheduler process instead of the web request.

A page queues a SyncRequest ("test", "preview" or "sync") and shows it; the scheduler polls
every `[schedule] poll_seconds`, takes the oldest queued request (one UPDATE that only one
process can win), performs it through the same operations as the CLI and records the outcome.
A request of the same source, action and kind (full or not) already waiting is reused, so a
double click queues one run. A full preview or sync reads everything, as `flask directory sync
--full` does; otherwise the run is incremental once the source has an applied full run.
"""

import logging
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from portal.core.db import db, utcnow
from portal.core.errors import UserError
from sync.models import (
    REQUEST_WAITING,
    RequestStatus,
    RunStatus,
    SyncRequest,
    SyncRun,
    SyncSource,
)

logger = logging.getLogger(__name__)
ACTIONS = ("test", "preview", "sync")
# A request still "running" this long after it started belongs to a worker that died.
STALE_AFTER = timedelta(hours=2)
# A scheduler polls every few seconds: a request queued this long has no scheduler taking it.
UNTAKEN_AFTER = timedelta(seconds=30)


def request_run(source: SyncSource, action: str, *, actor: str, full: bool = False) -> SyncRequest:
    """Queue `action` for the source (or return the same one already waiting); flushes.

    `full` asks a preview or sync to read everything; a connection test always does.
    """
    return queue_request(source, action, actor=actor, full=full)[0]


def queue_request(
    source: SyncSource, action: str, *, actor: str, full: bool = False
) -> tuple[SyncRequest, bool]:
    """As request_run, and whether this call queued it (False: it was waiting already)."""
    if action not in ACTIONS:
        raise UserError(f"Unknown action {action!r}; use one of {', '.join(ACTIONS)}.")
    full = full and action != "test"
    waiting = _waiting(source.id, action, full)
    if waiting is not None:
        return waiting, False

    # One waiting request of a kind (uq_sync_requests_waiting): a click at the same time that
    # queued it first makes this insert wait for its commit and then do nothing.
    queued = db.session.scalar(
        _insert_unless_waiting()
        .values(source_id=source.id, action=action, is_full=full, requested_by=actor)
        .returning(SyncRequest.id)
    )
    if queued is None:
        return _waiting(source.id, action, full), False
    kind = "full " if full else ""
    logger.info("%s%s of source %s requested by %s as %s", kind, action, source.name, actor, queued)
    return db.session.get(SyncRequest, queued), True


def _waiting(source_id: int, action: str, full: bool) -> SyncRequest | None:
    return db.session.scalar(
        select(SyncRequest).where(
            SyncRequest.source_id == source_id,
            SyncRequest.action == action,
            SyncRequest.is_full.is_(full),
            SyncRequest.status.in_([RequestStatus.QUEUED, RequestStatus.RUNNING]),
        )
    )


def _insert_unless_waiting():
    """An INSERT of a request that does nothing when the same one is waiting already."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return insert(SyncRequest).on_conflict_do_nothing(
        index_elements=["source_id", "action", "is_full"], index_where=REQUEST_WAITING
    )


def is_untaken(request: SyncRequest) -> bool:
    """Whether the request has waited in the queue longer than a running scheduler lets it."""
    return request.status == RequestStatus.QUEUED and (
        utcnow() - request.requested_at > UNTAKEN_AFTER
    )


def process_requests(limit: int = 20) -> int:
    """Perform the queued requests, oldest first, up to `limit`; how many this process did."""
    _close_stale()
    done = 0
    while done < limit:
        request_id = _take_next()
        if request_id is None:
            break
        perform(request_id)
        done += 1
    return done


def perform(request_id: int) -> SyncRequest | None:
    """Run one taken request and record its outcome; never raises for the run's own errors.

    None when the request is gone: its source was deleted (with its requests) meanwhile.
    """
    from sync.sources.ldap import operations

    request = db.session.get(SyncRequest, request_id)
    if request is None:
        logger.info("request %s is gone: its source was deleted", request_id)
        return None
    try:
        source = request.source
        if source is None:
            raise SourceGone()
        if request.action == "test":
            result = operations.check_source(source)
            _finish(
                request, RequestStatus.DONE if result.ok else RequestStatus.FAILED, result.message
            )
        else:
            run = operations.sync_source(
                source,
                actor=request.requested_by,
                full=request.is_full,
                dry_run=request.action == "preview",
            )
            request = db.session.get(SyncRequest, request_id)
            if request is None:
                logger.warning("request %s is gone after its run %s", request_id, run.id)
                return None
            request.run_id = run.id
            failed = run.status == RunStatus.FAILED
            _finish(request, RequestStatus.FAILED if failed else RequestStatus.DONE, started(run))
    except UserError as exc:  # another run of the source is going on, it is disabled or gone
        db.session.rollback()
        _finish_if_there(request_id, str(exc))
    except Exception:
        db.session.rollback()
        logger.exception("request %s failed", request_id)
        _finish_if_there(
            request_id,
            f"The request stopped on an unexpected error; the server log has the details "
            f"under request {request_id}.",
        )
    return db.session.get(SyncRequest, request_id)


class SourceGone(UserError):
    def __init__(self):
        super().__init__("The source of this request was deleted; nothing was run.")


def started(run: SyncRun) -> str:
    """One sentence on what a requested run became."""
    if run.status == RunStatus.DRY_RUN:
        return f"Run #{run.id} is a preview of source {run.source_name}: nothing has changed yet."
    return f"Run #{run.id} of source {run.source_name} is {run.status.replace('_', ' ')}."


def _take_next() -> int | None:
    """Claim the oldest queued request for this process; None when none is left."""
    while True:
        request_id = db.session.scalar(
            select(SyncRequest.id)
            .where(SyncRequest.status == RequestStatus.QUEUED)
            .order_by(SyncRequest.id)
            .limit(1)
        )
        if request_id is None:
            db.session.rollback()
            return None
        taken = db.session.execute(
            update(SyncRequest)
            .where(SyncRequest.id == request_id, SyncRequest.status == RequestStatus.QUEUED)
            .values(status=RequestStatus.RUNNING.value, started_at=utcnow())
        )
        db.session.commit()
        if taken.rowcount == 1:
            return request_id


def _finish_if_there(request_id: int, message: str) -> None:
    """Record a request as failed, unless it went with its source."""
    request = db.session.get(SyncRequest, request_id)
    if request is None:
        logger.info("request %s is gone: its source was deleted", request_id)
        return
    _finish(request, RequestStatus.FAILED, message)


def _finish(request: SyncRequest, status: RequestStatus, message: str) -> None:
    request.status, request.message, request.finished_at = status.value, message, utcnow()
    db.session.commit()
    logger.info("request %s (%s) is %s", request.id, request.action, status.value)


def _close_stale() -> None:
    db.session.execute(
        update(SyncRequest)
        .where(
            SyncRequest.status == RequestStatus.RUNNING,
            SyncRequest.started_at < utcnow() - STALE_AFTER,
        )
        .values(
            status=RequestStatus.FAILED.value,
            finished_at=utcnow(),
            message="The process running this request stopped before it finished.",
        )
    )
    db.session.commit()
