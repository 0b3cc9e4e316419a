"""The scheduler process: one APScheduler job per source, kept in the database.

Jobs (their ids are what `job_id` makes):
- `source:<name>`: a full run of an enabled directory source, on its cron `schedule`;
- `delta:<name>`: an incremental run of it, on its optional `delta_schedule` (a run of either
  kind finding the other still going is skipped: the source's lock; an incremental run due
  with a full one gives way to it);
- `drop:<slug>`: the file drop of a customer that has an inbox, on `[drop] schedule`.
- `requests`: every `[schedule] poll_seconds`, the tests, previews and runs the source pages
  queued (sync.queue); in memory like `outbox`.
- `outbox` (only when `[mail] host` is set): sends the due notifications every
  `[mail] send_every_seconds`, as `flask outbox send` does, under the run lock `outbox:send`, so
  two scheduler processes never send the same messages twice. It lives in memory, not in the
  job store: it follows the settings, and a send missed while down is simply the next one.
Cron expressions are read in the customer's time zone (Customer.timezone, else
`[directory] default_timezone`), so "0 2 * * *" is 02:00 local time in winter and in summer.

The job store is the `scheduler_jobs` table of Kursa's database (APScheduler's
SQLAlchemyJobStore). The scheduler re-reads the sources at start and every
`[schedule] refresh_seconds`, adding, changing and removing jobs to match.

A run missed while no scheduler was running (down at 02:00) runs once at start: for each job,
the first fire time after its last run (or after the source was added) is compared with now.
When both jobs of a source are owed, only the full one runs: it covers the incremental one.
Runs themselves go through the same functions as the CLI, with actor "scheduler", and hold the
source's lock in the database, so a CLI run, a page or a second scheduler never overlaps one.
"""

import logging
import os
import signal
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask, current_app
from sqlalchemy import func, select

from portal.core.db import db, utcnow
from portal.core.errors import UserError
from portal.courses.outbox import SendReport, mail_settings, send_pending
from portal.directory.models import Customer
from portal.directory.queries import customer_by_slug
from sync import cron
from sync.cron import EitherDayTrigger, LocalCronTrigger
from sync.locks import LockBusy, current_holder, run_lock
from sync.models import RunStatus, SyncRun, SyncSource
from sync.plan import counts_from_tally
from sync.queue import process_requests
from sync.runs import notify_run
from sync.sources.ldap.declared import apply_declared

logger = logging.getLogger(__name__)
ACTOR = "scheduler"
JOB_TABLE = "scheduler_jobs"
OUTBOX_JOB = "outbox"
OUTBOX_LOCK = "outbox:send"
REQUESTS_JOB = "requests"
_app: Flask | None = None  # the app the scheduler process serves; jobs run in its context


@dataclass(frozen=True)
class JobSpec:
    """What one job should be: which run, on which cron, in which zone, owed since when."""

    id: str
    cron: str
    zone: str
    since: datetime  # no run is owed for fire times before this (when the source was added)

    @property
    def name(self) -> str:
        return f"{self.cron} ({self.zone})"

    def trigger(self) -> LocalCronTrigger | EitherDayTrigger:
        return cron.trigger(self.cron, self.zone)

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire time at or after `after`, in UTC (a local time in the spring gap
        compares unequal to everything, so it is never handed on as it is)."""
        fire = self.trigger().get_next_fire_time(None, after)
        return fire and fire.astimezone(UTC)


def customer_zone(customer: Customer) -> str:
    return customer.timezone or current_app.config["KURSA"]["directory"]["default_timezone"]


def planned_jobs() -> list[JobSpec]:
    """The jobs the sources and drop inboxes call for, sorted by id."""
    from sync.drop import customers_with_inbox

    specs = []
    sources = db.session.scalars(select(SyncSource).where(SyncSource.is_enabled.is_(True)))
    for source in sources:
        specs += source_jobs(source)
    drop_cron = current_app.config["KURSA"]["drop"]["schedule"]
    for slug in customers_with_inbox():
        customer = customer_by_slug(slug)
        if customer is None:
            continue
        specs.append(
            JobSpec(f"drop:{slug}", drop_cron, customer_zone(customer), customer.created_at)
        )
    return sorted(specs, key=lambda s: s.id)


def source_jobs(source: SyncSource) -> list[JobSpec]:
    """A source's full job and, when it has an incremental schedule, its incremental job."""
    zone = customer_zone(source.customer)
    specs = [JobSpec(f"source:{source.name}", source.schedule, zone, source.created_at)]
    if source.delta_schedule:
        specs.append(
            JobSpec(f"delta:{source.name}", source.delta_schedule, zone, source.created_at)
        )
    return specs


