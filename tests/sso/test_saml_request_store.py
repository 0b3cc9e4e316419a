"""The outstanding AuthnRequests live in the database, not in the browser's cookie: an ACS
POST that arrives without the cookies of the browser that started the login (a SameSite
cookie dropped on the IdP's cross-site POST) succeeds, and a login started on one app
instance finishes on another one built with create_app on the same database."""

import pytest
from sqlalchemy import func, select

from app import create_app
from portal.accounts.models import Account, LoginSession
from portal.core.db import db
from sso.models import SamlRequest
from tests.conftest import settings_for
from tests.sso.conftest import BASE_URL, logged_in_account_id, post_acs, start_login
from tests.sso.test_saml_login import assert_refused, person_named


@pytest.fixture
def second_node(engine_app):
    """Another instance of the portal on the same database, as a second cluster node is."""
    sso = engine_app.config["KURSA"]["sso"]
    node = create_app(
        settings_for(
            engine_app.config["SQLALCHEMY_DATABASE_URI"],
            web={"base_url": BASE_URL},
            sso={key: sso[key] for key in ("key_file", "cert_file", "allow_private_addresses")},
        ),
        environ={},
    )
    node.config.update(TESTING=True)
    yield node
    with node.app_context():
        db.engine.dispose()  # no connection of this node outlives the test


def test_acs_without_the_starting_browsers_cookies_logs_in(app, client, acme_with_idp, idp):
    acme_with_idp()
    started = start_login(client, next_url="/courses")
    cookieless = app.test_client()  # the IdP's POST arrives without Kursa's cookies

    answer = post_acs(cookieless, idp.respond(client, started.request_id, username="u1"))

    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert answer.headers["Location"].endswith("/courses")  # next_url came from the database
    account = db.session.get(Account, int(logged_in_account_id(cookieless)))
    assert account.person_id == person_named("u1").id
    db.session.expire_all()
    assert db.session.get(SamlRequest, started.request_id).is_used


def test_a_login_started_on_one_node_finishes_on_another(
    app, client, acme_with_idp, idp, second_node
):
    acme_with_idp()
    started = start_login(client, next_url="/courses")  # node one
    other = second_node.test_client()

    answer = post_acs(other, idp.respond(client, started.request_id, username="u2"))

    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert answer.headers["Location"].endswith("/courses")
    account_id = logged_in_account_id(other)
    db.session.expire_all()
    assert db.session.get(Account, int(account_id)).person_id == person_named("u2").id
    assert db.session.get(SamlRequest, started.request_id).is_used
    assert db.session.scalar(select(func.count()).select_from(LoginSession)) == 1

    # The request is used for every node: a new answer to it posted to node one is refused.
    replay = post_acs(client, idp.respond(client, started.request_id, username="u2"))
    assert_refused(replay, client, "unknown_request")
