"""The rate limit on login starts: [sso] login_starts_per_minute per client, 429 above."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

import config
from portal.core import ratelimit
from portal.core.db import db, utcnow
from portal.core.ratelimit import RateLimitHit
from sso.models import SamlRequest
from tests.conftest import settings_for

LOGIN = "/sso/acme/corp/login"


@pytest.fixture
def limit(app, monkeypatch):
    monkeypatch.setitem(app.config["KURSA"]["sso"], "login_starts_per_minute", 3)


@pytest.fixture
def clock(monkeypatch):
    state = {"now": utcnow()}
    monkeypatch.setattr(ratelimit, "utcnow", lambda: state["now"])

    def move(**delta) -> None:
        state["now"] += timedelta(**delta)

    return move


def from_address(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_over_the_limit_is_429_for_that_address_only(app, acme_with_idp, limit, clock):
    acme_with_idp()
    first, second = from_address(app, "192.0.2.10"), from_address(app, "192.0.2.20")
    assert [first.get(LOGIN).status_code for _ in range(3)] == [302, 302, 302]

    refused = first.get(LOGIN)

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert "Wait a minute" in refused.get_data(as_text=True)
    assert db.session.scalar(select(func.count(SamlRequest.id))) == 3  # no request stored
    assert second.get(LOGIN).status_code == 302


def test_an_ipv6_client_is_counted_by_its_64(app, acme_with_idp, limit, clock):
    acme_with_idp()
    rotating = [from_address(app, f"2001:db8:1:2::{host:x}").get(LOGIN) for host in range(1, 5)]
    assert [answer.status_code for answer in rotating] == [302, 302, 302, 429]
    assert from_address(app, "2001:db8:1:3::1").get(LOGIN).status_code == 302  # the next /64


def test_the_limit_lifts_after_a_minute_and_old_rows_are_purged(app, acme_with_idp, limit, clock):
    acme_with_idp()
    client = from_address(app, "192.0.2.10")
    for _ in range(3):
        client.get(LOGIN)
    assert client.get(LOGIN).status_code == 429

    clock(seconds=61)

    assert client.get(LOGIN).status_code == 302
    assert db.session.scalar(select(func.count(RateLimitHit.id))) == 1


def test_unknown_providers_count_too(app, acme_with_idp, limit, clock):
    acme_with_idp()
    client = from_address(app, "192.0.2.10")
    assert [client.get("/sso/acme/nope/login").status_code for _ in range(3)] == [404] * 3
    assert client.get(LOGIN).status_code == 429


def test_a_wrong_limit_fails_at_start():
    from app import create_app

    with pytest.raises(config.ConfigError, match="sso.login_starts_per_minute must be positive"):
        create_app(settings_for("sqlite://", sso={"login_starts_per_minute": 0}), environ={})
