"""Login sessions and the login page under attack, beyond test_attack_redirects_sessions:
what ends a live session (a provider disabled or deleted, an account disabled, a password
reset, a second login in the same browser), the admin password form (lockout under parallel
guesses, timing of a locked name, the rate limit per address), cookie flags, CSRF and logout
by GET, the OIDC post-logout return, and a logged-in employee at another customer's SSO
addresses. A failing test is a finding; the others pin down attacks that held."""

import logging
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import g
from saml2.saml import AUTHN_PASSWORD_PROTECTED, NAMEID_FORMAT_TRANSIENT, NameID
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from sqlalchemy import select

from portal.accounts import operations
from portal.accounts.models import Account, LoginSession
from portal.accounts.operations import set_password
from portal.accounts.sessions import SESSION_KEY
from portal.core.db import db
from sso import oidc
from sso.domains import set_email_domains
from sso.operations import delete_provider, set_provider_enabled
from tests.conftest import ADMIN_PASSWORD, csrf_token
from tests.servers.flawed_op import FlawedOp
from tests.sso.conftest import ACS, BASE_URL, PERSONS, SP_ENTITY, UNITS, post_acs, start_login
from tests.sso.providers import add_oidc_for
from tests.sso.test_oidc import USERS
from tests.sso.test_saml_logout import PAGE, log_in

ACME_CALLBACK = f"{BASE_URL}/sso/acme/oidc/callback"


