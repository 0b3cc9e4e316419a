"""Attacks on whom a SAML answer belongs to (InResponseTo, another IdP or customer, size and
encoding of the POST) and on single logout between customers and IdPs: regression guards.

Documents come from the in-process pysaml2 IdP and are re-signed with the IdP's real key
after each edit (tests.sso.test_saml_signature.sign), so a refusal comes from the rule attacked
and an acceptance is what a real IdP signing that document would get.
"""

import base64
import time
from datetime import timedelta

import pytest
from lxml import etree
from saml2 import BINDING_HTTP_REDIRECT
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from sqlalchemy import select

import portal.core.db
from portal.core.db import db
from sso.models import IdentityProvider, SamlLogoutRequest
from sso.operations import add_saml_provider
from tests.sso.conftest import (
    IDP_ENTITY,
    SP_ENTITY,
    UNITS,
    SamlIdp,
    post_acs,
    start_login,
)
from tests.sso.saml_attack_helpers import (
    BETA_ACS,
    BETA_SLS,
    BETA_SP,
    forget_browser,
    two_customers_with_the_same_idp,
)
from tests.sso.test_attack_saml_acs import refused, signed_assertion
from tests.sso.test_attack_saml_logout import signed_logout_request_xml
from tests.sso.test_saml_login import assert_refused
from tests.sso.test_saml_logout import PAGE, SLS, idp_answer, local, log_in, log_out, single
from tests.sso.test_saml_signature import SAML, text


def test_response_in_response_to_differing_from_the_bearers_is_refused(
    app, client, acme_with_idp, idp, key_pairs
):
    """The assertion answers request A; the unsigned Response is re-pointed at request B."""
    acme_with_idp()
    first, second = start_login(client), start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, first.request_id)
    root.set("InResponseTo", second.request_id)
    assert_refused(post_acs(client, text(root)), client, "unknown_request")


def test_an_answer_stripped_of_its_in_response_to_is_not_an_idp_initiated_login(
    app, client, acme_with_idp, idp, key_pairs
):
    """IdP-initiated allowed: an SP-initiated answer whose unsigned Response loses its
    InResponseTo still names the request in its bearer, so it is refused."""
    acme_with_idp(allow_idp_initiated=True)
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id)
    del root.attrib["InResponseTo"]
    assert_refused(post_acs(client, text(root)), client, "unknown_request")


@pytest.mark.parametrize("issuer", ["own", "corp"])
def test_another_idp_of_the_same_customer_cannot_answer_corps_request(
    app, client, acme_with_idp, idp, key_pairs, issuer
):
    """acme also trusts a second IdP (another key): its signed answer to corp's request is
    refused under its own issuer and under corp's."""
    customer, _ = acme_with_idp()
    other = SamlIdp(key_pairs["attacker"], entity_id="https://other-idp.test/idp")
    add_saml_provider(
        customer, "other", other.metadata, match="username", match_attribute="uid", actor="t"
    )
    db.session.commit()
    started = start_login(client)  # corp's
    xml = other.respond(client, started.request_id)
    if issuer == "corp":
        xml = xml.replace("https://other-idp.test/idp", IDP_ENTITY)
    refused(post_acs(client, xml), client)


def test_an_assertion_for_two_audiences_cannot_be_replayed_at_the_other_customer(
    app, client, acme_with_idp, idp, key_pairs, make_customer, import_csv
):
    """acme and beta share the IdP, IdP-initiated allowed at both. An assertion naming both
    SPs as audiences, used at acme, then replayed at beta (replay records are per provider):
    refused by the bearer Recipient (acme's ACS)."""
    two_customers_with_the_same_idp(
        acme_with_idp, make_customer, import_csv, idp, allow_idp_initiated=True
    )

    def edit(root, assertion):
        audience = etree.SubElement(
            assertion.find(f".//{SAML}AudienceRestriction"), f"{SAML}Audience"
        )
        audience.text = BETA_SP

    root, _ = signed_assertion(idp, client, key_pairs, None, edit=edit)
    assert post_acs(client, text(root)).status_code == 302
    forget_browser(client)
    root.set("Destination", BETA_ACS)
    encoded = base64.b64encode(text(root).encode()).decode()
    answer = client.post("/sso/beta/saml/acs", data={"SAMLResponse": encoded})
    assert_refused(answer, client, "recipient")


@pytest.mark.parametrize(
    "value",
    ["!!!!", "====", "é", "A", " ", "\x00", "PD94bWw", base64.b64encode(b"\x89PNG").decode()],
)
def test_a_saml_response_that_is_not_base64_or_not_xml_is_refused(
    app, client, acme_with_idp, value
):
    acme_with_idp()
    answer = client.post("/sso/acme/saml/acs", data={"SAMLResponse": value})
    assert answer.status_code == 403


