"""Attacks on the SAML ACS and single logout that found faults, each fixed since: replay records
that expired before the assertion, unsolicited answers, the bearer's NotOnOrAfter, long or
repeated subjects, ambiguous match values, a logout request without Destination.

Documents come from the in-process pysaml2 IdP and are re-signed with the IdP's real key
after each edit (tests.sso.test_saml_signature.sign), so a refusal comes from the rule attacked
and an acceptance is what a real IdP signing that document would get.
"""

import base64
import copy

import pytest
from lxml import etree
from saml2 import BINDING_HTTP_REDIRECT
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.xmldsig import SIG_RSA_SHA256
from sqlalchemy import select

from portal.accounts.models import LoginSession
from portal.core.db import db
from sso.models import Identity
from tests.sso.conftest import (
    post_acs,
    start_login,
)
from tests.sso.saml_attack_helpers import (
    BETA_SLS,
    BETA_SP,
    forget_browser,
    logged_in_username,
    move_all_clocks,
    only_bearer_bound,
    two_customers_with_the_same_idp,
)
from tests.sso.test_attack_saml_acs import refused, signed_assertion
from tests.sso.test_saml_login import assert_refused
from tests.sso.test_saml_logout import SLS, local, log_in
from tests.sso.test_saml_signature import SAML, assert_nobody_linked, sign, text


@pytest.mark.parametrize("how", ["idp_initiated_allowed", "unsolicited_wrapped_as_an_answer"])
def test_an_assertion_replayed_after_its_replay_record_expired_is_refused(
    app, client, acme_with_idp, idp, key_pairs, monkeypatch, how
):
    """FAULT. The IdP signs an assertion whose only time bound is the bearer's NotOnOrAfter
    (two hours; Conditions carries none, which SAML allows). Kursa keeps its replay record
    for request lifetime + skew (12 min) because it looks only at Conditions' NotOnOrAfter;
    the next login start purges it, and 20 minutes later the same assertion logs the
    person in again. 'unsolicited_wrapped_as_an_answer' does it with IdP-initiated login off
    (see the next test): the attacker wraps the captured assertion in an unsigned Response
    answering a request the attacker started. Since that wrapping is refused (the next test),
    its first use is refused too, and so must its replay be."""
    allowed = how == "idp_initiated_allowed"
    acme_with_idp(allow_idp_initiated=allowed)
    first = None if allowed else start_login(client).request_id
    root, _ = signed_assertion(idp, client, key_pairs, None, edit=only_bearer_bound(2))
    if first:
        root.set("InResponseTo", first)
    assert post_acs(client, text(root)).status_code == (302 if allowed else 403)
    forget_browser(client)

    move_all_clocks(monkeypatch, 20 * 60)
    second = start_login(client).request_id  # any login start purges expired records
    if not allowed:
        root.set("InResponseTo", second)

    assert_refused(post_acs(client, text(root)), client)


def test_an_unsolicited_assertion_wrapped_as_an_answer_is_refused_when_idp_initiated_is_off(
    app, client, acme_with_idp, idp, key_pairs
):
    """FAULT. IdP-initiated login is off (the default), yet an unsolicited assertion (signed,
    its bearer names no request) logs in once put in an unsigned Response whose InResponseTo
    names a request the attacker started at /sso/acme/corp/login: the Response's InResponseTo
    is not signed, so only the bearer's InResponseTo binds the assertion to the request, and
    an empty one is accepted. Expected: refused unless the Response is signed."""
    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, None)
    root.set("InResponseTo", started.request_id)

    assert_refused(post_acs(client, text(root)), client)


@pytest.mark.parametrize(("hours", "status"), [(0, 403), (48, 403), (0.5, 302)])
def test_the_bearer_not_on_or_after_is_required_and_bounded(
    app, client, acme_with_idp, idp, key_pairs, hours, status
):
    """FAULT (hours 0 and 48). The Web SSO profile requires NotOnOrAfter on the bearer's
    SubjectConfirmationData; Kursa accepts an assertion with no time bound at all (valid
    forever, its replay record kept 12 minutes), and one valid for two days through the
    bearer (test_an_assertion_valid_for_days_is_refused covers Conditions only)."""
    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(
        idp, client, key_pairs, started.request_id, edit=only_bearer_bound(hours)
    )
    assert post_acs(client, text(root)).status_code == status


