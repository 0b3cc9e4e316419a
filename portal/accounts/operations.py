"""Creating admins and checking local passwords, with lockout after repeated failures."""

import logging
from datetime import timedelta

from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from portal.accounts.models import Account
from portal.core import audit
from portal.core.db import db, utcnow
from portal.core.errors import Conflict, UserError

logger = logging.getLogger(__name__)
# Compared against when the account does not exist, so both cases take the same time.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def create_admin(username: str, password: str, *, actor: str) -> Account:
    if len(password) < 12:
        raise UserError("The password must be at least 12 characters long.")
    if db.session.scalar(
        select(Account.id).where(func.lower(Account.username) == username.lower())
    ):
        raise Conflict(f"An account named {username!r} exists already.")
    account = Account(
        username=username, password_hash=generate_password_hash(password), is_platform_admin=True
    )
    db.session.add(account)
    db.session.flush()
    audit.record(actor, "account.created", "account", account.id, platform_admin=True)
    logger.info("platform admin account %s created by %s", account.id, actor)
    return account


def set_password(account: Account, password: str, *, actor: str) -> None:
    if len(password) < 12:
        raise UserError("The password must be at least 12 characters long.")
    account.password_hash = generate_password_hash(password)
    account.failed_logins = 0
    account.locked_until = None
    audit.record(actor, "account.password_set", "account", account.id)


def authenticate(
    username: str, password: str, *, max_failures: int, lockout: timedelta, remote: str = ""
) -> Account | None:
    """The account when the password is right and the account may log in; otherwise None."""
    account = db.session.scalar(
        select(Account).where(func.lower(Account.username) == username.strip().lower())
    )
    if account is None or not account.password_hash:
        check_password_hash(_DUMMY_HASH, password)
        logger.warning("local login refused: unknown account")
        return None
    now = utcnow()
    if account.locked_until and account.locked_until > now:
        logger.warning("local login refused: account %s is locked", account.id)
        audit.record("anonymous", "login.refused", "account", account.id, reason="locked")
        return None
    if not check_password_hash(account.password_hash, password) or not account.is_enabled:
        account.failed_logins += 1
        if account.failed_logins >= max_failures:
            account.locked_until = now + lockout
            account.failed_logins = 0
        logger.warning("local login refused: wrong password for account %s", account.id)
        audit.record("anonymous", "login.refused", "account", account.id, reason="password")
        return None
    account.failed_logins = 0
    account.locked_until = None
    account.last_login_at = now
    audit.record(account.actor, "login.local", "account", account.id)
    logger.info("account %s logged in with a local password", account.id)
    return account
