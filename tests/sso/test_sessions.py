"""Server-side login sessions: the cookie names a row; lifetime, idle timeout and logout end it."""

from datetime import timedelta

import pytest
from sqlalchemy import select

import config
from portal.accounts import sessions
from portal.accounts.models import LoginSession
from portal.core.db import db, utcnow
from tests.conftest import settings_for
from tests.sso.conftest import logged_in_account_id, post_acs, start_login

PAGE = "/roles/"


@pytest.fixture
def clock(monkeypatch):
    """Move the clock that sessions read (no sleeping)."""
    start = utcnow()
    state = {"now": start}
    monkeypatch.setattr(sessions, "utcnow", lambda: state["now"])

    def move(**delta) -> None:
        state["now"] = state["now"] + timedelta(**delta)

    return move


@pytest.fixture
def short_sessions(app, monkeypatch):
    web = app.config["KURSA"]["web"]
    monkeypatch.setitem(web, "session_lifetime_minutes", 120)
    monkeypatch.setitem(web, "session_idle_minutes", 30)


def only_session(client) -> LoginSession:
    db.session.expire_all()
    rows = db.session.scalars(select(LoginSession)).all()
    assert len(rows) == 1
    return rows[0]


def test_local_login_keeps_only_ids_in_the_cookie(admin_client, admin):
    with admin_client.session_transaction() as cookie:
        keys = set(cookie)
        sid = cookie[sessions.SESSION_KEY]
    row = only_session(admin_client)
    assert row.id == sid and row.account_id == admin.id and row.kind == "local"
    assert keys <= {
        sessions.SESSION_KEY,
        "_user_id",
        "_fresh",
        "_id",
        "csrf_token",
        "_flashes",
        "_permanent",
    }
    assert admin_client.get(PAGE).status_code == 200


def test_idle_session_ends(clock, short_sessions, admin_client):
    clock(minutes=29)
    assert admin_client.get(PAGE).status_code == 200
    clock(minutes=29)  # 58 minutes after login, 29 after the last request
    assert admin_client.get(PAGE).status_code == 200
    clock(minutes=31)
    answer = admin_client.get(PAGE)
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")
    row = only_session(admin_client)
    assert row.ended_at is not None and row.end_reason == "idle"
    assert logged_in_account_id(admin_client) is None


def test_session_lifetime_ends_an_active_session(clock, short_sessions, admin_client):
    for _ in range(4):
        clock(minutes=29)
        assert admin_client.get(PAGE).status_code == 200
    clock(minutes=5)  # 121 minutes after login
    assert admin_client.get(PAGE).status_code == 302
    assert only_session(admin_client).end_reason == "lifetime"


def test_logout_ends_the_session_on_every_device(app, admin_client):
    token = _token(admin_client)  # first: Flask-WTF caches a token per app context
    stolen = admin_client.get_cookie("session").value
    other = app.test_client()
    other.set_cookie("session", stolen)
    assert other.get(PAGE).status_code == 200

    answer = admin_client.post("/logout", data={"csrf_token": token})
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")

    assert other.get(PAGE).status_code == 302
    assert only_session(admin_client).end_reason == "logout"


def test_a_cookie_without_a_session_row_logs_nobody_in(app, admin, admin_client):
    with admin_client.session_transaction() as cookie:
        cookie.pop(sessions.SESSION_KEY)
    assert admin_client.get(PAGE).status_code == 302


def test_saml_login_keeps_name_id_and_session_index(client, acme_with_idp, idp):
    _, provider = acme_with_idp()
    started = start_login(client)
    assert post_acs(client, idp.respond(client, started.request_id)).status_code == 302
    row = only_session(client)
    assert (row.kind, row.provider_id, row.name_id) == ("saml", provider.id, "subject-u1")
    assert row.session_index  # pysaml2's IdP always sends one
    assert logged_in_account_id(client) == str(row.account_id)


@pytest.mark.parametrize(
    ("web", "message"),
    [
        ({"session_idle_minutes": 0}, "web.session_idle_minutes must be positive"),
        ({"session_lifetime_minutes": -5}, "web.session_lifetime_minutes must be positive"),
        (
            {"session_lifetime_minutes": 30, "session_idle_minutes": 60},
            "must not exceed web.session_lifetime_minutes",
        ),
    ],
)
def test_wrong_session_settings_fail_at_start(web, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load_config(environ={}, overrides=settings_for("sqlite://", web=web))


def _token(client) -> str:
    from tests.conftest import csrf_token

    return csrf_token(client, PAGE)