@pytest.mark.parametrize("length", [256, 300])
def test_a_long_persistent_name_id_logs_in_again(app, client, acme_with_idp, idp, length):
    """FAULT. SAML allows a persistent NameID of 256 characters. The link stores subject[:255]
    but looks up the whole NameID, so the second login finds no link, matches again and
    inserts the same truncated subject: IntegrityError (unique provider+subject), a 500."""
    acme_with_idp()
    subject = "s" * length
    for _ in range(2):
        started = start_login(client)
        answer = post_acs(client, idp.respond(client, started.request_id, subject=subject))
        assert answer.status_code == 302
        assert logged_in_username(client) == "u1"
        forget_browser(client)
    assert len(db.session.scalars(select(Identity)).all()) == 1
    # the sessions keep the whole NameID too, so an IdP's logout names exactly them
    assert set(db.session.scalars(select(LoginSession.name_id))) == {subject}


@pytest.mark.parametrize("duplicate", ["NameID", "Subject"])
def test_a_second_name_id_or_subject_is_refused(
    app, client, acme_with_idp, idp, key_pairs, duplicate
):
    """FAULT. Schema-invalid signed assertions that name two subjects (two NameIDs, or two
    Subjects; pysaml2 refused both by schema validation) are accepted, and the first in
    document order is who logs in: the identity read depends on element order."""

    def edit(root, assertion):
        subject = assertion.find(f"{SAML}Subject")
        subject.find(f"{SAML}NameID").text = "u1"
        original = subject if duplicate == "Subject" else subject.find(f"{SAML}NameID")
        extra = copy.deepcopy(original)
        (extra if duplicate == "NameID" else extra.find(f"{SAML}NameID")).text = "u2"
        original.addprevious(extra)

    acme_with_idp(match="nameid")
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)

    refused(post_acs(client, text(root)), client)
    assert_nobody_linked()


@pytest.mark.parametrize("where", ["two_values", "two_attribute_statements"])
def test_a_match_attribute_with_two_different_values_is_refused(
    app, client, acme_with_idp, idp, key_pairs, where
):
    """FAULT. The match attribute (uid) carries u2 and u1 (two values of one Attribute, or
    the Attribute in two AttributeStatements): the first value silently decides whom the
    NameID is linked to, for good. Expected: an ambiguous match is refused."""

    def edit(root, assertion):
        if where == "two_values":
            value = assertion.find(f".//{SAML}AttributeValue")  # uid's, "u1"
            extra = copy.deepcopy(value)
            extra.text = "u2"
            value.addprevious(extra)
        else:
            statement = assertion.find(f"{SAML}AttributeStatement")
            extra = copy.deepcopy(statement)
            for value in extra.iter(f"{SAML}AttributeValue"):
                value.text = value.text.replace("u1", "u2")
            statement.addprevious(extra)

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)

    refused(post_acs(client, text(root)), client)
    assert_nobody_linked()


def test_a_second_subject_confirmation_data_with_another_recipient_is_refused(
    app, client, acme_with_idp, idp, key_pairs
):
    """FAULT. One bearer SubjectConfirmation with two SubjectConfirmationData (schema allows
    one): Kursa checks only the first. Right-then-wrong Recipient logs in, wrong-then-right
    is refused: the outcome depends on order. Expected: refused either way."""

    def edit(root, assertion):
        data = assertion.find(f".//{SAML}SubjectConfirmationData")
        extra = copy.deepcopy(data)
        extra.set("Recipient", "https://evil.test/acs")
        data.addnext(extra)

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)

    refused(post_acs(client, text(root)), client)


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_a_logout_request_without_destination_for_another_customer_ends_nothing(
    app, client, acme_with_idp, idp, key_pairs, make_customer, import_csv, binding
):
    """FAULT. acme and beta share the IdP. A signed LogoutRequest without Destination (the
    bindings require it on signed messages; Kursa checks it only when present), meant for
    beta, replayed at acme's sls, ends acme's session of the same NameID. The replay record
    is per provider, so the same message works once at each customer."""
    two_customers_with_the_same_idp(acme_with_idp, make_customer, import_csv, idp)
    session = log_in(client, idp)
    server = idp.server(client)
    _, request = server.create_logout_request(
        BETA_SLS,
        BETA_SP,
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=session.name_id),
        sign=False,
    )
    request.destination = None
    if binding == "redirect":
        info = server.apply_binding(
            BINDING_HTTP_REDIRECT, str(request), SLS, sign=True, sigalg=SIG_RSA_SHA256
        )
        answer = app.test_client().get(local(dict(info["headers"])["Location"]))
    else:
        root = etree.fromstring(str(request).encode())
        sign(root, key_pairs["idp"])
        encoded = base64.b64encode(etree.tostring(root)).decode()
        answer = app.test_client().post("/sso/acme/saml/sls", data={"SAMLRequest": encoded})

    db.session.refresh(session)
    assert session.ended_at is None
    assert answer.status_code == 403
