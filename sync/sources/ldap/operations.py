"""Stored LDAP sources: add, list, test and sync one (a sync is a normal run of the engine)."""

import copy
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import ldap.dn
from sqlalchemy import delete, func, select

from config import cron_ever_fires, ldap_setting_type_error
from portal.core import audit
from portal.core.db import db, utcnow
from portal.core.errors import Conflict, FieldRefused, NotFound, refuse
from portal.directory.models import Customer
from sync import cron
from sync.gcpause import gc_paused
from sync.locks import current_holder, run_lock
from sync.models import RequestStatus, RunStatus, SyncRequest, SyncRun, SyncSource
from sync.runs import run_source
from sync.sources.ldap import profiles, reach, vault
from sync.sources.ldap.reader import Reading, read_directory

logger = logging.getLogger(__name__)
DEFAULT_SCHEDULE = "0 2 * * *"
# Short and plain: the CLI addresses a source by name, and runs label persons "ldap:<name>".
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")
NAME_RULE = (
    "A source name is 1 to 60 letters, digits, dots, dashes or underscores "
    "(for example hq-ad), starting with a letter or digit."
)


def add_ldap_source(
    customer: Customer,
    name: str,
    *,
    profile: str,
    settings: dict,
    password: str,
    actor: str,
    schedule: str = DEFAULT_SCHEDULE,
    delta_schedule: str | None = None,
) -> SyncSource:
    """Store a new LDAP source of the customer; the password is kept encrypted.

    `schedule` times full runs; `delta_schedule`, when given, incremental runs in between.
    """
    refuse(new_source_errors(name, profile, settings, password, schedule, delta_schedule))
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
        delta_schedule=delta_schedule or None,
        state={},
    )
    db.session.add(source)
    db.session.flush()
    audit.record(actor, "sync_source.added", "sync_source", source.id, customer=customer.slug)
    logger.info("LDAP source %s of customer %s added by %s", name, customer.slug, actor)
    return source


def new_source_errors(
    name: str,
    profile: str,
    settings: dict,
    password: str,
    schedule: str,
    delta_schedule: str | None,
) -> list[FieldRefused]:
    """Everything wrong with a new source, field by field (the add form shows them all)."""
    errors = [] if NAME_RE.match(name) else [FieldRefused("name", NAME_RULE)]
    errors += setting_errors(profile, settings)
    errors += schedule_errors(schedule, delta_schedule)
    if not password:
        errors.append(FieldRefused("password", "Give the bind password."))
    return errors


def update_ldap_source(
    source: SyncSource,
    *,
    profile: str,
    settings: dict,
    password: str | None,
    actor: str,
    schedule: str = DEFAULT_SCHEDULE,
    delta_schedule: str | None = None,
) -> SyncSource:
    """Change a source's settings; a None or empty password keeps the stored one.

    The name stays: runs and the persons a source created are labelled with it, and a full run
    inactivates only persons of its own label. When what is read changes (anything but the
    schedule), the incremental state is dropped, so the next run reads everything.
    """
    refuse(setting_errors(profile, settings) + schedule_errors(schedule, delta_schedule))

    reading_changed = (source.profile, source.settings) != (profile, settings)
    source.profile, source.settings, source.schedule = profile, settings, schedule
    source.delta_schedule = delta_schedule or None
    if password:
        source.password_encrypted = vault.encrypt(password)
    if reading_changed:
        source.state = {}
    db.session.flush()

    changed = "settings" if reading_changed else "schedule"
    audit.record(actor, "sync_source.changed", "sync_source", source.id, changed=changed)
    logger.info("LDAP source %s changed by %s", source.name, actor)
    return source


def set_enabled(source: SyncSource, enabled: bool, *, actor: str) -> None:
    """Enable or disable a source: the scheduler drops a disabled one's jobs at its next
    refresh, and a disabled source cannot be run from a page or the CLI."""
    source.is_enabled = enabled
    db.session.flush()
    action = "enabled" if enabled else "disabled"
    audit.record(actor, f"sync_source.{action}", "sync_source", source.id)
    logger.info("LDAP source %s %s by %s", source.name, action, actor)


