"""RP-initiated logout against the npm oidc-provider: Kursa's logout of an OIDC login ends
Kursa's session and sends the browser to the provider's end_session_endpoint with
id_token_hint, post_logout_redirect_uri and state; the provider's session ends too."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select

from portal.accounts.models import Account, LoginSession
from portal.accounts.sessions import SESSION_KEY
from portal.core.db import db
from tests.conftest import csrf_token
from tests.servers.oidc_provider import OidcProviderServer
from tests.sso import test_oidc
from tests.sso.conftest import BASE_URL
from tests.sso.test_oidc import CALLBACK, USERS, callback, person_named, start

LOGGED_OUT = f"{BASE_URL}/sso/acme/oidc/logged-out"
PAGE = "/courses/"
# The login fixtures of test_oidc, used with this module's provider (it allows logout).
acme_with_op = test_oidc.acme_with_op
flask = test_oidc.flask
fresh_caches = test_oidc.fresh_caches


@pytest.fixture(scope="module")
def op(tmp_path_factory):
    server = OidcProviderServer(
        tmp_path_factory.mktemp("oidc-provider-logout"),
        redirect_uri=CALLBACK,
        users=USERS,
        post_logout_redirect_uri=LOGGED_OUT,
    ).start()
    yield server
    server.stop()


def log_in(client, op, browser, login: str) -> LoginSession:
    answer = callback(client, op.sign_in(start(client), login, browser))
    assert answer.status_code == 302, answer.get_data(as_text=True)
    with client.session_transaction() as cookie:
        return db.session.get(LoginSession, cookie[SESSION_KEY])


def person_of(login: LoginSession):
    return db.session.get(Account, login.account_id).person_id


def single(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_without_logout_the_provider_session_stays(app, client, acme_with_op, op):
    """The control: the provider remembers ida, so a second login as bo is ida again."""
    acme_with_op()
    browser = requests.Session()
    log_in(client, op, browser, "ida")
    again = log_in(app.test_client(), op, browser, "bo")
    assert person_of(again) == person_named("u1").id


def test_logout_ends_kursa_and_provider_sessions(app, client, acme_with_op, op):
    acme_with_op()
    browser = requests.Session()
    session = log_in(client, op, browser, "ida")
    assert session.kind == "oidc" and session.id_token

    answer = client.post("/logout", data={"csrf_token": csrf_token(client, PAGE)})

    location = answer.headers["Location"]
    assert answer.status_code == 302 and location.startswith(f"{op.issuer}/session/end?")
    db.session.refresh(session)
    query = single(location)
    assert query["id_token_hint"] == session.id_token
    assert query["post_logout_redirect_uri"] == LOGGED_OUT
    assert query["state"] == session.logout_state
    assert session.end_reason == "logout"
    assert client.get(PAGE).status_code == 302

    back = op.sign_out(location, browser)
    assert back.startswith(LOGGED_OUT + "?") and single(back)["state"] == query["state"]
    done = client.get(back[len(BASE_URL) :])
    assert done.status_code == 302 and done.headers["Location"].startswith("/login")
    assert "You are logged out." in client.get("/login").get_data(as_text=True)
    db.session.refresh(session)
    assert session.logout_state is None  # used once
    # The provider forgot ida: this browser's next login asks who it is, and bo logs in.
    again = log_in(app.test_client(), op, browser, "bo")
    assert person_of(again) == person_named("u2").id


def test_an_unknown_logout_state_says_nothing(client, acme_with_op):
    acme_with_op()
    answer = client.get("/sso/acme/oidc/logged-out?state=made-up")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")
    assert "logged out" not in client.get("/login").get_data(as_text=True)
    assert db.session.scalars(select(LoginSession)).all() == []