@dataclass(frozen=True)
class IntervalJob:
    """A job every `seconds`, kept in the scheduler's memory (the settings call for it)."""

    id: str
    seconds: int
    work: Callable[[], object]
    # How many may run at once: a long run asked for on a page must not hold up a connection
    # test queued behind it, so the queue gets all workers but one (kept for the schedules).
    instances: int = 1
    # Also run once when the scheduler starts: a job of a long interval (hours) would
    # otherwise never run under a scheduler restarted more often than that (daily deploys).
    run_at_start: bool = False


def interval_jobs() -> list[IntervalJob]:
    """The interval jobs the settings call for: the queue of runs the source pages asked for,
    the outbox sender when mail is configured, and what other packages registered as (id,
    seconds, work[, instances, run_at_start]) in app.extensions["kursa_interval_jobs"] (sso's
    metadata refresh), so sync imports none of them."""
    settings = current_app.config["KURSA"]
    every, workers = settings["schedule"]["poll_seconds"], settings["schedule"]["workers"]
    jobs = [IntervalJob(REQUESTS_JOB, every, process_queue, max(1, workers - 1))]
    mail = settings["mail"]
    if mail["host"]:
        jobs.append(IntervalJob(OUTBOX_JOB, mail["send_every_seconds"], send_outbox))
    jobs += [IntervalJob(*job) for job in current_app.extensions.get("kursa_interval_jobs", [])]
    return jobs


def process_queue() -> int:
    """Run what the source pages queued (see sync.queue); errors are logged, never raised."""
    try:
        return process_requests()
    except Exception:
        db.session.rollback()
        logger.exception("queued requests could not be processed")
    return 0


def send_outbox() -> SendReport | None:
    """Send the due notifications, as `flask outbox send`; None when mail is off or another
    process is sending (it holds the lock), so no message goes out twice."""
    settings = mail_settings(current_app.config["KURSA"])
    if settings is None:
        return None
    try:
        with run_lock(OUTBOX_LOCK):
            return send_pending(settings)
    except LockBusy:
        logger.info("outbox send skipped: another process is sending")
    except Exception:
        db.session.rollback()
        logger.exception("outbox send failed")
    return None


def add_interval_jobs(scheduler: BackgroundScheduler) -> list[str]:
    """Add the interval jobs to the scheduler's memory store; their ids."""
    jobs = interval_jobs()
    for job in jobs:
        first = {"next_run_time": datetime.now(UTC)} if job.run_at_start else {}
        scheduler.add_job(
            _run_in_context,
            "interval",
            seconds=job.seconds,
            id=job.id,
            jobstore="memory",
            args=[job.work],
            max_instances=job.instances,
            replace_existing=True,
            **first,
        )
    return [job.id for job in jobs]


def _run_in_context(work: Callable[[], object]) -> None:
    with _app.app_context():
        work()


# The outcomes of a run that did the job's work. A preview changes nothing and a run still
# "running" may be one whose process was killed; a discarded run was held first.
DID_THE_WORK = (RunStatus.APPLIED, RunStatus.HELD, RunStatus.FAILED, RunStatus.DISCARDED)


def last_run_at(job_id: str) -> datetime | None:
    """When this job's work last started (a recorded run, or the drop's last look).

    Only a real run counts (applied, held, failed or later discarded; never a preview), and
    for a source's full job only a full run: an incremental one catches no deletions.
    """
    kind, key = job_id.split(":", 1)
    if kind == "drop":
        from sync.drop import last_look_at

        return last_look_at(key)
    source = db.session.scalar(select(SyncSource).where(SyncSource.name == key))
    if source is None:
        return None
    runs = select(func.max(SyncRun.started_at)).where(
        SyncRun.customer_id == source.customer_id,
        SyncRun.source_kind == source.kind,
        SyncRun.source_name == source.name,
        SyncRun.is_dry_run.is_(False),
        SyncRun.status.in_([status.value for status in DID_THE_WORK]),
    )
    if kind == "source":
        runs = runs.where(SyncRun.is_full.is_(True))
    return db.session.scalar(runs)


