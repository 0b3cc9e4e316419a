"""Server-side login sessions: lifetime, idle timeout and logout for every kind of login.

Flask's cookie is signed but cannot be revoked, so it carries only the id of a LoginSession
row. Every request looks the row up: an ended row, an expired lifetime or a too-long pause
logs the browser out, whichever device holds the cookie. SSO packages register a logout
handler per login kind (`add_logout_handler`) so that portal needs no import of sso.
"""

import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import Flask, current_app, g, session
from flask_login import login_user, logout_user
from sqlalchemy import delete, select, update

from portal.accounts.models import Account, LoginSession
from portal.core.db import db, utcnow
from portal.core.ratelimit import purge_rate_limit_hits

logger = logging.getLogger(__name__)
SESSION_KEY = "kursa_sid"
# last_seen_at is written at most this often, so reading pages costs no write each time.
TOUCH_EVERY = timedelta(seconds=30)
# Ended and expired rows are kept this long past the lifetime (to explain a recent logout),
# then purged.
PURGE_GRACE = timedelta(days=1)
PURGE_JOB = "login-sessions-purge"
PURGE_EVERY_SECONDS = 3600
# A handler gets the ended LoginSession and returns where to send the browser (the IdP's
# logout address) or None when Kursa's own logout is all there is.
LogoutHandler = Callable[[LoginSession], str | None]


def init_app(app: Flask) -> None:
    app.extensions["kursa_logout_handlers"] = {}
    app.before_request(_check_session)


def add_logout_handler(app: Flask, kind: str, handler: LogoutHandler) -> None:
    """Let a login kind (saml, oidc) end the provider's session too when Kursa's ends."""
    app.extensions["kursa_logout_handlers"][kind] = handler


def start_session(account: Account, kind: str, **sso) -> LoginSession:
    """Log `account` in with a fresh server-side session; the cookie gets only its id.

    `sso` holds provider_id, name_id, name_id_format, session_index or id_token.
    The caller commits (before the response is sent, so the next request finds the row);
    the row is not flushed here, so the commit writes it with the login's other rows at once.
    A live session the cookie named before ends: a second login in the same browser (an
    employee after an admin on a shared computer) must not leave the first one usable with
    a copy of the earlier cookie.
    """
    # TODO: a SAML response posted from an IdP on another site carries no SameSite=Lax
    # cookie, so the session it replaces is unknown here and lives on until its idle timeout;
    # recording the session at the login start (a SamlRequest column) would close that.
    previous = current_session()
    if previous is not None:
        end_session(previous, "new_login")
    now = utcnow()
    found = LoginSession(
        id=secrets.token_urlsafe(32),
        account_id=account.id,
        kind=kind,
        created_at=now,
        last_seen_at=now,
        **sso,
    )
    db.session.add(found)
    session.clear()  # nothing from before the login is carried into it
    g.pop("csrf_token", None)  # Flask-WTF's cached token belonged to the cleared session
    session[SESSION_KEY] = found.id
    session.permanent = True
    login_user(account)
    g.login_session = found
    logger.info("account %s logged in (%s session)", account.id, kind)
    return found


def current_session() -> LoginSession | None:
    """The live LoginSession of this request, checked by _check_session."""
    return g.get("login_session")


def load_account(account_id: str) -> Account | None:
    """Flask-Login's user loader: the account only while its server-side session lives."""
    found = current_session()
    if found is None or str(found.account_id) != str(account_id):
        return None
    return db.session.get(Account, found.account_id)


def end_current_session(reason: str = "logout") -> str | None:
    """End this browser's login; return the provider's logout address when it has one."""
    found = current_session()
    target = None
    if found is not None:
        end_session(found, reason)
        handler = current_app.extensions["kursa_logout_handlers"].get(found.kind)
        if handler is not None:
            target = handler(found)
    logout_user()
    session.clear()
    g.login_session = None
    return target


def end_session(found: LoginSession, reason: str) -> None:
    if found.ended_at is None:
        found.ended_at = utcnow()
        found.end_reason = reason
        logger.info("session of account %s ended: %s", found.account_id, reason)