def test_a_ten_megabyte_saml_response_is_refused_quickly(app, client, acme_with_idp):
    acme_with_idp()
    started = time.monotonic()
    answer = client.post("/sso/acme/saml/acs", data={"SAMLResponse": "PD94" * (10 * 2**18)})
    assert answer.status_code in (403, 413)
    assert time.monotonic() - started < 5


# --- single logout -------------------------------------------------------------------------


def test_a_logout_response_answering_another_customers_request_is_refused(
    app, client, acme_with_idp, idp, make_customer, import_csv
):
    """acme and beta share the IdP. The IdP's genuine LogoutResponse to a logout request of
    beta's, sent to acme's sls: refused, and beta's request stays open for its own answer."""
    _, beta = two_customers_with_the_same_idp(acme_with_idp, make_customer, import_csv, idp)
    log_in(client, idp)
    query = single(log_out(client))
    server = idp.server(client)
    request = server.parse_logout_request(
        query["SAMLRequest"],
        BINDING_HTTP_REDIRECT,
        sigalg=query["SigAlg"],
        signature=query["Signature"],
    ).message
    # A logout request Kursa sent for beta (stored as start_logout stores it).
    beta_provider = db.session.scalar(
        select(IdentityProvider).where(IdentityProvider.customer_id == beta.id)
    )
    now = portal.core.db.utcnow()
    db.session.add(
        SamlLogoutRequest(
            id="id-beta-logout-1",
            provider_id=beta_provider.id,
            created_at=now,
            expires_at=now + timedelta(minutes=10),
        )
    )
    db.session.commit()
    request.id = "id-beta-logout-1"

    answer = client.get(local(idp_answer(server, request)))

    assert answer.status_code == 403
    assert not db.session.get(SamlLogoutRequest, "id-beta-logout-1").is_used


def test_a_logout_response_signed_by_another_idp_of_the_customer_is_refused(
    app, client, acme_with_idp, idp, key_pairs
):
    """acme trusts a second IdP; it answers the logout Kursa sent to corp (InResponseTo
    right, its own issuer and key): refused, the request stays open."""
    customer, _ = acme_with_idp()
    other = SamlIdp(key_pairs["attacker"], entity_id="https://other-idp.test/idp")
    add_saml_provider(
        customer, "other", other.metadata, match="username", match_attribute="uid", actor="t"
    )
    db.session.commit()
    log_in(client, idp)
    query = single(log_out(client))
    request = (
        idp.server(client)
        .parse_logout_request(
            query["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            sigalg=query["SigAlg"],
            signature=query["Signature"],
        )
        .message
    )

    answer = client.get(local(idp_answer(other.server(client), request)))

    assert answer.status_code == 403
    assert not db.session.get(SamlLogoutRequest, request.id).is_used


def test_beta_idps_logout_request_naming_an_acme_name_id_ends_nothing_at_acme(
    app, client, acme_with_idp, idp, key_pairs, make_customer, import_csv
):
    """beta's own IdP (another entity and key) signs a valid LogoutRequest naming acme's
    user's NameID and sends it to beta's sls and to acme's: acme's session lives."""
    acme_with_idp()
    session = log_in(client, idp)
    beta = make_customer("beta", "Beta")
    import_csv(beta, UNITS, [["b1", "B", "One", "b1@beta.test", "E1", "1"]])
    evil = SamlIdp(key_pairs["attacker"], entity_id="https://beta-idp.test/idp")
    add_saml_provider(
        beta, "corp", evil.metadata, match="username", match_attribute="uid", actor="t"
    )
    db.session.commit()
    for sls, sp in ((BETA_SLS, BETA_SP), (SLS, SP_ENTITY)):
        _, xml = evil.server(client).create_logout_request(
            sls,
            sp,
            name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=session.name_id),
            sign=True,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        encoded = base64.b64encode(str(xml).encode()).decode()
        app.test_client().post(sls[len("https://kursa.test") :], data={"SAMLRequest": encoded})

    db.session.refresh(session)
    assert session.ended_at is None
    assert client.get(PAGE).status_code == 200


@pytest.mark.parametrize("insert", ["<!---->", "<![CDATA[]]>"])
def test_markup_in_a_posted_logout_request_name_id_does_not_shorten_it(
    app, client, acme_with_idp, idp, insert
):
    """The message is verified on lxml's parse and read on defusedxml's (expat): the IdP
    signed the NameID 'subject-u1.evil' (another person); a comment or empty CDATA after
    'subject-u1' keeps the signature valid; the reader must still see the whole NameID."""
    acme_with_idp()
    session = log_in(client, idp)
    xml = signed_logout_request_xml(idp, client, "subject-u1.evil")
    forged = xml.replace(">subject-u1.evil<", f">subject-u1{insert}.evil<", 1)
    assert forged != xml
    encoded = base64.b64encode(forged.encode()).decode()

    answer = app.test_client().post("/sso/acme/saml/sls", data={"SAMLRequest": encoded})

    assert answer.status_code in (302, 403)
    db.session.refresh(session)
    assert session.ended_at is None
