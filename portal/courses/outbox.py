"""The outbox sender: delivers notification rows by SMTP, so a mail server outage loses none.

A message is marked sent only after the server accepted it, and each is committed on its own:
a crash mid-run resends at most the one message in flight (delivery is at least once).
Failures wait longer each time (1, 2, 4 ... minutes, at most an hour). An unreachable server
never makes a message give up; a message the server refuses outright (5xx) is given up after
[mail] max_attempts tries and stays in the table, marked failed, with the server's answer.
"""

import json
import logging
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

import click
from flask import current_app
from sqlalchemy import func, or_, select

from portal.core.cli import ID
from portal.core.db import db, utcnow
from portal.courses.models import Activity, OutboxMessage
from portal.courses.times import shown, zone_of
from portal.directory.models import Customer, Person

logger = logging.getLogger(__name__)
FIRST_WAIT = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=1)
ERROR_LENGTH = 500
# An address in a server's answer ("550 <anna@example.com>: no such user"), hidden in listings.
AN_ADDRESS = re.compile(r"[^\s<>\"'@]+@[^\s<>\"'@]+")


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int
    username: str
    password: str
    starttls: bool
    from_address: str
    timeout_seconds: int
    max_attempts: int


@dataclass
class SendReport:
    sent: int = 0
    retrying: int = 0
    given_up: int = 0
    errors: list[str] = field(default_factory=list)


class ServerUnreachable(Exception):
    """The mail server could not be reached or refused the session: try everything later."""


def mail_settings(config: dict) -> MailSettings | None:
    """The [mail] settings, or None when mail is off (no host); checked at start by config."""
    mail = config["mail"]
    if not mail["host"]:
        return None
    return MailSettings(**{name: mail[name] for name in MailSettings.__dataclass_fields__})


def due_messages(now: datetime, limit: int) -> list[int]:
    """Ids of pending messages whose time has come, oldest first."""
    return list(
        db.session.scalars(
            select(OutboxMessage.id)
            .where(
                OutboxMessage.sent_at.is_(None),
                OutboxMessage.failed_at.is_(None),
                or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now),
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
    )


def pending_count() -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None))
    )


def send_pending(
    settings: MailSettings, *, now: datetime | None = None, limit: int = 200
) -> SendReport:
    """Send what is due. Commits after each message (see the module's docstring)."""
    now = now or utcnow()
    report = SendReport()
    ids = due_messages(now, limit)
    if not ids:
        return report
    try:
        smtp = _connect(settings)
        try:
            for message_id in ids:
                _send_one(smtp, settings, message_id, now, report)
        finally:
            _close(smtp)
    except ServerUnreachable as exc:
        db.session.rollback()
        _retry_later(ids, now, str(exc), report)
    logger.info(
        "outbox: %s sent, %s to retry, %s given up", report.sent, report.retrying, report.given_up
    )
    return report


def _connect(settings: MailSettings) -> smtplib.SMTP:
    try:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_seconds)
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.username:
            smtp.login(settings.username, settings.password)
    except (OSError, smtplib.SMTPException) as exc:
        logger.warning(
            "outbox: mail server %s:%s unreachable: %s", settings.host, settings.port, _kind(exc)
        )
        raise ServerUnreachable(f"Mail server unreachable: {_describe(exc)}") from exc
    return smtp


def _close(smtp: smtplib.SMTP) -> None:
    """Say goodbye if the server still listens; a connection already gone is just closed."""
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def failed_messages() -> list[OutboxMessage]:
    """The messages given up, oldest first."""
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.failed_at.is_not(None), OutboxMessage.sent_at.is_(None))
            .order_by(OutboxMessage.id)
        )
    )


def retry_message(message_id: int) -> OutboxMessage | None:
    """Put a given-up message back in the queue, due now with fresh attempts; None if there is
    no such given-up message. The last error stays until the next attempt."""
    message = db.session.get(OutboxMessage, message_id)
    if message is None or message.failed_at is None or message.sent_at is not None:
        return None
    message.failed_at, message.next_attempt_at, message.attempts = None, None, 0
    logger.info("outbox message %s put back in the queue", message.id)
    return message


def _send_one(smtp, settings: MailSettings, message_id: int, now, report: SendReport) -> None:
    message = db.session.scalar(
        select(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.sent_at.is_(None))
        .with_for_update(skip_locked=True)
    )
    if message is None:  # sent meanwhile by another sender
        return
    person = db.session.get(Person, message.person_id)
    if not (person and person.email):
        _give_up(message, now, "The person has no email address.", report)
        db.session.commit()
        return

    try:
        smtp.send_message(_compose(message, person, settings))
    except smtplib.SMTPServerDisconnected as exc:
        raise ServerUnreachable(f"Mail server went away: {_describe(exc)}") from exc
    except smtplib.SMTPException as exc:  # an answer of the server (SMTPException is an OSError)
        _failed(message, now, exc, settings, report)
    except OSError as exc:
        raise ServerUnreachable(f"Mail server went away: {_describe(exc)}") from exc
    else:
        message.sent_at, message.last_error = utcnow(), None
        message.attempts += 1
        report.sent += 1
        logger.info("outbox message %s (%s) sent", message.id, message.kind)
    db.session.commit()


def _failed(message, now, exc: smtplib.SMTPException, settings, report: SendReport) -> None:
    """A refusal by the server: 5xx is for good after max_attempts; 4xx is tried again."""
    message.attempts += 1
    code = getattr(exc, "smtp_code", None) or _first_code(exc)
    if code is not None and code >= 500 and message.attempts >= settings.max_attempts:
        _give_up(message, now, _describe(exc), report, counted=True)
        return
    message.last_error = _describe(exc)[:ERROR_LENGTH]
    message.next_attempt_at = now + _wait(message.attempts)
    report.retrying += 1
    logger.warning("outbox message %s refused (%s, attempt %s)", message.id, code, message.attempts)


