"""Local logins of platform admins: hashed, locked after repeated failures, audited."""

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from portal.accounts.models import Account, LoginSession
from portal.accounts.operations import authenticate, create_admin, set_password
from portal.core.audit import AuditEntry
from portal.core.db import db, utcnow
from portal.core.errors import UserError
from tests.conftest import ADMIN_PASSWORD

LOCKOUT = timedelta(minutes=15)


def login(username, password):
    return authenticate(username, password, max_failures=3, lockout=LOCKOUT)


def test_password_is_stored_hashed(admin):
    assert ADMIN_PASSWORD not in admin.password_hash
    assert admin.password_hash.startswith(("scrypt:", "pbkdf2:"))


def test_right_password_logs_in_and_is_audited(admin):
    assert login("ROOT-ADMIN", ADMIN_PASSWORD) == admin
    actions = db.session.scalars(select(AuditEntry.action)).all()
    assert "login.local" in actions


def test_three_failures_lock_the_account_even_for_the_right_password(admin):
    for _ in range(3):
        assert login("root-admin", "wrong password here") is None
    assert admin.locked_until > utcnow()
    assert login("root-admin", ADMIN_PASSWORD) is None
    refused = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "login.refused"))
    assert [e.details["reason"] for e in refused] == ["password"] * 3 + ["locked"]


def test_lock_ends_after_the_lockout(admin):
    for _ in range(3):
        login("root-admin", "wrong password here")
    admin.locked_until = utcnow() - timedelta(seconds=1)
    assert login("root-admin", ADMIN_PASSWORD) == admin


def test_a_right_password_is_refused_once_a_guess_at_the_same_time_locked_the_account(admin):
    """The lock is read as the database holds it after the hash check, not as it was read
    before (a parallel guess may have locked the account in the meantime)."""
    assert admin.locked_until is None  # what this login read before its hash check
    db.session.execute(
        update(Account)
        .where(Account.id == admin.id)
        .values(locked_until=utcnow() + LOCKOUT)
        .execution_options(synchronize_session=False)
    )

    assert login("root-admin", ADMIN_PASSWORD) is None
    db.session.refresh(admin)
    assert admin.last_login_at is None and admin.locked_until > utcnow()


def test_unknown_account_is_refused(app):
    assert login("nobody", "whatever password") is None


def test_short_password_and_duplicate_name_are_refused(admin):
    with pytest.raises(UserError, match="12 characters"):
        create_admin("other", "short", actor="test")
    with pytest.raises(UserError, match="exists already"):
        create_admin("Root-Admin", "another long password", actor="test")
    assert len(db.session.scalars(select(Account)).all()) == 1


def live_session(account: Account) -> str:
    now = utcnow()
    row = LoginSession(
        id=secrets.token_urlsafe(16),
        account_id=account.id,
        kind="local",
        created_at=now,
        last_seen_at=now,
    )
    db.session.add(row)
    db.session.flush()
    return row.id


def test_a_new_password_ends_the_accounts_sessions_but_the_one_kept(admin):
    own, other = live_session(admin), live_session(admin)

    set_password(admin, "a brand new long password", actor="test", keep_session=own)

    db.session.expire_all()
    ended = dict(db.session.execute(select(LoginSession.id, LoginSession.end_reason)).all())
    assert ended == {own: "", other: "password_set"}
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "account.password_set"))
    assert entry.details == {"sessions_ended": 1}


def test_flask_account_set_password_ends_the_accounts_sessions(app, admin, monkeypatch):
    session_id = live_session(admin)
    db.session.commit()
    monkeypatch.setenv("NEW_PW", "a brand new long password")

    result = app.test_cli_runner().invoke(
        args=["account", "set-password", "root-admin", "--password-env", "NEW_PW"]
    )

    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert db.session.get(LoginSession, session_id).end_reason == "password_set"
