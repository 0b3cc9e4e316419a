"""OpenID Connect login against the npm oidc-provider 8.8.1 on loopback: `flask sso add-oidc`,
the whole code flow with PKCE without a browser, then every callback that must be refused
(each leaves no session behind)."""

import hashlib
import json
import logging
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select

from portal.accounts.models import Account
from portal.core.audit import AuditEntry
from portal.core.db import db, utcnow
from portal.directory.models import Person
from sso import oidc, vault
from sso.models import Identity, IdentityProvider, OidcRequest
from tests.servers.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProviderServer
from tests.sso.conftest import BASE_URL, PERSONS, UNITS, logged_in_account_id

CALLBACK = f"{BASE_URL}/sso/acme/oidc/callback"
USERS = {
    "ida": {"preferred_username": "U1", "email": "Ida.Lund@acme.test", "name": "Ida Lund"},
    "bo": {"preferred_username": "u2", "email": "bo.holm@acme.test"},
    "ghost": {"preferred_username": "nobody", "email": "ghost@acme.test"},
}


@pytest.fixture(scope="module")
def op(tmp_path_factory):
    server = OidcProviderServer(
        tmp_path_factory.mktemp("oidc-provider"), redirect_uri=CALLBACK, users=USERS
    ).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_caches():
    oidc.forget_caches()
    yield
    oidc.forget_caches()


@pytest.fixture
def flask(app, monkeypatch):
    monkeypatch.setenv("KURSA_TEST_OIDC_SECRET", CLIENT_SECRET)
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=list(args))


@pytest.fixture
def acme_with_op(make_customer, import_csv, flask, op):
    """Customer acme with persons u1 and u2 and the provider `corp`, added by the CLI."""

    def make(match="username", *extra):
        customer = make_customer("acme", "Acme")
        import_csv(customer, UNITS, PERSONS)
        result = flask(
            "sso", "add-oidc", "corp", "--customer", "acme", "--discovery", op.discovery_url,
            "--client-id", CLIENT_ID, "--client-secret-env", "KURSA_TEST_OIDC_SECRET",
            "--match", match, *extra,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return customer

    return make


def start(client, next_url: str = "") -> str:
    answer = client.get("/sso/acme/corp/login" + (f"?next={next_url}" if next_url else ""))
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return answer.headers["Location"]


def callback(client, redirect: str):
    parts = urlsplit(redirect)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK
    return client.get(f"{parts.path}?{parts.query}")


def person_named(username: str) -> Person:
    return db.session.scalar(select(Person).where(Person.username == username))


def assert_refused(answer, client, reason: str):
    assert answer.status_code == 403, answer.get_data(as_text=True)
    assert logged_in_account_id(client) is None
    refusal = db.session.scalar(
        select(AuditEntry)
        .where(AuditEntry.action == "login.refused")
        .order_by(AuditEntry.id.desc())
    )
    assert refusal is not None and refusal.details["reason"] == reason
    return refusal


def test_add_oidc_stores_the_secret_encrypted_and_list_shows_it(app, acme_with_op, flask, op):
    acme_with_op("email", "--match-claim", "email")
    provider = db.session.scalar(select(IdentityProvider))
    assert provider.kind == "oidc"
    assert provider.setting("issuer") == op.issuer
    assert CLIENT_SECRET not in json.dumps(provider.settings)
    listed = json.loads(flask("sso", "list", "--json").output)
    assert listed[0]["kind"] == "oidc" and listed[0]["issuer"] == op.issuer
    assert listed[0]["match"] == "email" and listed[0]["match_claim"] == "email"
    assert CLIENT_SECRET not in flask("sso", "list").output
    assert op.issuer in flask("sso", "list").output


def test_add_oidc_refuses_an_unset_secret_variable(app, make_customer, flask, op):
    make_customer("acme", "Acme")
    result = flask(
        "sso", "add-oidc", "corp", "--customer", "acme", "--discovery", op.discovery_url,
        "--client-id", CLIENT_ID, "--client-secret-env", "KURSA_NO_SUCH_VARIABLE",
        "--match", "email",
    )  # fmt: skip
    assert result.exit_code != 0 and "KURSA_NO_SUCH_VARIABLE" in result.output
    assert db.session.scalar(select(IdentityProvider)) is None


def test_whole_flow_logs_in_the_synced_person(app, client, acme_with_op, op, caplog):
    acme_with_op()
    caplog.set_level(logging.DEBUG)
    location = start(client, "/courses")
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(op.issuer)
    assert query["code_challenge_method"] == ["S256"] and "code_verifier" not in query
    assert db.session.scalar(select(OidcRequest.state)) == query["state"][0]

    redirect = op.sign_in(location, "ida")
    answer = callback(client, redirect)

    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert answer.headers["Location"] == "/courses"
    account = db.session.get(Account, int(logged_in_account_id(client)))
    assert account.person_id == person_named("u1").id
    assert db.session.scalar(select(Identity.subject)) == "sub-ida"
    with client.session_transaction() as session:
        assert set(session) <= {
            "_user_id",
            "_fresh",
            "_id",
            "csrf_token",
            "kursa_sid",
            "_permanent",
        }
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    # urllib3 logs the URLs the test's own browser stand-in (requests) follows, which carry the
    # state by design; every other logger, Kursa's and authlib's included, must not.
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "urllib3.connectionpool")
    for secret in (code, query["state"][0], query["nonce"][0], CLIENT_SECRET):
        assert secret not in logged