def delete_source(source: SyncSource, *, actor: str) -> str:
    """Delete a source that never ran; one with runs is disabled instead, so its history
    (runs, changes, the persons labelled with its name) keeps making sense. So is one with
    a run going on: its first run has no row yet, but will have. Returns "deleted" or
    "disabled"."""
    if run_count(source) or is_running(source):
        set_enabled(source, False, actor=actor)
        return "disabled"
    source_id, name = source.id, source.name
    db.session.execute(delete(SyncRequest).where(SyncRequest.source_id == source_id))
    db.session.delete(source)
    db.session.flush()
    audit.record(actor, "sync_source.deleted", "sync_source", source_id, name=name)
    logger.info("LDAP source %s deleted by %s", name, actor)
    return "deleted"


def run_count(source: SyncSource) -> int:
    return db.session.scalar(
        select(func.count(SyncRun.id)).where(
            SyncRun.customer_id == source.customer_id,
            SyncRun.source_kind == source.kind,
            SyncRun.source_name == source.name,
        )
    )


def is_running(source: SyncSource) -> bool:
    """Whether a run of the source is going on: its run lock is held (by the CLI or the
    scheduler), or the scheduler has taken a preview or sync request of it. A connection
    test makes no run and does not count."""
    lock = current_holder(f"source:{source.name}")
    if lock is not None and lock.expires_at > utcnow():
        return True
    taken = select(SyncRequest.id).where(
        SyncRequest.source_id == source.id,
        SyncRequest.status == RequestStatus.RUNNING,
        SyncRequest.action != "test",
    )
    return db.session.scalar(taken.limit(1)) is not None


ATTRIBUTE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)+)$")
LIMITS = {"page_size": (1, 5000), "network_timeout": (1, 300), "timeout": (1, 3600)}


def check_settings(profile: str, settings: dict) -> None:
    """Refuse settings that cannot work; the FieldRefused names the field and says why
    (FieldRefusals, naming each, when several fields are wrong).

    The page and the CLI both call this, so a source added either way meets the same rules.
    """
    refuse(setting_errors(profile, settings))


def setting_errors(profile: str, settings: dict) -> list[FieldRefused]:
    """What is wrong with the settings, field by field, found in one pass.

    Checks that do not depend on each other all run; a check whose input is already refused
    (StartTLS on a URI that is not LDAP, hosts of such a URI) is skipped, so each field gets
    the one error that says what to do with it. Wrong types stop the rest, which read them.
    """
    if profile not in profiles.PROFILES:
        return [FieldRefused("profile", f"The profile is one of {', '.join(profiles.PROFILES)}.")]
    errors = [
        FieldRefused(key, f"Unknown LDAP setting {key!r}.")
        for key in sorted(set(settings) - profiles.SETTING_KEYS)
    ]
    for key, value in settings.items():
        wanted = ldap_setting_type_error(key, value)
        if wanted:
            message = f"The setting {key} must be {wanted}, not {value!r:.80}."
            errors.append(FieldRefused(key, message))
    if errors:
        return errors
    merged = profiles.effective(profile, settings)
    for check in (_check_connection, _check_numbers, _check_bases, _check_groups, _check_filters):
        errors += check(merged)
    return errors + list(_check_attributes(profile, settings.get("attributes", {})))


def _check_connection(s: dict) -> Iterator[FieldRefused]:
    uri = s["uri"]
    if not uri.startswith(("ldap://", "ldaps://", "ldapi://")):
        yield FieldRefused("uri", "The URI must start with ldap://, ldaps:// or ldapi://.")
    elif s["starttls"] and not uri.startswith("ldap://"):
        yield FieldRefused(
            "starttls", "StartTLS is for ldap:// only; ldaps:// is encrypted from the start."
        )
    yield from _check_reach(s, hosts=uri.startswith(("ldap://", "ldaps://", "ldapi://")))
    # AD also binds with user@domain or DOMAIN\user; anything with "=" must be a real DN.
    bind = s["bind_dn"]
    if not bind or ("=" in bind and not ldap.dn.is_dn(bind)):
        yield FieldRefused(
            "bind_dn", "The bind DN is not a DN (e.g. cn=kursa,ou=services,dc=example,dc=test)."
        )


