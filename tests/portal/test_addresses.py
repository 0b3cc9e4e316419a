"""Control characters in addresses and a NUL in forms: plain answers on every engine, and
nothing of what was typed in the log."""

import logging

import pytest

from portal.core.db import db
from tests.conftest import csrf_token


@pytest.mark.parametrize(
    "url",
    [
        "/login/ac%01me",
        "/login/acme%0a",
        "/sso/ac%1fme/corp/login",
        "/sso/acme/co%7frp/login",
        "/roles/?customer=ac%00me",
        "/persons?q=a%00b",
        "/login?next=/%00",
        "/login?cust%00omer=acme",
    ],
)
def test_a_control_character_in_a_path_or_a_nul_in_the_query_is_a_404(client, url):
    assert client.get(url).status_code == 404


def test_a_tab_in_a_query_value_is_no_concern_of_the_address(client):
    assert client.get("/login?customer=ac%09me").status_code == 200


def test_a_nul_no_form_checks_is_a_400_on_postgresql_without_the_value_in_the_log(
    app, admin_client, customer, caplog, monkeypatch
):
    """SQLite answers as for any unknown name; PostgreSQL refuses the NUL before sending it."""
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)  # answer as production
    caplog.set_level(logging.DEBUG)
    url = f"/roles/?customer={customer.slug}"
    data = {
        "username": "Typed\x00Name-7",
        "role": "hr",
        "csrf_token": csrf_token(admin_client, url),
    }

    answer = admin_client.post(url, data=data)

    expected = 400 if app.config["KURSA_ENGINE"] == "postgresql" else 404
    assert answer.status_code == expected
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "Typed" not in logged and "Name-7" not in logged
    assert admin_client.get(url).status_code == 200  # the session and transaction carry on


def test_failed_statements_are_logged_without_their_values(app):
    assert db.engine.hide_parameters
