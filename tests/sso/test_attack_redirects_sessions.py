"""Open redirects through `next` (login page, SSO login start -> ACS), home realm discovery
input, and session lifetime/idle/logout. A failing test is a finding."""

from datetime import timedelta
from urllib.parse import urljoin, urlsplit

import pytest

from portal.accounts.sessions import SESSION_KEY
from portal.core.db import db
from sso.domains import set_email_domains
from tests.conftest import csrf_token
from tests.sso.conftest import BASE_URL, post_acs, start_login
from tests.sso.test_saml_logout import PAGE, log_in

# Locations a browser resolves to another site although they start with one "/".
TRICKS = ["/\\evil.test/x", "/\t/evil.test/x", "/\n/evil.test/x", "/\\/evil.test/x"]


def browser_host(location: str) -> str:
    """The host a browser goes to for `location` on a Kursa page (WHATWG URL rules: tab, CR
    and LF are removed, a backslash is a slash in http(s) URLs)."""
    cleaned = "".join(c for c in location if c not in "\t\r\n").replace("\\", "/")
    return urlsplit(urljoin(BASE_URL + "/login", cleaned)).hostname


@pytest.mark.parametrize("target", TRICKS)
def test_sso_login_next_does_not_redirect_off_site_after_the_acs(
    app, client, acme_with_idp, idp, target
):
    acme_with_idp()
    started = start_login(client, next_url=target.replace("\t", "%09").replace("\n", "%0A"))
    answer = post_acs(client, idp.respond(client, started.request_id))
    assert answer.status_code == 302
    assert browser_host(answer.headers["Location"]) == "kursa.test", answer.headers["Location"]


@pytest.mark.parametrize("target", TRICKS)
def test_login_page_next_does_not_redirect_a_logged_in_user_off_site(admin_client, target):
    encoded = target.replace("\\", "%5C").replace("\t", "%09").replace("\n", "%0A")
    answer = admin_client.get(f"/login?next={encoded}")
    assert answer.status_code == 302
    assert browser_host(answer.headers["Location"]) == "kursa.test", answer.headers["Location"]


@pytest.mark.parametrize("target", TRICKS)
def test_home_realm_discovery_next_does_not_lead_off_site(app, client, acme_with_idp, idp, target):
    _, provider = acme_with_idp()
    set_email_domains(provider, ["acme.test"], actor="t")
    db.session.commit()
    encoded = target.replace("\\", "%5C").replace("\t", "%09").replace("\n", "%0A")
    page = f"/login?next={encoded}"
    answer = client.post(
        page, data={"email": "u1@acme.test", "csrf_token": csrf_token(client, page)}
    )
    assert answer.status_code == 302
    start = client.get(answer.headers["Location"])
    assert start.status_code == 302
    from tests.sso.conftest import _request_id

    request_id = _request_id(start.headers["Location"])
    done = post_acs(client, idp.respond(client, request_id))
    assert browser_host(done.headers["Location"]) == "kursa.test", done.headers["Location"]


@pytest.mark.parametrize(
    "email",
    [
        "u1@ACME.TEST",  # upper case: the same domain, leads to acme's provider (fine)
        "u1@unknown.test",
        "u1@acme.test.evil.test",
        "u1@аcme.test",  # Cyrillic a
        "u1@acme.test\u200b",
        "a" * 20000 + "@acme.test",
        "u1@" + "a." * 30000 + "test",
        "u1@@acme.test",
        "u1@acme.test@evil.test",
    ],
)
def test_home_realm_discovery_odd_input_is_handled(app, client, acme_with_idp, email):
    _, provider = acme_with_idp()
    set_email_domains(provider, ["acme.test"], actor="t")
    db.session.commit()
    answer = client.post(
        "/login", data={"email": email, "csrf_token": csrf_token(client, "/login")}
    )
    assert answer.status_code in (200, 302, 400, 413), answer.status_code
    if answer.status_code == 302:
        assert answer.headers["Location"].startswith("/sso/acme/corp/login"), email
        assert email.lower().endswith("@acme.test"), f"{email!r} led to a provider"


def test_cookie_of_a_logged_out_session_is_dead(app, client, acme_with_idp, idp):
    acme_with_idp()
    log_in(client, idp)
    stolen = client.get_cookie("session").value
    answer = client.post("/logout", data={"csrf_token": csrf_token(client, PAGE)})
    assert answer.status_code == 302
    other = app.test_client()
    other.set_cookie("session", stolen)
    assert other.get(PAGE).status_code == 302


def test_logout_without_csrf_token_is_refused(app, client, acme_with_idp, idp):
    acme_with_idp()
    session = log_in(client, idp)
    answer = client.post("/logout")
    db.session.refresh(session)
    assert answer.status_code == 400
    assert session.ended_at is None


@pytest.mark.parametrize(("field", "minutes"), [("last_seen_at", 61), ("created_at", 721)])
def test_idle_and_lifetime_end_the_session_even_while_active(
    app, client, acme_with_idp, idp, field, minutes
):
    acme_with_idp()
    session = log_in(client, idp)
    setattr(session, field, getattr(session, field) - timedelta(minutes=minutes))
    if field == "created_at":
        session.last_seen_at = session.last_seen_at  # active just now
    db.session.commit()
    assert client.get(PAGE).status_code == 302
    # the next request with the same cookie does not revive it
    session.last_seen_at = session.last_seen_at + timedelta(minutes=minutes)
    db.session.commit()
    assert client.get(PAGE).status_code == 302


def test_a_forged_session_id_in_a_re_signed_cookie_needs_the_secret(
    app, client, acme_with_idp, idp
):
    """A cookie signed with another secret carrying a live session id is ignored."""
    acme_with_idp()
    session = log_in(client, idp)
    import flask
    from flask.sessions import SecureCookieSessionInterface

    forger = flask.Flask("forger")
    forger.secret_key = "guessed"
    serializer = SecureCookieSessionInterface().get_signing_serializer(forger)
    other = app.test_client()
    other.set_cookie("session", serializer.dumps({SESSION_KEY: session.id, "_user_id": "1"}))
    assert other.get(PAGE).status_code == 302


@pytest.mark.parametrize(
    "query",
    [
        "state=x&post_logout_redirect_uri=https://evil.test/",
        "next=//evil.test&state=",
        "state=" + "a" * 5000,
    ],
)
def test_oidc_logged_out_redirects_only_to_the_login_page(app, client, acme_with_idp, query):
    acme_with_idp()
    answer = client.get(f"/sso/acme/oidc/logged-out?{query}")
    assert answer.status_code == 302
    assert browser_host(answer.headers["Location"]) == "kursa.test"
    assert urlsplit(answer.headers["Location"]).path == "/login"
