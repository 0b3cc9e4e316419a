"""Stored LDAP sources: add, list, test and sync one (a sync is a normal run of the engine)."""

import logging
import re
import time
from dataclasses import dataclass

from sqlalchemy import select

from config import cron_is_valid
from portal.core import audit
from portal.core.db import db
from portal.core.errors import Conflict, NotFound, UserError
from portal.directory.models import Customer
from sync.gcpause import gc_paused
from sync.locks import run_lock
from sync.models import RunStatus, SyncRun, SyncSource
from sync.runs import run_source
from sync.sources.ldap import profiles, vault
from sync.sources.ldap.reader import Reading, read_directory

logger = logging.getLogger(__name__)
DEFAULT_SCHEDULE = "0 2 * * *"
# Short and plain: the CLI addresses a source by name, and runs label persons "ldap:<name>".
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")


def add_ldap_source(
    customer: Customer,
    name: str,
    *,
    profile: str,
    settings: dict,
    password: str,
    actor: str,
    schedule: str = DEFAULT_SCHEDULE,
) -> SyncSource:
    """Store a new LDAP source of the customer; the password is kept encrypted."""
    if not NAME_RE.match(name):
        raise UserError(
            "A source name is 1 to 60 letters, digits, dots, dashes or underscores "
            "(for example hq-ad), starting with a letter or digit."
        )
    profiles.check(profile, settings)
    if not cron_is_valid(schedule):
        raise UserError("The schedule is a cron expression of five fields, e.g. '0 2 * * *'.")
    if db.session.scalar(select(SyncSource.id).where(SyncSource.name == name)):
        raise Conflict(f"A source named {name!r} exists already; source names are unique.")
    source = SyncSource(
        customer_id=customer.id,
        name=name,
        kind="ldap",
        profile=profile,
        settings=settings,
        password_encrypted=vault.encrypt(password),
        schedule=schedule,
        state={},
    )
    db.session.add(source)
    db.session.flush()
    audit.record(actor, "sync_source.added", "sync_source", source.id, customer=customer.slug)
    logger.info("LDAP source %s of customer %s added by %s", name, customer.slug, actor)
    return source


def source_by_name(name: str) -> SyncSource:
    source = db.session.scalar(select(SyncSource).where(SyncSource.name == name))
    if source is None:
        raise NotFound(f"There is no source named {name!r}; see 'flask directory source list'.")
    return source


def list_sources() -> list[SyncSource]:
    return list(db.session.scalars(select(SyncSource).order_by(SyncSource.name)))


def describe(source: SyncSource) -> dict:
    """The source as `source list --json` shows it: never the password."""
    settings = profiles.effective(source.profile, source.settings)
    return {
        "name": source.name,
        "customer": source.customer.slug,
        "kind": source.kind,
        "profile": source.profile,
        "uri": settings["uri"],
        "bind_dn": settings["bind_dn"],
        "user_bases": settings["user_bases"],
        "user_filter": settings["user_filter"],
        "org_from": settings["org_from"],
        "org_base": settings["org_base"] or None,
        "inactive_filter": settings.get("inactive_filter") or None,
        "schedule": source.schedule,
        "enabled": source.is_enabled,
        "incremental_ready": "last_change" in (source.state or {}),
    }


@dataclass
class ConnectionCheck:
    ok: bool
    message: str
    units: int = 0
    persons: int = 0
    inactive: int = 0


def check_source(source: SyncSource) -> ConnectionCheck:
    """Connect and count what a full run would read; nothing is stored or changed."""
    reading = _read(source, full=True)
    data = reading.data
    if data.fatal:
        return ConnectionCheck(False, data.issues[0].message)
    inactive = sum(1 for p in data.persons if not p.is_active)
    return ConnectionCheck(
        True,
        f"Connected to {profiles.effective(source.profile, source.settings)['uri']}: "
        f"{len(data.units)} units and {len(data.persons)} persons "
        f"({inactive} inactive) would be read.",
        len(data.units),
        len(data.persons),
        inactive,
    )


def sync_source(
    source: SyncSource, *, actor: str, full: bool = False, dry_run: bool = False, on_page=None
) -> SyncRun:
    """Read the source (incrementally when it can and `full` is not asked) and run it.

    The incremental state moves on only when the run was applied, so a failed, held or
    previewed run is read again from the same point next time.
    """
    source_id, customer = source.id, source.customer
    # Every run of a source, from the CLI, a page or the scheduler on any machine, holds the
    # source's lock in the database: a second one stops here with LockBusy. The cycle
    # collector waits until the run is over, between its phases too (see sync.gcpause).
    with run_lock(f"source:{source.name}"), gc_paused():
        read_started = time.perf_counter()
        reading = _read(source, full=full, on_page=on_page)
        run = run_source(
            customer, reading.data, actor=actor, dry_run=dry_run, read_started=read_started
        )
        if run.status == RunStatus.APPLIED and reading.state:
            source = db.session.get(SyncSource, source_id)
            source.state = reading.state
            db.session.commit()
    return run


def _read(source: SyncSource, *, full: bool, on_page=None) -> Reading:
    settings = profiles.effective(source.profile, source.settings)
    return read_directory(
        settings,
        vault.decrypt(source.password_encrypted or ""),
        source_name=source.name,
        state=dict(source.state or {}),
        full=full,
        on_page=on_page,
    )
