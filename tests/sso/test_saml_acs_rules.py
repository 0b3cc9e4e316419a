"""The ACS rules that bind a signed assertion to one login: the request it answers, its time
bounds and replay record, the one subject it names and the value it is matched by.

Beside tests/sso/test_attack_saml_more.py (the attacks that found these faults), these hold
the cases the attacks did not try. Documents are the in-process IdP's, edited and re-signed
with its key (tests.sso.test_saml_signature.sign).
"""

import pytest

from tests.sso.conftest import post_acs, start_login
from tests.sso.test_attack_saml_acs import signed_assertion
from tests.sso.test_saml_login import assert_refused
from tests.sso.test_saml_signature import SAML, sign, text


def without_bearer_in_response_to(root, assertion):
    del assertion.find(f".//{SAML}SubjectConfirmationData").attrib["InResponseTo"]


# --- an unsolicited assertion is no answer to a request -------------------------------------


def test_an_unsolicited_assertion_in_an_unsigned_response_is_refused_with_its_reason(
    app, client, acme_with_idp, idp, key_pairs
):
    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, None)
    root.set("InResponseTo", started.request_id)

    assert_refused(post_acs(client, text(root)), client, "idp_initiated")


def test_an_unsigned_response_cannot_turn_an_unsolicited_assertion_into_an_answer(
    app, client, acme_with_idp, idp, key_pairs
):
    """IdP-initiated login allowed: the assertion is still no answer to the request the
    unsigned Response names (the request would lend it its next page and be used up)."""
    acme_with_idp(allow_idp_initiated=True)
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, None)
    root.set("InResponseTo", started.request_id)

    assert_refused(post_acs(client, text(root)), client, "unknown_request")


@pytest.mark.parametrize(("allowed", "status"), [(False, 403), (True, 302)])
def test_a_signed_response_binds_a_bearer_without_in_response_to_only_where_allowed(
    app, client, acme_with_idp, idp, key_pairs, allowed, status
):
    """The IdP signed the Response answering the request, its bearer names none: an
    unsolicited assertion all the same, so IdP-initiated login must be allowed."""
    acme_with_idp(allow_idp_initiated=allowed)
    started = start_login(client)
    root, _ = signed_assertion(
        idp, client, key_pairs, started.request_id, edit=without_bearer_in_response_to
    )
    sign(root, key_pairs["idp"])

    assert post_acs(client, text(root)).status_code == status