def test_several_tabs_each_finish_their_own_login(app, client, acme_with_op, op):
    acme_with_op()
    first, second = start(client), start(client)
    assert callback(client, op.sign_in(second, "ida")).status_code == 302
    assert callback(client, op.sign_in(first, "ida")).status_code == 302


def test_login_by_email_claim_from_userinfo(app, client, acme_with_op, op):
    acme_with_op("email")
    answer = callback(client, op.sign_in(start(client), "bo"))
    assert answer.status_code == 302, answer.get_data(as_text=True)
    account = db.session.get(Account, int(logged_in_account_id(client)))
    assert account.person_id == person_named("u2").id


def test_a_missing_claim_is_named_in_the_refusal(app, client, acme_with_op, op):
    acme_with_op("employee_number")  # the provider sends no employee_number claim

    answer = callback(client, op.sign_in(start(client), "ida"))

    refusal = assert_refused(answer, client, "no_value")
    assert refusal.details["missing"] == ["employee_number"]
    assert "It sent none of: employee_number." in answer.get_data(as_text=True)


def test_unknown_key_id_refetches_the_key_set(app, client, acme_with_op, op):
    acme_with_op()
    stale = KeySet([RSAKey.generate_key(2048, parameters={"kid": "retired"})])
    document = oidc.fetch_discovery(op.discovery_url)
    oidc._key_sets[document["jwks_uri"]] = stale
    answer = callback(client, op.sign_in(start(client), "ida"))
    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert oidc._key_sets[document["jwks_uri"]] is not stale


def test_unknown_key_id_refetches_at_most_every_30_seconds(app, client, acme_with_op, op):
    acme_with_op()
    stale = KeySet([RSAKey.generate_key(2048, parameters={"kid": "retired"})])
    document = oidc.fetch_discovery(op.discovery_url)
    assert oidc._may_refetch(document["jwks_uri"])  # someone refetched just now
    oidc._key_sets[document["jwks_uri"]] = stale
    answer = callback(client, op.sign_in(start(client), "ida"))
    assert_refused(answer, client, "id_token_signature")


def test_wrong_state_is_refused(app, client, acme_with_op, op):
    acme_with_op()
    redirect = op.sign_in(start(client), "ida")
    assert_refused(callback(client, _with(redirect, state="forged")), client, "unknown_state")


def test_replayed_callback_restarts_the_login(app, client, acme_with_op, op):
    acme_with_op()
    redirect = op.sign_in(start(client, "/courses"), "ida")
    assert callback(client, redirect).status_code == 302
    client.get("/logout")
    with client.session_transaction() as session:
        session.clear()

    replay = callback(client, redirect)
    assert replay.status_code == 302
    assert replay.headers["Location"] == "/sso/acme/corp/login?next=%2Fcourses"
    assert logged_in_account_id(client) is None
    refusal = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "login.refused"))
    assert refusal.details["reason"] == "state_used"


def test_expired_state_restarts_the_login(app, client, acme_with_op, op):
    acme_with_op()
    redirect = op.sign_in(start(client), "ida")
    stored = db.session.scalar(select(OidcRequest))
    stored.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    answer = callback(client, redirect)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/sso/acme/corp/login")
    assert logged_in_account_id(client) is None


def test_nonce_mismatch_is_refused(app, client, acme_with_op, op):
    acme_with_op()
    location = _with(start(client), nonce="injected-by-an-attacker")
    redirect = op.sign_in(location, "ida")
    assert_refused(callback(client, redirect), client, "nonce_mismatch")
    assert callback(client, redirect).status_code == 302  # the state is used up: restart
    assert logged_in_account_id(client) is None
    assert db.session.scalar(select(OidcRequest.is_used)) is True