def end_sessions(provider_id: int, name_id: str, session_index: str = "") -> int:
    """End the live sessions of a provider's NameID (all of them, or the one session index).

    The IdP's logout request names the person the way it knows them; every device's cookie
    stops working at its next request. Returns how many sessions ended.
    """
    query = update(LoginSession).where(
        LoginSession.provider_id == provider_id,
        LoginSession.name_id == name_id,
        LoginSession.ended_at.is_(None),
    )
    if session_index:
        query = query.where(LoginSession.session_index == session_index)
    ended = db.session.execute(query.values(ended_at=utcnow(), end_reason="idp_logout"))
    logger.info("provider %s logout ended %s session(s)", provider_id, ended.rowcount)
    return ended.rowcount


def end_account_sessions(account_id: int, reason: str, *, keep: str | None = None) -> int:
    """End every live session of the account but the one whose id is `keep` (the session of
    the page that asked, if any); returns how many ended. Flushes; the caller commits."""
    query = update(LoginSession).where(
        LoginSession.account_id == account_id, LoginSession.ended_at.is_(None)
    )
    if keep:
        query = query.where(LoginSession.id != keep)
    ended = db.session.execute(query.values(ended_at=utcnow(), end_reason=reason)).rowcount
    logger.info("account %s: %s session(s) ended (%s)", account_id, ended, reason)
    return ended


def end_provider_sessions(provider_id: int, reason: str, *, forget: bool = False) -> int:
    """End every live session the provider logged in (it was disabled or deleted); returns
    how many ended. Flushes; the caller commits.

    `forget` also takes the provider's id off all its session rows, ended ones included: the
    provider is being deleted, and SQLite may give its id to the next provider added, which
    must not find the sessions another provider vouched for (to send their logout to).
    """
    mine = LoginSession.provider_id == provider_id
    ended = db.session.execute(
        update(LoginSession)
        .where(mine, LoginSession.ended_at.is_(None))
        .values(ended_at=utcnow(), end_reason=reason)
    ).rowcount
    if forget:
        db.session.execute(update(LoginSession).where(mine).values(provider_id=None))
    logger.info("provider %s: %s session(s) ended (%s)", provider_id, ended, reason)
    return ended


def _check_session() -> None:
    """Before each request: load the session row of the cookie and end it when it is over."""
    g.login_session = None
    g.pop("_login_user", None)  # Flask-Login's cache; an app context may outlive a request
    sid = session.get(SESSION_KEY)
    if not sid:
        return
    found = db.session.scalar(select(LoginSession).where(LoginSession.id == sid[:64]))
    now = utcnow()
    reason = _over(found, now) if found is not None else "unknown"
    if reason:
        if found is not None and found.ended_at is None:
            end_session(found, reason)
            db.session.commit()
        session.pop(SESSION_KEY, None)
        session.pop("_user_id", None)
        return
    if now - found.last_seen_at >= TOUCH_EVERY:
        found.last_seen_at = now
        db.session.commit()
    g.login_session = found


def _over(found: LoginSession, now: datetime) -> str:
    """Why the session may no longer be used ("" while it may)."""
    if found.ended_at is not None:
        return found.end_reason or "ended"
    web = current_app.config["KURSA"]["web"]
    if now >= found.created_at + timedelta(minutes=web["session_lifetime_minutes"]):
        return "lifetime"
    if now >= found.last_seen_at + timedelta(minutes=web["session_idle_minutes"]):
        return "idle"
    return ""


def purge_sessions(now: datetime | None = None) -> int:
    """Delete login sessions begun more than the lifetime and a day ago; returns how many.

    Such a row is over whatever happened to it (ended, expired, idle), so nothing reads it
    again. Flushes; the caller commits.
    """
    lifetime = timedelta(minutes=current_app.config["KURSA"]["web"]["session_lifetime_minutes"])
    cutoff = (now or utcnow()) - lifetime - PURGE_GRACE
    purged = db.session.execute(delete(LoginSession).where(LoginSession.created_at < cutoff))
    logger.info("purged %s login session(s) begun before %s", purged.rowcount, cutoff)
    return purged.rowcount


def purge_and_commit() -> tuple[int, int]:
    """The scheduler's job: old login sessions and rate-limit hits a quiet scope left behind."""
    try:
        counts = purge_sessions(), purge_rate_limit_hits()
        db.session.commit()
    except Exception:
        db.session.rollback()
        logger.exception("login sessions could not be purged")
        return 0, 0
    return counts


def register_purge_job(app: Flask) -> None:
    """Let the scheduler (sync's, which portal does not import) run the purge every hour."""
    jobs = app.extensions.setdefault("kursa_interval_jobs", [])
    jobs.append((PURGE_JOB, PURGE_EVERY_SECONDS, purge_and_commit))
