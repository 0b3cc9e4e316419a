"""Creating admins and checking local passwords, with lockout after repeated failures."""

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from portal.accounts.models import Account
from portal.accounts.sessions import end_account_sessions
from portal.core import audit
from portal.core.db import db, utcnow
from portal.core.errors import Conflict, UserError

logger = logging.getLogger(__name__)
# Checked when no account has a password under the name, so that takes a real check's time.
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


def set_password(
    account: Account, password: str, *, actor: str, keep_session: str | None = None
) -> None:
    """Give the account a new password and lift its lockout. Its sessions end (a new
    password is what is set when the old one leaked) but for `keep_session`, the id of the
    session of a page where the account sets its own password."""
    if len(password) < 12:
        raise UserError("The password must be at least 12 characters long.")

    account.password_hash = generate_password_hash(password)
    account.failed_logins = 0
    account.locked_until = None
    ended = end_account_sessions(account.id, "password_set", keep=keep_session)
    audit.record(actor, "account.password_set", "account", account.id, sessions_ended=ended)
    logger.info("account %s password set by %s", account.id, actor)


def authenticate(
    username: str, password: str, *, max_failures: int, lockout: timedelta, remote: str = ""
) -> Account | None:
    """The account when the password is right and the account may log in; otherwise None."""
    account = db.session.scalar(
        select(Account).where(func.lower(Account.username) == username.strip().lower())
    )
    known = account is not None and bool(account.password_hash)
    # Exactly one hash check, whatever follows: a name that is unknown, has no password or is
    # locked answers in the time of a wrong password, so the time tells no admin name.
    right = check_password_hash(account.password_hash if known else _DUMMY_HASH, password)
    if not known:
        logger.warning("local login refused: unknown account")
        return None
    now = utcnow()
    if account.locked_until and account.locked_until > now:
        return _refuse_locked(account)
    if not right or not account.is_enabled:
        if _count_failure(account, now, max_failures=max_failures, lockout=lockout) is None:
            return _refuse_locked(account)
        logger.warning("local login refused: wrong password for account %s", account.id)
        audit.record("anonymous", "login.refused", "account", account.id, reason="password")
        return None
    if not _clear_failures(account, now):
        return _refuse_locked(account)
    audit.record(account.actor, "login.local", "account", account.id)
    logger.info("account %s logged in with a local password", account.id)
    return account


# The two writes below decide on the row as the database holds it when they run, not as it was
# read before the hash check (about 60 ms): guesses sent at once each count, in turn, and
# one that passes its check after another has locked the account is refused.


def _count_failure(
    account: Account, now: datetime, *, max_failures: int, lockout: timedelta
) -> int | None:
    """Add one failure to an account that is not locked, and lock it at the limit; the count
    it reached (0 when this failure locked it), or None when it was locked already."""
    counted = db.session.scalar(
        update(Account)
        .where(Account.id == account.id, _unlocked(now))
        .values(failed_logins=Account.failed_logins + 1)
        .returning(Account.failed_logins)
        .execution_options(synchronize_session=False)
    )
    if counted is not None and counted >= max_failures:
        db.session.execute(
            update(Account)
            .where(Account.id == account.id)
            .values(failed_logins=0, locked_until=now + lockout)
            .execution_options(synchronize_session=False)
        )
        counted = 0
    db.session.expire(account, ["failed_logins", "locked_until"])
    return counted


def _clear_failures(account: Account, now: datetime) -> bool:
    """Record a login with the right password, unless the account is locked by now."""
    cleared = db.session.execute(
        update(Account)
        .where(Account.id == account.id, _unlocked(now))
        .values(failed_logins=0, locked_until=None, last_login_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.expire(account, ["failed_logins", "locked_until", "last_login_at"])
    return cleared == 1


def _unlocked(now: datetime):
    return or_(Account.locked_until.is_(None), Account.locked_until <= now)


def _refuse_locked(account: Account) -> None:
    logger.warning("local login refused: account %s is locked", account.id)
    audit.record("anonymous", "login.refused", "account", account.id, reason="locked")
    return None