def test_provider_error_is_refused(app, client, acme_with_op, op):
    acme_with_op()
    state = parse_qs(urlsplit(start(client)).query)["state"][0]
    answer = client.get(f"/sso/acme/oidc/callback?{urlencode({'state': state, 'error': 'x'})}")
    assert_refused(answer, client, "provider_error")


def test_unknown_person_is_refused(app, client, acme_with_op, op):
    acme_with_op()
    answer = callback(client, op.sign_in(start(client), "ghost"))
    assert_refused(answer, client, "not_found")
    assert "not in Acme" in answer.get_data(as_text=True)


def test_inactive_person_is_refused(app, client, acme_with_op, op, import_csv):
    customer = acme_with_op()
    import_csv(customer, UNITS, PERSONS[1:])  # u1 left the file: inactivated by the import
    db.session.commit()
    assert not person_named("u1").is_active
    answer = callback(client, op.sign_in(start(client), "ida"))
    assert_refused(answer, client, "inactive")


def _with(url: str, **params) -> str:
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    return urlunsplit(parts._replace(query=urlencode({**query, **params})))


def test_a_changed_client_secret_is_used_at_once(app, client, acme_with_op, op):
    """The decrypted secret is cached per provider; a new stored secret replaces it."""
    acme_with_op()
    assert callback(client, op.sign_in(start(client), "ida")).status_code == 302
    provider = db.session.scalar(select(IdentityProvider))

    provider.settings = {**provider.settings, "client_secret": vault.encrypt("not-the-secret")}
    db.session.commit()
    other = app.test_client()  # `client` is still logged in from the first login
    assert_refused(callback(other, op.sign_in(start(other), "ida")), other, "token_exchange")

    provider.settings = {**provider.settings, "client_secret": vault.encrypt(CLIENT_SECRET)}
    db.session.commit()
    assert callback(client, op.sign_in(start(client), "ida")).status_code == 302


# --- the state is bound to the browser that started the login (login CSRF) ----------------


def test_the_login_cookie_is_lax_httponly_under_sso_and_only_its_hash_is_stored(
    app, client, acme_with_op, op
):
    acme_with_op()

    answer = client.get("/sso/acme/corp/login")

    cookie = answer.headers["Set-Cookie"]
    key = client.get_cookie(oidc.BROWSER_COOKIE, path="/sso/").value
    assert cookie.startswith(f"{oidc.BROWSER_COOKIE}={key};")
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/sso/", "Max-Age=1200"):
        assert attribute in cookie
    stored = db.session.scalar(select(OidcRequest))
    assert stored.browser_hash == hashlib.sha256(key.encode()).hexdigest() != key
    start(client)  # a second tab keeps the key
    assert client.get_cookie(oidc.BROWSER_COOKIE, path="/sso/").value == key


def test_a_callback_opened_in_another_browser_is_refused_plainly(app, client, acme_with_op, op):
    """Ida's browser starts the login; the callback link she was given back is opened in
    another browser (or one whose cookie is gone or forged): refused, no session, no link,
    and the state is used up, so her own browser restarts instead of logging in."""
    acme_with_op()
    redirect = op.sign_in(start(client, "/courses"), "ida")
    others = [app.test_client(), app.test_client()]
    others[1].set_cookie(oidc.BROWSER_COOKIE, oidc.browser_key(None), path="/sso/")

    for other in others:
        answer = callback(other, redirect)
        assert_refused(answer, other, "state_not_this_browser")
        assert "Start the login again" in answer.get_data(as_text=True)

    assert db.session.scalar(select(Identity)) is None
    assert db.session.scalar(select(OidcRequest.is_used)) is True
    own = callback(client, redirect)
    assert own.headers["Location"] == "/sso/acme/corp/login?next=%2Fcourses"
    assert logged_in_account_id(client) is None


@pytest.mark.parametrize("state", ["used", "expired"])
def test_a_used_or_expired_state_from_another_browser_does_not_restart(
    app, client, acme_with_op, op, state
):
    acme_with_op()
    redirect = op.sign_in(start(client), "ida")
    if state == "used":
        assert callback(client, redirect).status_code == 302  # Ida is logged in
    else:
        db.session.scalar(select(OidcRequest)).expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    other = app.test_client()

    assert_refused(callback(other, redirect), other, "state_not_this_browser")