def _check_reach(s: dict, *, hosts: bool) -> Iterator[FieldRefused]:
    """CA file in the CA folder or a pasted CA certificate; hosts the operator allows."""
    if s["ca_file"] and s["ca_pem"]:
        yield FieldRefused("ca_pem", "Give either a CA file or a pasted CA certificate, not both.")
        return
    checks = [
        (s["ca_file"], lambda: reach.resolve_ca_file(s["ca_file"])),
        (s["ca_pem"], lambda: reach.check_ca_pem(s["ca_pem"])),
        (hosts, lambda: reach.check_hosts(s["uri"], resolve=True)),
    ]
    for wanted, check in checks:
        try:
            if wanted:
                check()
        except reach.ReachError as exc:
            yield exc


def _check_numbers(s: dict) -> Iterator[FieldRefused]:
    for key, (low, high) in LIMITS.items():
        value = s[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            label = key.replace("_", " ")
            yield FieldRefused(key, f"The {label} must be a number from {low} to {high}.")


def _check_bases(s: dict) -> Iterator[FieldRefused]:
    if not s["user_bases"]:
        yield FieldRefused("user_bases", "Give at least one user base DN.")
    bad_bases = [base for base in s["user_bases"] if not ldap.dn.is_dn(base)]
    if bad_bases:
        yield FieldRefused("user_bases", f"The user base {bad_bases[0]!r} is not a DN.")
    if s["org_from"] not in profiles.ORG_FROM:
        yield FieldRefused(
            "org_from", "The org tree comes from 'ou' (the OU structure) or 'attribute'."
        )
    if s["org_from"] == "ou" and not s["org_base"]:
        yield FieldRefused("org_base", "An org tree from OUs needs the base DN of the OU tree.")
    if s["org_base"] and not ldap.dn.is_dn(s["org_base"]):
        yield FieldRefused("org_base", f"The org base {s['org_base']!r} is not a DN.")
    if not ATTRIBUTE_RE.match(s["unit_number_attribute"] or ""):
        yield FieldRefused(
            "unit_number_attribute", "The org attribute is an attribute name, e.g. ou."
        )


def _check_groups(s: dict) -> Iterator[FieldRefused]:
    groups = s["member_of"]
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        yield FieldRefused("member_of", "The groups are a list of group DNs.")
        return
    for group in groups:
        if not ldap.dn.is_dn(group) or "=" not in group:
            yield FieldRefused(
                "member_of", f"The group {group!r} is not a DN (e.g. cn=kursa,ou=groups,dc=x)."
            )
            return


def _check_filters(s: dict) -> Iterator[FieldRefused]:
    for key in ("user_filter", "inactive_filter"):
        value = s.get(key) or ""
        value = value if value.startswith("(") else f"({value})"  # the reader adds them too
        if value != "()" and not _looks_like_filter(value):
            label = key.replace("_", " ")
            yield FieldRefused(key, f"The {label} is not an LDAP filter, e.g. (objectClass=x).")


def _looks_like_filter(text: str) -> bool:
    """Balanced parentheses around the whole (the server checks the rest when it runs)."""
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0 or (depth == 0 and i < len(text) - 1):
            return False
    return text.startswith("(") and depth == 0


def _check_attributes(profile: str, attributes: dict) -> Iterator[FieldRefused]:
    known = profiles.effective(profile, {})["attributes"]
    for field, name in attributes.items():
        if field not in known:
            yield FieldRefused(f"attributes.{field}", f"Unknown mapped field {field!r}.")
        elif not ATTRIBUTE_RE.match(name or ""):
            label = field.replace("_", " ")
            yield FieldRefused(
                f"attributes.{field}",
                f"The attribute for {label} is not an LDAP attribute name, e.g. mail.",
            )


def check_schedule(field: str, schedule: str) -> None:
    refuse(list(_schedule_error(field, schedule)))


def schedule_errors(schedule: str, delta_schedule: str | None) -> list[FieldRefused]:
    """The full-run schedule's error and the incremental one's (when given), if any."""
    errors = list(_schedule_error("schedule", schedule))
    if delta_schedule:
        errors += _schedule_error("delta_schedule", delta_schedule)
    return errors


def _schedule_error(field: str, schedule: str) -> Iterator[FieldRefused]:
    problem = cron.problem(schedule)
    if problem:
        yield FieldRefused(field, problem)
    elif not cron_ever_fires(schedule):
        yield FieldRefused(
            field,
            f"The schedule {schedule!r} never runs: no date has that day in that month "
            "(such as 31 February). Check the day and month fields.",
        )


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
        "member_of": settings["member_of"],
        "schedule": source.schedule,
        "delta_schedule": source.delta_schedule,
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
    settings = profiles.effective(source.profile, source.settings)
    message = (
        f"Connected to {settings['uri']}: {len(data.units)} units and {len(data.persons)} "
        f"persons ({inactive} inactive) would be read."
    )
    # What a run would report once for the whole source (an attribute no entry came back
    # with), and how many persons it would skip for want of a unit.
    problems = [i.message for i in data.issues if i.severity == "error" and i.file is None]
    unplaced = sum(1 for p in data.persons if not p.unit_ref)
    if unplaced:
        one = unplaced == 1
        if settings["org_from"] == "ou":
            where = f"{'lies' if one else 'lie'} in no OU below the org base"
            where += f" {settings['org_base']!r}"
        else:
            where = f"{'has' if one else 'have'} no {data.unit_column}"
        problems.append(f"{unplaced} of the persons {where} and would be skipped.")
    return ConnectionCheck(
        True,
        " ".join([message, *problems]),
        len(data.units),
        len(data.persons),
        inactive,
    )


def sync_source(
    source: SyncSource, *, actor: str, full: bool = False, dry_run: bool = False, on_page=None
) -> SyncRun:
    """Read the source (incrementally when it can and `full` is not asked) and run it.

    The incremental state moves on only when the run was applied, so a failed, held or
    previewed run is read again from the same point next time, and only when the source still
    reads what this run read (see _store_state).
    """
    if not source.is_enabled:
        raise Conflict(f"Source {source.name} is disabled; enable it before running it.")
    source_id, customer = source.id, source.customer
    # Every run of a source, from the CLI, a page or the scheduler on any machine, holds the
    # source's lock in the database: a second one stops here with LockBusy. The cycle
    # collector waits until the run is over, between its phases too (see sync.gcpause).
    with run_lock(f"source:{source.name}"), gc_paused():
        read_with = (source.profile, copy.deepcopy(source.settings))
        read_started = time.perf_counter()
        reading = _read(source, full=full, on_page=on_page)
        run = run_source(
            customer,
            reading.data,
            actor=actor,
            dry_run=dry_run,
            read_started=read_started,
            full=full,
        )
        if run.status == RunStatus.APPLIED and reading.state:
            _store_state(source_id, reading.state, read_with)
    return run


def _store_state(source_id: int, state: dict, read_with: tuple[str, dict]) -> None:
    """Keep where an applied run read up to, unless the source's profile or settings changed
    while it read: that edit dropped the state so the next run reads everything
    (update_ldap_source), and a state read with the old settings must not undo that.

    An edit does not wait for the source's run lock, so the comparison is made after the
    UPDATE, which holds the row (PostgreSQL) or the database's write lock (SQLite) until the
    commit: an edit either committed before it, and is seen, or waits until after it.
    """
    source = db.session.get(SyncSource, source_id)
    source.state = state
    db.session.flush()
    now_read = db.session.execute(
        select(SyncSource.profile, SyncSource.settings).where(SyncSource.id == source_id)
    ).one()
    if tuple(now_read) != read_with:
        db.session.rollback()
        logger.info("LDAP source %s changed during its run: its state was not kept", source.name)
        return
    db.session.commit()


def connection_settings(source: SyncSource) -> dict:
    """The source's settings checked again before a connection (the operator may have
    narrowed `[sync] allowed_ldap_hosts` or `ca_dir` since it was saved), with the CA as a
    file path the LDAP library reads. ReachError when the source may no longer connect."""
    settings = profiles.effective(source.profile, source.settings)
    reach.check_hosts(settings["uri"], resolve=True)
    if settings["ca_file"]:
        settings["ca_file"] = reach.resolve_ca_file(settings["ca_file"])
    elif settings["ca_pem"]:
        settings["ca_file"] = reach.ca_pem_file(settings["ca_pem"])
    return settings


def _read(source: SyncSource, *, full: bool, on_page=None) -> Reading:
    settings = connection_settings(source)
    return read_directory(
        settings,
        vault.decrypt(source.password_encrypted or ""),
        source_name=source.name,
        state=dict(source.state or {}),
        full=full,
        on_page=on_page,
    )