def _give_up(message, now, error: str, report: SendReport, *, counted: bool = False) -> None:
    if not counted:
        message.attempts += 1
    message.failed_at, message.last_error = now, error[:ERROR_LENGTH]
    report.given_up += 1
    logger.warning("outbox message %s given up after %s attempts", message.id, message.attempts)


def _retry_later(ids: list[int], now, error: str, report: SendReport) -> None:
    """The server is out of reach: every message of the run is counted and waits."""
    for message in db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.id.in_(ids), OutboxMessage.sent_at.is_(None))
    ):
        message.attempts += 1
        message.last_error = error[:ERROR_LENGTH]
        message.next_attempt_at = now + _wait(message.attempts)
        report.retrying += 1
    report.errors.append(error)
    db.session.commit()


def _wait(attempts: int) -> timedelta:
    return min(FIRST_WAIT * 2 ** max(attempts - 1, 0), LONGEST_WAIT)


def _compose(message: OutboxMessage, person: Person, settings: MailSettings) -> EmailMessage:
    activity = db.session.get(Activity, message.activity_id) if message.activity_id else None
    subject, text = _wording(message, activity)
    mail = EmailMessage()
    mail["From"] = settings.from_address
    mail["To"] = formataddr((person.full_name, person.email))
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(idstring=f"outbox-{message.id}")
    mail.set_content(f"Hello {person.first_name},\n\n{text}\n\n-- \nKursa\n")
    return mail


def _wording(message: OutboxMessage, activity: Activity | None) -> tuple[str, str]:
    payload = message.payload or {}
    if activity is None and payload.get("subject") and payload.get("text"):
        # A notice about something other than a course (a held sync run) brings its own words:
        # portal does not import the packages that write them.
        return payload["subject"], payload["text"]
    title = activity.title if activity else "your course"
    when = ""
    if activity is not None:
        zone = zone_of(db.session.get(Customer, activity.customer_id))
        when = f"{shown(activity.starts_at, zone)} - {shown(activity.ends_at, zone)}"
        if activity.location:
            when += f", {activity.location}"
    wording = {
        "signup.registered": (f"Signed up: {title}", f"You have a seat at {title}, {when}."),
        "signup.waitlisted": (
            f"On the waiting list: {title}",
            f"All seats at {title} ({when}) are taken. You are number "
            f"{payload.get('position')} on the waiting list; we write when a seat is yours.",
        ),
        "signup.promoted": (
            f"A seat is yours: {title}",
            f"A seat came free at {title}, {when}. It is yours now.",
        ),
        "activity.cancelled": (
            f"Cancelled: {title}",
            f"{title} ({when}) is cancelled by the organiser."
            + (f"\n\nReason: {payload['reason']}" if payload.get("reason") else ""),
        ),
    }
    return wording.get(message.kind, (f"Kursa: {title}", f"News about {title}, {when}."))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        detail = exc.smtp_error
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return f"{exc.smtp_code} {detail}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(f"{code} {msg.decode('utf-8', 'replace')}" for code, msg in _refusals(exc))
    return f"{type(exc).__name__}: {exc}"


def _first_code(exc) -> int | None:
    for code, _ in _refusals(exc):
        return code
    return None


def _refusals(exc):
    return list(getattr(exc, "recipients", {}).values())


def _kind(exc: BaseException) -> str:
    """For the log: the kind of error and the SMTP code, never an address."""
    return f"{type(exc).__name__} {getattr(exc, 'smtp_code', '')}".strip()


@click.group("outbox", help="Notifications waiting to be sent by mail.")
def outbox_cli():
    pass


@outbox_cli.command("send")
@click.option("--limit", type=int, default=200, show_default=True, help="Messages per run.")
def send_command(limit):
    """Send the due messages once (run it from cron or the scheduler every minute or so)."""
    settings = mail_settings(current_app.config["KURSA"])
    if settings is None:
        click.echo(f"Mail is off ([mail] host is empty): {pending_count()} messages wait.")
        return
    report = send_pending(settings, limit=limit)
    click.echo(
        f"{report.sent} sent, {report.retrying} to retry, {report.given_up} given up, "
        f"{pending_count()} waiting."
    )
    for error in report.errors:
        click.echo(error, err=True)
    if report.errors:
        raise SystemExit(1)


@outbox_cli.command("failed")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def failed_command(as_json):
    """List the messages given up: id, kind, created, attempts, last error (no address, no text)."""
    rows = [
        {
            "id": message.id,
            "kind": message.kind,
            "created_at": message.created_at.isoformat(timespec="seconds"),
            "attempts": message.attempts,
            "last_error": hide_addresses(message.last_error),
        }
        for message in failed_messages()
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("No message was given up.")
    for row in rows:
        click.echo(
            f"{row['id']}  {row['kind']}  {row['created_at']}  "
            f"{row['attempts']} attempts  {row['last_error']}"
        )


def hide_addresses(text: str | None) -> str | None:
    """The text with every mail address replaced by "[address]" (personal data)."""
    return text and AN_ADDRESS.sub("[address]", text)


@outbox_cli.command("retry")
@click.argument("message_id", type=ID)
def retry_command(message_id):
    """Put given-up message MESSAGE_ID back in the queue (sent by the next `send`)."""
    if retry_message(message_id) is None:
        click.echo(f"No given-up message {message_id}.", err=True)
        raise SystemExit(1)
    db.session.commit()
    click.echo(f"Message {message_id} is back in the queue.")
