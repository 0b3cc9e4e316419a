"""ID tokens that must be refused, minted by a small OP on loopback (tests/servers/flawed_op.py)
and carried through the whole flow: Kursa's login address, the OP's authorization address,
its redirect back to the callback. Each refusal leaves no session, no link and an audit row
naming the reason, and shows the plain page."""

import time
from html import unescape

import pytest
import requests
from sqlalchemy import func, select

from portal.accounts.models import LoginSession
from portal.core.db import db
from sso import oidc
from sso.linking import MAX_SUBJECT_BYTES
from sso.models import Identity, OidcRequest
from sso.views import REFUSED_RESPONSE
from tests.servers.flawed_op import CLIENT_ID, FlawedOp
from tests.sso.conftest import PERSONS, UNITS, logged_in_account_id
from tests.sso.providers import add_oidc_for
from tests.sso.test_oidc import CALLBACK, USERS, assert_refused, callback, start


@pytest.fixture(scope="module")
def op():
    server = FlawedOp(redirect_uri=CALLBACK, users=USERS).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_caches():
    oidc.forget_caches()
    yield
    oidc.forget_caches()


@pytest.fixture
def acme_with_flawed_op(make_customer, import_csv, op):
    customer = make_customer("acme", "Acme")
    import_csv(customer, UNITS, PERSONS)
    add_oidc_for(customer, op)
    return customer


def log_in(client, op: FlawedOp):
    """The whole flow: Kursa's login address -> the OP -> Kursa's callback."""
    with requests.Session() as browser:
        return callback(client, op.authorize(start(client), browser))


def test_a_sound_token_logs_in(app, client, acme_with_flawed_op, op):
    answer = log_in(client, op)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert logged_in_account_id(client) is not None
    assert db.session.scalar(select(Identity.subject)) == "sub-ida"


def test_several_audiences_with_kursa_as_azp_log_in(app, client, acme_with_flawed_op, op):
    op.spoil(aud=[CLIENT_ID, "another-client"], azp=CLIENT_ID)
    answer = log_in(client, op)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert logged_in_account_id(client) is not None


def _now() -> int:
    return int(time.time())


REFUSED_TOKENS = {
    "wrong_issuer": (lambda: {"iss": "https://idp.example.test"}, "id_token_claims"),
    "wrong_audience": (lambda: {"aud": "another-client"}, "id_token_claims"),
    "several_audiences_no_azp": (lambda: {"aud": [CLIENT_ID, "x"]}, "id_token_claims"),
    "several_audiences_other_azp": (
        lambda: {"aud": [CLIENT_ID, "x"], "azp": "x"},
        "id_token_claims",
    ),
    "expired": (lambda: {"exp": _now() - 120, "iat": _now() - 600}, "id_token_claims"),
    "issued_in_the_future": (
        lambda: {"iat": _now() + 3600, "exp": _now() + 3900},
        "id_token_claims",
    ),
    "no_subject": (lambda: {"sub": None}, "id_token_claims"),
    "bad_signature_known_kid": (lambda: {"signing": "other_key"}, "id_token_signature"),
    "alg_none": (lambda: {"signing": "none"}, "id_token_signature"),
    "hs256_with_public_key": (lambda: {"signing": "hs256_public_key"}, "id_token_signature"),
    "userinfo_other_subject": (
        lambda: {"userinfo": {"sub": "sub-bo"}},
        "userinfo_subject",
    ),
}


@pytest.mark.parametrize("flaw", REFUSED_TOKENS, ids=str)
def test_a_flawed_token_is_refused(app, client, acme_with_flawed_op, op, flaw):
    make_flaw, reason = REFUSED_TOKENS[flaw]
    op.spoil(**make_flaw())

    answer = log_in(client, op)

    assert_refused(answer, client, reason)
    assert REFUSED_RESPONSE in unescape(answer.get_data(as_text=True))
    assert db.session.scalar(select(func.count()).select_from(LoginSession)) == 0
    assert db.session.scalar(select(func.count()).select_from(Identity)) == 0
    assert db.session.scalar(select(OidcRequest.is_used)) is True


@pytest.mark.parametrize(("extra", "status"), [(0, 302), (1, 403)], ids=["fits", "too_long"])
def test_a_sub_is_linked_whole_up_to_the_longest_kursa_keeps(
    app, client, acme_with_flawed_op, op, extra, status
):
    """As a SAML NameID (tests/sso/test_linking_subjects.py): never cut, longer refused."""
    subject = "s" * (MAX_SUBJECT_BYTES + extra)
    op.spoil(sub=subject, userinfo={"sub": subject})

    answer = log_in(client, op)

    assert answer.status_code == status, answer.get_data(as_text=True)
    linked = db.session.scalars(select(Identity.subject)).all()
    if status == 302:
        assert linked == [subject]
    else:
        assert linked == []
        assert_refused(answer, client, "subject_too_long")
