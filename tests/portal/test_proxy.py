"""[web] trusted_proxies: client address, scheme and host from X-Forwarded-* only when trusted."""

import pytest
from flask import jsonify, request, url_for

import config
from app import create_app
from portal.core.db import db
from tests.conftest import empty_tables, settings_for

FORGED = {
    "X-Forwarded-For": "198.51.100.7, 203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "kursa.example.test",
}


def app_behind(hops: int, url: str = "sqlite://"):
    """A portal with `hops` trusted proxies and a page that shows what it believes."""
    app = create_app(settings_for(url, web={"trusted_proxies": hops}), environ={})
    app.config.update(TESTING=True)

    @app.get("/_seen")
    def seen():
        return jsonify(
            address=request.remote_addr,
            secure=request.is_secure,
            external=url_for("accounts.login", _external=True),
        )

    return app


def seen_from(app, headers: dict) -> dict:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.0.0.5"
    return client.get("/_seen", headers=headers).get_json()


def test_without_trusted_proxies_forwarded_headers_are_ignored():
    seen = seen_from(app_behind(0), FORGED)

    assert seen == {"address": "10.0.0.5", "secure": False, "external": "http://localhost/login"}


def test_one_trusted_proxy_gives_the_last_hop_scheme_and_host():
    seen = seen_from(app_behind(1), FORGED)

    assert seen == {
        "address": "203.0.113.9",
        "secure": True,
        "external": "https://kursa.example.test/login",
    }


def test_two_trusted_proxies_give_the_hop_before_them():
    seen = seen_from(app_behind(2), FORGED)

    assert seen["address"] == "198.51.100.7"


@pytest.mark.parametrize("hops", [-1, 11])
def test_a_wrong_hop_count_fails_at_start(hops):
    with pytest.raises(config.ConfigError, match="web.trusted_proxies"):
        create_app(settings_for("sqlite://", web={"trusted_proxies": hops}), environ={})


@pytest.fixture
def proxied_app(engine_app, database_url):
    """The engine's database behind one trusted proxy, with a login start limit of 2."""
    app = app_behind(1, str(engine_app.config["SQLALCHEMY_DATABASE_URI"]))
    app.config["KURSA"]["sso"]["login_starts_per_minute"] = 2
    with app.app_context():
        yield app
        db.session.remove()
        empty_tables()
        db.engine.dispose()


def test_login_starts_are_counted_per_real_client_behind_the_proxy(proxied_app):
    def start(client_address: str) -> int:
        client = proxied_app.test_client()
        client.environ_base["REMOTE_ADDR"] = "10.0.0.5"  # always the proxy
        headers = {"X-Forwarded-For": client_address}
        return client.get("/sso/acme/none/login", headers=headers).status_code

    assert [start("198.51.100.7") for _ in range(3)] == [404, 404, 429]
    assert start("198.51.100.8") == 404