def is_missed(spec: JobSpec, last_run: datetime | None, now: datetime) -> bool:
    """True when a fire time passed since the last run (or since the source was added)."""
    after = max(spec.since, last_run) if last_run else spec.since
    fire = spec.next_fire(after)
    return fire is not None and fire <= now


def run_job(job_id: str) -> None:
    """What APScheduler calls (by reference, so the job store can keep it)."""
    with _app.app_context():
        kind, name = job_id.split(":", 1)
        if kind == "delta" and full_run_fires_with(name, utcnow()):
            logger.info("scheduled job %s skipped: the full run fires with it", job_id)
            return
        run_now(job_id, actor=ACTOR)


def full_run_fires_with(name: str, now: datetime) -> bool:
    """Whether the source's full run fired within the last SAME_FIRE (at 02:00 a */15
    incremental schedule fires with a 02:00 full one). The two would race for the source's
    lock, and a full run losing it that soon is not reported: the night's full run would be
    lost. The full run reads everything the incremental one would, so that one gives way."""
    source = db.session.scalar(select(SyncSource).where(SyncSource.name == name))
    if source is None:
        return False
    fire = source_jobs(source)[0].next_fire(now - SAME_FIRE)
    return fire is not None and fire <= now


def run_now(job_id: str, *, actor: str) -> SyncRun | None:
    """Run the job's work now; a run of the same source elsewhere makes this one a no-op."""
    from sync.drop import import_drop
    from sync.sources.ldap.operations import source_by_name, sync_source

    kind, key = job_id.split(":", 1)
    try:
        if kind in ("source", "delta"):
            return sync_source(source_by_name(key), actor=actor, full=kind == "source")
        customer = customer_by_slug(key)
        if customer is None:
            logger.warning("scheduled job %s: no customer %s; skipped", job_id, key)
            return None
        return import_drop(customer, actor=actor).run
    except LockBusy as busy:
        logger.info("scheduled job %s skipped: another process is running it", job_id)
        db.session.rollback()
        if kind == "source":
            _flag_skipped(key, str(busy), actor)
    except Exception:
        db.session.rollback()
        logger.exception("scheduled job %s failed", job_id)
    return None


# A lock taken this recently is most likely the same fire time taken by another scheduler
# process (two nodes), not a run overrunning its slot: that skip is no news for HR.
SAME_FIRE = timedelta(seconds=60)


def _flag_skipped(name: str, reason: str, actor: str) -> None:
    """A full scheduled run that found its source locked is flagged and mailed (once)."""
    from sync.sources.ldap.operations import source_by_name

    holder = current_holder(f"source:{name}")
    if holder is not None and holder.acquired_at > utcnow() - SAME_FIRE:
        return
    try:
        source = source_by_name(name)
        record_skipped_run(source.customer, kind=source.kind, name=name, reason=reason, actor=actor)
    except Exception:
        db.session.rollback()
        logger.exception("the skipped run of source %s could not be recorded", name)


SKIPPED = "The scheduled run was skipped"


def record_skipped_run(customer: Customer, *, kind: str, name: str, reason: str, actor: str):
    """Record a scheduled run that could not start (its source was locked) as a failed run, so
    it is flagged and HR hears of it: once, while runs keep being skipped; the next real run
    of the source ends the series. Returns the new run, or None when one is recorded already.
    """
    newest = db.session.scalar(
        select(SyncRun)
        .where(
            SyncRun.customer_id == customer.id,
            SyncRun.source_kind == kind,
            SyncRun.source_name == name,
        )
        .order_by(SyncRun.id.desc())
        .limit(1)
    )
    if newest is not None and (newest.error or "").startswith(SKIPPED):
        return None
    now = utcnow()
    run = SyncRun(
        customer_id=customer.id,
        source_kind=kind,
        source_name=name,
        started_by=actor,
        status=RunStatus.FAILED.value,
        counts=counts_from_tally(defaultdict(int)),
        started_at=now,
        finished_at=now,
        duration_ms=0,
        error=f"{SKIPPED}: {reason}",
    )
    db.session.add(run)
    db.session.commit()
    logger.warning("scheduled run of %s:%s skipped as run %s", kind, name, run.id)
    notify_run(run)
    return run


def make_scheduler(app: Flask) -> BackgroundScheduler:
    settings = app.config["KURSA"]["schedule"]
    return BackgroundScheduler(
        jobstores={
            "default": SQLAlchemyJobStore(engine=db.engine, tablename=JOB_TABLE),
            "memory": MemoryJobStore(),
        },
        executors={"default": ThreadPoolExecutor(settings["workers"])},
        job_defaults={
            "coalesce": True,  # runs missed while busy are one run, not a burst
            "max_instances": 1,
            "misfire_grace_time": settings["misfire_grace_seconds"],
        },
        timezone=UTC,
    )


