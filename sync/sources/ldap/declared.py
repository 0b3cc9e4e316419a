"""LDAP sources declared in the config file ([ldap_sources.<name>]), applied to the database.

An installation managed as code declares its sources in the file named by KURSA_CONFIG,
the bind password in the environment variable the table names. `flask directory source
apply-config` (and `flask scheduler run` at start) creates what is missing and updates what
differs, with the same checks as the page and the CLI. All sources apply, or none: one wrong
table names itself (ldap_sources.<name>.<key>) and changes nothing.

The file wins: the next apply undoes a change made on the page to a declared source. Sources
that are not declared are left alone, and a declared source that is removed from the file stays
in the database (disable or delete it on the page): removing a table should not silently stop
a customer's sync.
"""

import logging
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from portal.core.db import db
from portal.core.errors import FieldRefused, UserError
from portal.directory.queries import customer_by_slug
from sync.models import SyncSource
from sync.sources.ldap import operations, vault

logger = logging.getLogger(__name__)
ACTOR = "config"
SOURCE_KEYS = {"customer", "profile", "password_env", "schedule", "delta_schedule", "enabled"}


@dataclass(frozen=True)
class Applied:
    name: str
    outcome: Literal["created", "updated", "unchanged"]


class DeclaredSourceError(UserError):
    """A declared source cannot be applied. `setting` names the table or its key concerned
    (ldap_sources.<name>[.<key>]), and the message starts with it: "<setting>: <reason>";
    `message` replaces that when several keys are named at once."""

    def __init__(self, setting: str, reason: str = "", *, message: str = ""):
        super().__init__(message or f"{setting}: {reason}")
        self.setting = setting


def apply_declared(declared: dict[str, dict], environ) -> list[Applied]:
    """Create or update every declared source (flushes; the caller commits or rolls back)."""
    return [_apply_one(name, table, environ) for name, table in sorted(declared.items())]


def _apply_one(name: str, table: dict, environ) -> Applied:
    where = f"ldap_sources.{name}"
    customer = customer_by_slug(table["customer"])
    if customer is None:
        raise DeclaredSourceError(f"{where}.customer", f"no customer {table['customer']!r}.")
    password = environ.get(table["password_env"], "")
    if not password:
        raise DeclaredSourceError(
            f"{where}.password_env",
            f"the environment variable {table['password_env']} is empty "
            "or not set; put the bind password in it.",
        )
    settings = {key: value for key, value in table.items() if key not in SOURCE_KEYS}
    wanted = {
        "profile": table["profile"],
        "settings": settings,
        "schedule": table.get("schedule", operations.DEFAULT_SCHEDULE),
        "delta_schedule": table.get("delta_schedule") or None,
    }
    source = db_source(name)
    try:
        if source is None:
            source = operations.add_ldap_source(
                customer, name, password=password, actor=ACTOR, **wanted
            )
            outcome = "created"
        elif source.customer_id != customer.id:
            raise DeclaredSourceError(
                f"{where}.customer",
                f"the source {name!r} belongs to another customer; "
                "source names are unique, so choose another name.",
            )
        elif _differs(source, wanted, password):
            operations.update_ldap_source(source, password=password, actor=ACTOR, **wanted)
            outcome = "updated"
        else:
            outcome = "unchanged"
        enabled = table.get("enabled", True)
        if source.is_enabled != enabled:
            operations.set_enabled(source, enabled, actor=ACTOR)
            outcome = "updated" if outcome == "unchanged" else outcome
    except FieldRefused as exc:
        named = "; ".join(f"{where}.{each.field}: {each}" for each in exc.errors)
        raise DeclaredSourceError(f"{where}.{exc.errors[0].field}", message=named) from None
    except DeclaredSourceError:
        raise
    except UserError as exc:
        raise DeclaredSourceError(where, str(exc)) from None
    if outcome != "unchanged":
        logger.info("declared LDAP source %s %s", name, outcome)
    return Applied(name, outcome)


def db_source(name: str) -> SyncSource | None:
    return db.session.scalar(select(SyncSource).where(SyncSource.name == name))


def _differs(source: SyncSource, wanted: dict, password: str) -> bool:
    stored = {
        "profile": source.profile,
        "settings": source.settings,
        "schedule": source.schedule,
        "delta_schedule": source.delta_schedule,
    }
    if stored != wanted:
        return True
    try:
        return vault.decrypt(source.password_encrypted or "") != password
    except UserError:  # stored under another key: store it again
        return True
