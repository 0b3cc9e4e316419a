"""What a sync run leaves behind: the run, its source files, its changes and its issues."""

import enum
from datetime import datetime

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.core.db import TimestampMixin, db, utcnow
from portal.directory.models import Customer


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    APPLIED = "applied"
    HELD = "held"
    FAILED = "failed"
    DRY_RUN = "dry_run"
    DISCARDED = "discarded"  # a held run an admin chose not to apply: it changed nothing


class SyncRun(db.Model):
    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    source_kind: Mapped[str] = mapped_column(String(30))
    source_name: Mapped[str] = mapped_column(String(100), default="")
    started_by: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.RUNNING.value, index=True)
    is_dry_run: Mapped[bool] = mapped_column(default=False)
    # The source was read whole, so persons it lacks are gone (False: an incremental run).
    is_full: Mapped[bool] = mapped_column(default=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column()
    duration_ms: Mapped[int | None] = mapped_column()
    counts: Mapped[dict] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    hold_reason: Mapped[str | None] = mapped_column(Text)
    # The normalised records of a held or dry run, compressed, so it can be applied later.
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None] = mapped_column()
    discarded_by: Mapped[str | None] = mapped_column(String(200))
    discarded_at: Mapped[datetime | None] = mapped_column()
    preview_of_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id"))
    revert_of_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id"))
    reverted_by_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id"))

    customer: Mapped[Customer] = relationship()
    files: Mapped[list["SyncFile"]] = relationship(
        back_populates="run", order_by="SyncFile.id", cascade="all, delete-orphan"
    )

    @property
    def is_final(self) -> bool:
        return self.status in {RunStatus.APPLIED, RunStatus.FAILED, RunStatus.DISCARDED}


class SyncFile(db.Model):
    __tablename__ = "sync_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    filename: Mapped[str] = mapped_column(String(300))
    size: Mapped[int] = mapped_column()
    sha256: Mapped[str] = mapped_column(String(64))

    run: Mapped[SyncRun] = relationship(back_populates="files")


class SyncChange(db.Model):
    """One change to one unit or person, with the values before and after it."""

    __tablename__ = "sync_changes"
    __table_args__ = (Index("ix_sync_changes_entity", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"), index=True)
    entity: Mapped[str] = mapped_column(String(10))
    entity_id: Mapped[int | None] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20))
    before: Mapped[dict | None] = mapped_column()
    after: Mapped[dict | None] = mapped_column()


class SyncIssue(db.Model):
    """A rejected row or a remark about the run, named by file, row, column and value."""

    __tablename__ = "sync_issues"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"), index=True)
    severity: Mapped[str] = mapped_column(String(10), default="error")
    file: Mapped[str | None] = mapped_column(String(300))
    row: Mapped[int | None] = mapped_column()
    column: Mapped[str | None] = mapped_column(String(200))
    value: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)


class SyncSource(TimestampMixin, db.Model):
    """A directory a customer's units and persons are read from (LDAP or AD), by name.

    `settings` holds what the source's profile does not fill in (URI, bind DN, bases, filter,
    attribute mapping, timeouts); the bind password is stored apart, encrypted. `state` is what
    an incremental run starts from (the highest modifyTimestamp or uSNChanged seen).
    """

    __tablename__ = "sync_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    # The CLI addresses a source by its name alone, so names are unique across customers.
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default="ldap")
    profile: Mapped[str] = mapped_column(String(20))
    settings: Mapped[dict] = mapped_column(default=dict)
    password_encrypted: Mapped[str | None] = mapped_column(Text)
    schedule: Mapped[str] = mapped_column(String(100), default="0 2 * * *")
    # An incremental run's cron besides the full one (empty: full runs only).
    delta_schedule: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[dict] = mapped_column(default=dict)
    is_enabled: Mapped[bool] = mapped_column(default=True)

    customer: Mapped[Customer] = relationship()

    def __repr__(self) -> str:
        return f"<SyncSource {self.name} {self.kind}/{self.profile}>"


class RequestStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


# A request is waiting while it is queued or running; one of each source, action and kind.
REQUEST_WAITING = text("status IN ('queued', 'running')")


class SyncRequest(db.Model):
    """A page's "Test connection", "Preview" or "Sync now", waiting for the scheduler process.

    A run reads a whole directory and may take minutes, longer than a web request may live,
    so the page only queues it here; the scheduler (sync.queue) takes it, runs it and records
    the outcome: the run it made, or the message of a connection test.
    """

    __tablename__ = "sync_requests"
    __table_args__ = (
        # Two clicks at once must queue one request: the check in sync.queue cannot see a
        # request another transaction has not committed yet, this index can.
        Index(
            "uq_sync_requests_waiting",
            "source_id",
            "action",
            "is_full",
            unique=True,
            postgresql_where=REQUEST_WAITING,
            sqlite_where=REQUEST_WAITING,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(
        ForeignKey("sync_sources.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(20))
    # A preview or sync that reads everything (catches deletions), not only what changed.
    is_full: Mapped[bool] = mapped_column(default=False)
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default=RequestStatus.QUEUED.value, index=True)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id"))
    message: Mapped[str | None] = mapped_column(Text)

    source: Mapped[SyncSource] = relationship()
    run: Mapped[SyncRun | None] = relationship()

    @property
    def is_finished(self) -> bool:
        return self.status in {RequestStatus.DONE, RequestStatus.FAILED}


class SyncLock(db.Model):
    """A run lock shared by every process and machine on this database (see sync.locks).

    A holder renews `expires_at` while it runs; a lock past it belongs to a holder that died
    and is taken over by the next run.
    """

    __tablename__ = "sync_locks"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()


class DropAccount(TimestampMixin, db.Model):
    """A customer's login to the FTPS file drop (user name = the customer's slug)."""

    __tablename__ = "drop_accounts"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(300))

    customer: Mapped[Customer] = relationship()


# APScheduler's own job table (SQLAlchemyJobStore), declared here so that the migration makes
# it and the schema check knows it. The scheduler only reads and writes it through APScheduler.
scheduler_jobs = Table(
    "scheduler_jobs",
    db.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