def refresh_jobs(scheduler: BackgroundScheduler) -> dict[str, int]:
    """Make the stored jobs match the sources: add new, re-time changed, remove gone ones."""
    specs = {spec.id: spec for spec in planned_jobs()}
    stored = {job.id: job for job in scheduler.get_jobs(jobstore="default")}
    counts = {"added": 0, "changed": 0, "removed": 0}
    for job_id, spec in specs.items():
        job = stored.get(job_id)
        if job is None:
            _add(scheduler, spec)
            counts["added"] += 1
        elif job.name != spec.name:
            scheduler.remove_job(job_id, jobstore="default")
            _add(scheduler, spec)
            counts["changed"] += 1
    for job_id in stored.keys() - specs.keys():
        scheduler.remove_job(job_id, jobstore="default")
        counts["removed"] += 1
    if any(counts.values()):
        logger.info("scheduler jobs refreshed: %s", counts)
    return counts


def catch_up(scheduler: BackgroundScheduler, now: datetime | None = None) -> list[str]:
    """At start: a job whose fire time passed unrun runs now, once; others wait for theirs.

    Setting every job's next time here (not leaving APScheduler's stored one) makes the last
    recorded run, not the misfire grace, decide whether a run was missed.
    """
    now = now or utcnow()
    specs = planned_jobs()
    owed = {spec.id for spec in specs if is_missed(spec, last_run_at(spec.id), now)}
    missed = []
    for spec in specs:
        # Started together, the incremental run could take the source's lock first and the
        # full one be skipped; the full run reads everything the incremental one would.
        kind, name = spec.id.split(":", 1)
        covered = kind == "delta" and f"source:{name}" in owed
        if spec.id in owed and not covered:
            missed.append(spec.id)
            when = now
        else:
            when = spec.next_fire(now)
        scheduler.modify_job(spec.id, jobstore="default", next_run_time=when)
    if missed:
        logger.info("scheduler catches up missed runs: %s", ", ".join(missed))
    return missed


def serve(app: Flask, stop: threading.Event | None = None) -> None:
    """Run the scheduler until SIGTERM or SIGINT (or `stop`); then finish running jobs."""
    global _app
    _app = app
    stop = stop or _stop_on_signals()
    scheduler = make_scheduler(app)
    scheduler.start(paused=True)
    with app.app_context():
        apply_declared_sources()
        refresh_jobs(scheduler)
        catch_up(scheduler)
        add_interval_jobs(scheduler)
    scheduler.add_job(
        _refresh_in_context,
        "interval",
        seconds=app.config["KURSA"]["schedule"]["refresh_seconds"],
        id="refresh",
        jobstore="memory",
        args=[scheduler],
    )
    scheduler.resume()
    logger.info("scheduler started with %s jobs", len(scheduler.get_jobs(jobstore="default")))
    while not stop.wait(1):
        pass
    logger.info("scheduler stopping; waiting for running jobs")
    scheduler.shutdown(wait=True)
    logger.info("scheduler stopped")


def apply_declared_sources() -> None:
    """Bring the sources declared in the config file into the database before the jobs are
    planned. A wrong table is logged and nothing of the file applies; the sources already
    stored keep their schedules (the scheduler must not stop over one typo)."""
    declared = current_app.config["KURSA"].get("ldap_sources", {})
    if not declared:
        return
    try:
        applied = apply_declared(declared, os.environ)
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        logger.error("the LDAP sources of the config file were not applied: %s", exc)
        return
    logger.info("config file sources: %s", ", ".join(f"{a.name} {a.outcome}" for a in applied))


def _refresh_in_context(scheduler: BackgroundScheduler) -> None:
    with _app.app_context():
        try:
            refresh_jobs(scheduler)
        except Exception:
            logger.exception("scheduler could not refresh its jobs; keeps the ones it has")


def _add(scheduler: BackgroundScheduler, spec: JobSpec) -> None:
    scheduler.add_job(
        run_job,
        spec.trigger(),
        args=[spec.id],
        id=spec.id,
        name=spec.name,
        jobstore="default",
        replace_existing=True,
    )


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum, frame):
        logger.info("scheduler got signal %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
