"""[web] login_attempts_per_minute: the login page's two forms, per client, 429 above."""

from datetime import timedelta

import pytest
from flask import g
from sqlalchemy import func, select

import config
from app import create_app
from portal.core import ratelimit
from portal.core.db import db, utcnow
from portal.core.ratelimit import RateLimitHit, allow, purge_rate_limit_hits
from tests.conftest import ADMIN_PASSWORD, csrf_token, settings_for


@pytest.fixture
def limit(app, monkeypatch):
    monkeypatch.setitem(app.config["KURSA"]["web"], "login_attempts_per_minute", 3)


def from_address(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def fresh_token(client) -> str:
    """The test's app context (and its `g`) outlives requests: drop another client's token."""
    g.pop("csrf_token", None)
    return csrf_token(client, "/login")


def post_email(client, email="ida.lund@nowhere.test"):
    return client.post("/login", data={"email": email, "csrf_token": fresh_token(client)})


def post_password(client, username, password):
    data = {"username": username, "password": password, "csrf_token": fresh_token(client)}
    return client.post("/login", data=data)


def test_email_form_over_the_limit_is_429_for_that_address_only(app, limit):
    first, second = from_address(app, "192.0.2.10"), from_address(app, "192.0.2.20")
    assert [post_email(first).status_code for _ in range(3)] == [200, 200, 200]

    refused = post_email(first)

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert "Wait a minute and try again" in refused.get_data(as_text=True)
    assert post_email(second).status_code == 200


def test_password_form_is_limited_per_address_before_the_password_is_checked(app, admin, limit):
    client = from_address(app, "192.0.2.10")
    assert [post_password(client, admin.username, "wrong").status_code for _ in range(3)] == [
        200
    ] * 3

    refused = post_password(client, admin.username, ADMIN_PASSWORD)

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    db.session.refresh(admin)
    assert admin.failed_logins == 3  # the refused attempt never reached the account
    assert (
        post_password(from_address(app, "192.0.2.20"), admin.username, ADMIN_PASSWORD).status_code
        == 302
    )


def test_both_forms_share_one_count_and_pages_are_not_counted(app, limit):
    client = from_address(app, "192.0.2.10")
    for _ in range(5):
        assert client.get("/login").status_code == 200
    post_email(client)
    post_password(client, "nobody", "wrong")
    post_email(client)

    assert post_password(client, "nobody", "wrong").status_code == 429


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("192.0.2.10", "192.0.2.10"),
        ("2001:db8:1:2::10", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.10", "192.0.2.10"),
        ("fe80::1%eth0", "fe80::/64"),
        ("", "unknown"),
        ("not an address", "not an address"),
    ],
)
def test_a_client_is_an_ipv4_address_or_an_ipv6_64(address, counted_as):
    assert ratelimit.client_of(address) == counted_as


def test_old_hits_stop_counting_and_are_purged(app, monkeypatch):
    now = utcnow()
    monkeypatch.setattr(ratelimit, "utcnow", lambda: now - timedelta(seconds=61))
    assert allow("login-form", "192.0.2.10", 1)
    assert allow("sso-login-start", "192.0.2.10", 1)
    monkeypatch.setattr(ratelimit, "utcnow", lambda: now)

    assert allow("login-form", "192.0.2.10", 1)  # the old one no longer counts
    assert purge_rate_limit_hits() == 1  # the quiet scope's row
    assert db.session.scalar(select(func.count(RateLimitHit.id))) == 1


def test_a_wrong_limit_fails_at_start():
    with pytest.raises(config.ConfigError, match="web.login_attempts_per_minute must be positive"):
        create_app(settings_for("sqlite://", web={"login_attempts_per_minute": 0}), environ={})
