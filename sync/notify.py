"""Telling HR when a run needs them: one outbox message per HR contact of the customer when a
run ends failed or held. The outbox (`flask outbox send`) mails them when mail is configured.
"""

import logging

from flask import current_app, has_request_context, request
from sqlalchemy import select

from portal.accounts.models import Role, RoleGrant
from portal.core.db import db
from portal.courses.models import OutboxMessage
from portal.directory.models import Customer, Person
from sync.models import RunStatus, SyncRun

logger = logging.getLogger(__name__)
NOTIFIED = {RunStatus.FAILED, RunStatus.HELD}


def notify_hr_contacts(run: SyncRun) -> int:
    """Queue a message about a failed or held run for each HR contact; flushes, never commits.

    HR contacts are the active persons with the HR role at the customer's root unit and an
    email address. Returns how many messages were queued.
    """
    if run.status not in NOTIFIED:
        return 0
    customer = db.session.get(Customer, run.customer_id)
    contacts = hr_contacts(customer)

    subject, text = _wording(run, customer, run_link(run.id))
    for person_id in contacts:
        db.session.add(
            OutboxMessage(
                kind=f"sync.run_{run.status}",
                person_id=person_id,
                payload={"run_id": run.id, "subject": subject, "text": text},
            )
        )
    db.session.flush()

    logger.info("sync run %s is %s: %s HR contacts notified", run.id, run.status, len(contacts))
    return len(contacts)


def hr_contacts(customer: Customer) -> list[int]:
    """Ids of the active persons holding the HR role at the customer's root, with an email."""
    query = (
        select(Person.id)
        .join(RoleGrant, RoleGrant.person_id == Person.id)
        .where(
            RoleGrant.role == Role.HR,
            RoleGrant.unit_id == customer.root_unit_id,
            Person.is_active.is_(True),
            Person.email.is_not(None),
            Person.email != "",
        )
        .distinct()
        .order_by(Person.id)
    )
    return list(db.session.scalars(query))


def run_link(run_id: int) -> str:
    """The run's report page: absolute with `[web] base_url` (or inside a request)."""
    path = current_app.url_map.bind("localhost").build("sync.run", {"run_id": run_id})
    base = current_app.config["KURSA"]["web"]["base_url"]
    if not base and has_request_context():
        base = request.host_url
    return f"{base.rstrip('/')}{path}"


def warn_if_links_are_relative(settings: dict) -> bool:
    """At start: mail is on but the portal's address is not known, so mails sent by the
    scheduler link to run reports relatively (the reader must find the portal). True if so."""
    if settings["mail"]["host"] and not settings["web"]["base_url"]:
        logger.warning(
            "mail is configured but [web] base_url is empty: links in mails sent outside a "
            "web request (failed or held sync runs) are relative; set base_url"
        )
        return True
    return False


def _wording(run: SyncRun, customer: Customer, link: str) -> tuple[str, str]:
    if run.status == RunStatus.HELD:
        return (
            f"Kursa: directory sync run #{run.id} of {customer.name} is held for approval",
            f"Run #{run.id} was held and nothing has changed yet. "
            f"{run.hold_reason or ''}\n\nLook at the planned changes and approve or leave "
            f"the run here: {link}",
        )
    return (
        f"Kursa: directory sync run #{run.id} of {customer.name} failed",
        f"Run #{run.id} failed and nothing was changed. {run.error or ''}\n\n"
        f"The report says what happened: {link}",
    )
