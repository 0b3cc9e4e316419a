"""Old login sessions are purged: begun more than the lifetime and a day ago, whatever state."""

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.accounts import sessions
from portal.accounts.models import LoginSession
from portal.core.db import db, utcnow
from portal.core.ratelimit import RateLimitHit


@pytest.fixture
def session_begun(app, admin, monkeypatch):
    monkeypatch.setitem(app.config["KURSA"]["web"], "session_lifetime_minutes", 120)

    def make(ago: timedelta, ended: bool = False) -> str:
        begun = utcnow() - ago
        row = LoginSession(
            id=secrets.token_urlsafe(16),
            account_id=admin.id,
            kind="local",
            created_at=begun,
            last_seen_at=begun,
            ended_at=begun + timedelta(minutes=5) if ended else None,
            end_reason="logout" if ended else None,
        )
        db.session.add(row)
        db.session.commit()
        return row.id

    return make


def remaining() -> set[str]:
    db.session.expire_all()
    return set(db.session.scalars(select(LoginSession.id)))


def test_only_sessions_past_lifetime_and_a_day_are_purged(app, session_begun):
    live = session_begun(timedelta(minutes=10))
    ended_today = session_begun(timedelta(hours=3), ended=True)
    expired_recently = session_begun(timedelta(hours=25))  # 2 h lifetime + 1 day = 26 h
    old_ended = session_begun(timedelta(hours=27), ended=True)
    old_never_ended = session_begun(timedelta(days=30))

    assert sessions.purge_sessions() == 2
    db.session.commit()

    assert remaining() == {live, ended_today, expired_recently}
    assert not {old_ended, old_never_ended} & remaining()


def test_the_scheduled_job_purges_sessions_and_stale_rate_limit_counts(app, session_begun):
    session_begun(timedelta(days=2))
    db.session.add(
        RateLimitHit(
            scope="login-form",
            client_address="192.0.2.1",
            created_at=utcnow() - timedelta(minutes=5),
        )
    )
    db.session.commit()
    [job] = [
        job for job in app.extensions["kursa_interval_jobs"] if job[0] == "login-sessions-purge"
    ]

    assert job[1] == 3600
    assert job[2]() == (1, 1)
    db.session.rollback()  # what the job committed is there for any session
    assert remaining() == set()
    assert db.session.scalar(select(RateLimitHit.id)) is None


def test_the_command_purges_and_says_how_many(app, session_begun):
    kept = session_begun(timedelta(hours=1))
    session_begun(timedelta(days=3), ended=True)

    result = app.test_cli_runner().invoke(args=["account", "purge-sessions"])

    assert result.exit_code == 0, result.output
    assert "1 login session(s) and 0 rate-limit count(s) purged." in result.output
    assert remaining() == {kept}