def fresh_client(app, address: str = "192.0.2.10"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def fresh_token(client, url: str = "/login") -> str:
    """The test's app context (and its `g`) outlives requests: drop another client's token."""
    g.pop("csrf_token", None)
    return csrf_token(client, url)


def post_password(client, username: str, password: str):
    data = {"username": username, "password": password, "csrf_token": fresh_token(client)}
    return client.post("/login", data=data)


def live(session: LoginSession) -> bool:
    db.session.expire_all()
    return db.session.get(LoginSession, session.id).ended_at is None


# --- 1. What must end a live session ---------------------------------------------------------


def test_disabling_the_provider_ends_the_sessions_it_logged_in(app, client, acme_with_idp, idp):
    """An IT admin disables a provider (compromised IdP, customer leaving): a login under way
    there is refused already (docs: provider_disabled), but a login it finished a minute ago
    kept working for the whole session lifetime (12 hours)."""
    _, provider = acme_with_idp()
    session = log_in(client, idp)

    set_provider_enabled(provider, False, actor="test")
    db.session.commit()

    answer = client.get(PAGE)
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")
    assert not live(session)


def transient_response(idp, client, in_response_to: str, username: str = "u1") -> str:
    """A response whose NameID is transient: the login links no Identity, so the provider can
    be deleted afterwards."""
    response = idp.server(client).create_authn_response(
        {"uid": [username], "mail": [f"{username}@acme.test"]},
        in_response_to,
        ACS,
        SP_ENTITY,
        userid=username,
        name_id=NameID(format=NAMEID_FORMAT_TRANSIENT, text="_transient-1"),
        authn={"class_ref": AUTHN_PASSWORD_PROTECTED},
        sign_response=True,
        sign_assertion=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    return str(response)


def test_deleting_the_provider_ends_the_sessions_it_logged_in(app, client, acme_with_idp, idp):
    """A login with a transient NameID links nobody, so `flask sso delete` is allowed while
    its session is live; the session outlived the provider that vouched for it."""
    _, provider = acme_with_idp()
    started = start_login(client)
    assert post_acs(client, transient_response(idp, client, started.request_id)).status_code == 302
    assert client.get(PAGE).status_code == 200
    with client.session_transaction() as cookie:
        session = db.session.get(LoginSession, cookie[SESSION_KEY])

    delete_provider(provider, actor="test")
    db.session.commit()

    assert client.get(PAGE).status_code == 302
    assert not live(session)


def test_a_disabled_account_is_logged_out_at_its_next_request(app, admin, admin_client):
    """Account.is_enabled is Flask-Login's is_active and refuses new logins (local and SSO:
    `account_disabled`), but the user loader never reads it: a disabled platform admin kept
    every page of the portal until the session ended."""
    assert admin_client.get("/roles/").status_code == 200

    admin.is_enabled = False
    db.session.commit()

    answer = admin_client.get("/roles/")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")


def test_setting_a_new_password_ends_the_accounts_other_sessions(app, admin, admin_client):
    """`flask account set-password` is what an operator runs when an admin password leaked;
    the attacker's session, logged in with the old password, stayed valid for 12 hours."""
    attacker = fresh_client(app, "198.51.100.7")
    assert post_password(attacker, admin.username, ADMIN_PASSWORD).status_code == 302
    assert attacker.get("/roles/").status_code == 200

    set_password(admin, "a brand new long password", actor="cli")
    db.session.commit()

    assert attacker.get("/roles/").status_code == 302


def test_a_second_login_in_the_same_browser_ends_the_first(app, admin, client, acme_with_idp, idp):
    """A platform admin logs in on a shared computer, then an employee logs in through SSO
    in the same browser without logging out (or two tabs finish two logins). The cookie now
    names the new session, so Log out ends only that one; the admin's session row stayed
    live, usable with any copy of the earlier cookie until it timed out."""
    acme_with_idp()
    assert post_password(client, admin.username, ADMIN_PASSWORD).status_code == 302
    with client.session_transaction() as cookie:
        first = db.session.get(LoginSession, cookie[SESSION_KEY])

    second = log_in(client, idp)

    assert second.id != first.id
    assert not live(first)


# --- 2. The admin password form ----------------------------------------------------------------


def test_parallel_wrong_passwords_still_lock_the_account(app, admin):
    """authenticate() reads failed_logins, checks the hash (about 60 ms of scrypt), then
    writes failed_logins + 1 as a value: requests whose checks overlap all write the same
    count. Ten guesses sent at once from ten addresses (one each, far under the per-address
    limit) leave the account at failed_logins 1 and unlocked, on SQLite and PostgreSQL alike,
    so the lockout of 5 guesses per 15 minutes never binds an attacker who sends in bursts."""
    username = admin.username
    guesses = app.config["KURSA"]["web"]["max_failed_logins"] * 2
    clients = [fresh_client(app, f"192.0.2.{100 + i}") for i in range(guesses)]
    tokens = [fresh_token(c) for c in clients]
    go = threading.Event()
    statuses = []

    def guess(client, token):
        go.wait()
        data = {"username": username, "password": "wrong guess", "csrf_token": token}
        statuses.append(client.post("/login", data=data).status_code)

    threads = [
        threading.Thread(target=guess, args=pair) for pair in zip(clients, tokens, strict=True)
    ]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200] * guesses

    db.session.expire_all()
    account = db.session.get(Account, admin.id)
    assert account.locked_until is not None, f"failed_logins={account.failed_logins}"


def test_a_locked_name_costs_the_same_hash_as_an_unknown_one(app, admin, monkeypatch):
    """Unknown names are checked against a dummy hash "so both cases take the same time",
    but a locked account returns before any hash: lock a name with five wrong guesses, and
    its sixth answer comes ~60 ms faster than for a name that does not exist. That tells an
    attacker which admin usernames exist (the page text is the same)."""
    client = fresh_client(app)
    for _ in range(app.config["KURSA"]["web"]["max_failed_logins"]):
        post_password(client, admin.username, "wrong")
    db.session.expire_all()
    assert db.session.get(Account, admin.id).locked_until is not None

    hashed = []
    real = operations.check_password_hash
    monkeypatch.setattr(
        operations, "check_password_hash", lambda h, p: hashed.append(1) or real(h, p)
    )
    post_password(client, "nobody-by-this-name", "wrong")
    unknown = len(hashed)
    post_password(client, admin.username, "wrong")
    locked = len(hashed) - unknown

    assert unknown == 1
    assert locked == unknown


def test_the_login_form_limit_counts_an_ipv6_client_by_its_64_prefix(app, monkeypatch):
    """Every IPv6 subscriber holds at least a /64 (2^64 addresses): counted per whole
    address, each guess from a new address of the same /64 is a fresh client, and the
    per-address limit on the work-email and password forms never binds."""
    monkeypatch.setitem(app.config["KURSA"]["web"], "login_attempts_per_minute", 3)
    answers = []
    for host in range(1, 5):
        client = fresh_client(app, f"2001:db8:1:2::{host}")
        answers.append(post_password(client, "root-admin", "guess").status_code)
    assert answers == [200, 200, 200, 429]


def test_x_forwarded_for_is_ignored_without_trusted_proxies(app, admin, monkeypatch):
    monkeypatch.setitem(app.config["KURSA"]["web"], "login_attempts_per_minute", 3)
    client = fresh_client(app)
    answers = []
    for i in range(4):
        client.environ_base["HTTP_X_FORWARDED_FOR"] = f"203.0.113.{i}"
        answers.append(post_password(client, admin.username, "wrong").status_code)
    assert answers == [200, 200, 200, 429]


def test_behind_one_proxy_a_forged_left_x_forwarded_for_does_not_reset_the_count(app, engine_app):
    from app import create_app
    from tests.conftest import settings_for

    url = engine_app.config["SQLALCHEMY_DATABASE_URI"]
    proxied = create_app(
        settings_for(url, web={"trusted_proxies": 1, "login_attempts_per_minute": 3}),
        environ={},
    )
    proxied.config.update(TESTING=True)
    try:
        client = proxied.test_client()
        client.environ_base["REMOTE_ADDR"] = "10.0.0.1"  # the proxy
        answers = []
        for i in range(4):
            # the browser's forged value first, the address the proxy saw appended
            client.environ_base["HTTP_X_FORWARDED_FOR"] = f"203.0.113.{i}, 198.51.100.9"
            page = client.get("/login").get_data(as_text=True)
            marker = 'name="csrf_token" type="hidden" value="'
            token = page[page.index(marker) + len(marker) :].split('"', 1)[0]
            data = {"username": "root-admin", "password": "guess", "csrf_token": token}
            answers.append(client.post("/login", data=data).status_code)
        assert answers == [200, 200, 200, 429]
    finally:
        with proxied.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.mark.parametrize("variant", ["ROOT-ADMIN", " root-admin ", "Root-Admin"])
def test_username_case_variants_share_the_accounts_lockout(app, admin, variant):
    client = fresh_client(app)
    for _ in range(app.config["KURSA"]["web"]["max_failed_logins"]):
        post_password(client, variant, "wrong")
    assert post_password(client, admin.username, ADMIN_PASSWORD).status_code == 200
    assert client.get("/roles/").status_code == 302


@pytest.mark.parametrize("password", ["", " ", "anything at all", ADMIN_PASSWORD])
def test_the_admin_form_does_not_open_an_sso_only_account(
    app, client, acme_with_idp, idp, password
):
    """u1 logged in once through SSO, so an Account named u1 exists without a password."""
    acme_with_idp()
    log_in(client, idp)
    account = db.session.scalar(select(Account).where(Account.username == "u1"))
    assert account is not None and account.password_hash is None

    other = fresh_client(app, "192.0.2.55")
    answer = post_password(other, "u1", password)

    assert answer.status_code == 200
    assert other.get(PAGE).status_code == 302
    db.session.refresh(account)
    assert account.password_hash is None and account.failed_logins == 0


def test_the_admin_form_without_csrf_token_logs_nobody_in(app, admin):
    client = fresh_client(app)
    data = {"username": admin.username, "password": ADMIN_PASSWORD}
    assert client.post("/login", data=data).status_code == 400
    assert client.get("/roles/").status_code == 302


def test_logout_by_get_ends_nothing(app, client, acme_with_idp, idp):
    acme_with_idp()
    session = log_in(client, idp)
    assert client.get("/logout").status_code == 405
    assert live(session) and client.get(PAGE).status_code == 200


# --- 3. Fixation and cookies -------------------------------------------------------------------


def test_login_drops_whatever_the_cookie_held_before(app, admin):
    """A cookie planted before the login (its CSRF token known to the planter) is not carried
    into the login: new session id, no old keys, the old token refused."""
    client = fresh_client(app)
    old_token = fresh_token(client)
    with client.session_transaction() as cookie:
        cookie["planted"] = "by the attacker"
    data = {"username": admin.username, "password": ADMIN_PASSWORD, "csrf_token": old_token}
    assert client.post("/login", data=data).status_code == 302
    with client.session_transaction() as cookie:
        assert "planted" not in cookie and cookie.get("csrf_token") is None
    g.pop("csrf_token", None)
    assert client.post("/logout", data={"csrf_token": old_token}).status_code == 400


def set_cookies(answer) -> list[str]:
    return answer.headers.getlist("Set-Cookie")


def test_every_cookie_kursa_sets_is_httponly_lax_and_secure_when_asked(
    app, client, acme_with_idp, idp, monkeypatch
):
    monkeypatch.setitem(app.config, "SESSION_COOKIE_SECURE", True)
    acme_with_idp()
    seen = set_cookies(client.get("/login"))
    started = client.get("/sso/acme/corp/login")
    seen += set_cookies(started)
    from tests.sso.conftest import _request_id

    request_id = _request_id(started.headers["Location"])
    seen += set_cookies(post_acs(client, idp.respond(client, request_id)))
    g.pop("csrf_token", None)
    seen += set_cookies(client.post("/logout", data={"csrf_token": csrf_token(client, PAGE)}))
    assert seen
    for header in seen:
        flags = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
        assert {"httponly", "secure", "samesite"} <= flags, header
        assert "samesite=lax" in header.lower().replace(" ", ""), header


# --- 4. OIDC: the post-logout return --------------------------------------------------------


class LogoutOp(FlawedOp):
    """The flawed OP with an end_session_endpoint (Kursa only sends the browser there)."""

    def discovery(self) -> dict:
        return {**super().discovery(), "end_session_endpoint": f"{self.issuer}/session/end"}


@pytest.fixture(scope="module")
def logout_op():
    server = LogoutOp(redirect_uri=ACME_CALLBACK, users=USERS).start()
    yield server
    server.stop()


@pytest.fixture
def acme_with_logout_op(make_customer, import_csv, logout_op):
    oidc.forget_caches()
    customer = make_customer("acme", "Acme")
    import_csv(customer, UNITS, PERSONS)
    add_oidc_for(customer, logout_op)
    make_customer("beta", "Beta")
    db.session.commit()
    yield customer
    oidc.forget_caches()


def oidc_log_in_and_out(client, op) -> tuple[LoginSession, dict]:
    start = client.get("/sso/acme/corp/login").headers["Location"]
    with requests.Session() as browser:
        back = urlsplit(op.authorize(start, browser))
    assert client.get(f"{back.path}?{back.query}").status_code == 302
    with client.session_transaction() as cookie:
        session = db.session.get(LoginSession, cookie[SESSION_KEY])
    g.pop("csrf_token", None)
    answer = client.post("/logout", data={"csrf_token": csrf_token(client, PAGE)})
    assert answer.headers["Location"].startswith(f"{op.issuer}/session/end?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    return session, query


def logged_out_said(client) -> bool:
    return "You are logged out." in client.get("/login").get_data(as_text=True)


def test_oidc_logout_state_of_one_customer_does_nothing_at_another(
    app, client, acme_with_logout_op, logout_op
):
    _, query = oidc_log_in_and_out(client, logout_op)
    client.get("/login")  # the flash of Kursa's own logout is shown and gone

    answer = client.get(f"/sso/beta/oidc/logged-out?state={query['state']}")

    assert answer.headers["Location"] == "/login" and not logged_out_said(client)
    assert client.get(f"/sso/acme/oidc/logged-out?state={query['state']}").status_code == 302
    assert logged_out_said(client)  # still open at acme: beta did not use it up


def test_oidc_logout_state_works_once(app, client, acme_with_logout_op, logout_op):
    _, query = oidc_log_in_and_out(client, logout_op)
    client.get("/login")
    client.get(f"/sso/acme/oidc/logged-out?state={query['state']}")
    assert logged_out_said(client)
    client.get(f"/sso/acme/oidc/logged-out?state={query['state']}")
    assert not logged_out_said(client)


def test_the_id_token_goes_to_the_provider_only_never_to_the_log(
    app, client, acme_with_logout_op, logout_op, caplog
):
    caplog.set_level(logging.DEBUG)
    session, query = oidc_log_in_and_out(client, logout_op)
    assert query["id_token_hint"] == session.id_token
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for part in session.id_token.split("."):
        assert part not in logged
    assert query["state"] not in logged


# --- 5. Other customers' addresses, RelayState, home realm discovery ---------------------------


def test_an_employee_at_another_customers_sso_addresses_keeps_only_their_own_session(
    app, client, acme_with_idp, idp, make_customer
):
    acme_with_idp()
    make_customer("beta", "Beta")
    session = log_in(client, idp)
    assert client.get("/sso/beta/oidc/logged-out?state=x").status_code == 302
    assert client.get("/sso/beta/saml/sls").status_code == 403
    assert client.post("/sso/beta/saml/sls", data={"SAMLRequest": "eA=="}).status_code == 403
    assert client.get("/sso/beta/corp/login").status_code == 404
    assert client.get("/sso/admin/beta").status_code in (403, 404)
    assert live(session) and client.get(PAGE).status_code == 200


@pytest.mark.parametrize("relay", ["https://evil.test/", "//evil.test", "/" + "a" * 100_000])
def test_relay_state_of_an_idp_initiated_login_is_not_followed(
    app, client, acme_with_idp, idp, relay
):
    acme_with_idp(allow_idp_initiated=True)
    import base64

    encoded = base64.b64encode(idp.respond(client, None).encode()).decode()
    answer = client.post("/sso/acme/saml/acs", data={"SAMLResponse": encoded, "RelayState": relay})
    assert answer.status_code == 302 and answer.headers["Location"] == "/"


@pytest.mark.parametrize(
    "email",
    [
        "u1@acme.test.",
        "u1@ACME.TEST.",
        "u1@ａｃｍｅ.test",
        "u1@acme。test",
        "u1@acme..test",
        "@acme.test",
    ],
)
def test_home_realm_discovery_with_dots_and_wide_letters(app, client, acme_with_idp, email):
    _, provider = acme_with_idp()
    set_email_domains(provider, ["acme.test"], actor="t")
    db.session.commit()
    answer = client.post("/login", data={"email": email, "csrf_token": fresh_token(client)})
    assert answer.status_code in (200, 302)
    if answer.status_code == 302:
        assert answer.headers["Location"].startswith("/sso/acme/corp/login")


def test_a_provider_added_after_a_delete_does_not_inherit_its_sessions(
    app, client, acme_with_idp, idp, make_customer
):
    """Aggravates the delete above: on SQLite a new provider may get the deleted one's id
    (INTEGER PRIMARY KEY reuses the highest), so the orphaned session's logout goes out as a
    LogoutRequest of customer beta's provider naming acme's NameID (and beta's IdP could end
    acme's session). PostgreSQL's sequence does not reuse ids."""
    from sso.operations import add_saml_provider
    from tests.sso.conftest import IDP_SLO, as_another_idp

    _, provider = acme_with_idp()
    started = start_login(client)
    assert post_acs(client, transient_response(idp, client, started.request_id)).status_code == 302
    delete_provider(provider, actor="test")
    beta = make_customer("beta", "Beta")
    add_saml_provider(
        beta, "sso", as_another_idp(idp.metadata, "beta-idp"), actor="test", match="username"
    )
    db.session.commit()

    g.pop("csrf_token", None)
    page = client.get(PAGE)
    if page.status_code != 200:
        return  # the delete ended the session (the fix of the test above): nothing to inherit
    token = page.get_data(as_text=True).split('name="csrf_token" type="hidden" value="')[1]
    answer = client.post("/logout", data={"csrf_token": token.split('"', 1)[0]})

    assert not answer.headers["Location"].startswith(IDP_SLO)


# --- 6. A NUL in what the login addresses read: 500 on PostgreSQL ------------------------------

NUL_GETS = [
    "/login/ac%00me",
    "/login?customer=ac%00me",
    "/sso/ac%00me/corp/login",
    "/sso/acme/co%00rp/login",
    "/sso/ac%00me/saml/metadata",
    "/sso/acme/oidc/callback?state=a%00b&code=x",
    "/sso/acme/oidc/logged-out?state=a%00b",
]


@pytest.mark.parametrize("url", NUL_GETS)
def test_a_nul_in_a_login_address_is_a_plain_answer_not_a_500(
    app, client, acme_with_idp, url, monkeypatch
):
    """PostgreSQL refuses NUL in text parameters (psycopg DataError), so every lookup by a
    slug, provider name or state taken from the address fails with 500, before any login,
    for anyone. SQLite answers these plainly (200 page, 404, 403 refusal, 302)."""
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)  # answer as production
    acme_with_idp()
    assert client.get(url).status_code in (200, 302, 403, 404)


@pytest.mark.parametrize(
    "data",
    [
        {"username": "root\x00admin", "password": "guess"},
        {"email": "ida\x00lund@acme.test"},
    ],
    ids=["admin-username", "work-email"],
)
def test_a_nul_in_the_login_forms_is_a_plain_refusal_not_a_500(
    app, client, acme_with_idp, data, monkeypatch
):
    """The same on the login page's two forms; the 500's log line then carries the typed
    username or work email (SQLAlchemy's message lists the statement's parameters)."""

    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    _, provider = acme_with_idp()
    set_email_domains(provider, ["acme.test"], actor="t")
    db.session.commit()
    answer = client.post("/login", data={**data, "csrf_token": fresh_token(client)})
    assert answer.status_code in (200, 302)  # the email may lead to acme's provider, as SQLite
    assert client.get("/roles/").status_code == 302


def test_a_failed_admin_login_logs_neither_the_name_nor_the_password(app, admin, caplog):
    """People type their password into the username field."""
    caplog.set_level(logging.DEBUG)
    client = fresh_client(app)
    post_password(client, "Secret-Typed-As-Name-1", "Secret-Password-2")
    post_password(client, admin.username, "Secret-Password-3")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("Secret-Typed-As-Name-1", "Secret-Password-2", "Secret-Password-3"):
        assert secret not in logged
