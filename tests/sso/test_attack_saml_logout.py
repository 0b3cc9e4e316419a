"""Attacks on SAML single logout (/sso/<customer>/saml/sls): wrapping, replay, other customers,
RelayState. Every test asserts the safe outcome; a failing test is a finding."""

import base64
import copy

from lxml import etree
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from portal.core.db import db
from sso.operations import add_saml_provider
from tests.sso.conftest import IDP_SLO, SP_ENTITY, UNITS
from tests.sso.test_saml_logout import PAGE, SLS, idp_request, local, log_in, refusals

SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"


def signed_logout_request_xml(idp, client, subject: str, session_index: str = "") -> str:
    """A LogoutRequest with an XML signature by the IdP's real key (HTTP-POST binding)."""
    _, xml = idp.server(client).create_logout_request(
        SLS,
        SP_ENTITY,
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=subject),
        session_indexes=[session_index] if session_index else None,
        sign=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    return str(xml)


def test_post_logout_request_wrapping_a_signed_request_of_someone_else_ends_nothing(
    app, client, acme_with_idp, idp
):
    """The attacker (u2) captures the IdP-signed LogoutRequest of their own logout (POST
    binding), nests it inside a forged LogoutRequest (new root, same structure) that names the
    victim u1, and gives the root a Signature whose Reference is '#<root ID>' but whose value
    is junk. Kursa's own check reads only the root's direct Signature (reference OK); xmlsec1
    with --node-id <root ID> starts at the root and verifies the FIRST Signature below it,
    the genuine nested one. Safe outcome: 403 and the victim's session lives."""
    acme_with_idp()
    victim = log_in(client, idp)  # u1, subject-u1
    genuine = signed_logout_request_xml(idp, client, "subject-u2")  # attacker's own logout

    inner = etree.fromstring(genuine.encode())
    forged = copy.deepcopy(inner)
    forged.set("ID", "id-forged-root-0001")
    for child in list(forged):
        if child.tag in (f"{DS}Signature", f"{SAMLP}SessionIndex"):
            forged.remove(child)
    forged.find(f"{SAML}NameID").text = victim.name_id
    # The genuine signed request goes into Extensions, before the root's own (fake) Signature.
    extensions = etree.SubElement(forged, f"{SAMLP}Extensions")
    forged.find(f"{SAML}Issuer").addnext(extensions)
    extensions.append(inner)
    fake = copy.deepcopy(inner.find(f"{DS}Signature"))
    fake.find(f"{DS}SignedInfo/{DS}Reference").set("URI", "#id-forged-root-0001")
    extensions.addnext(fake)
    document = etree.tostring(forged)

    answer = app.test_client().post(
        "/sso/acme/saml/sls", data={"SAMLRequest": base64.b64encode(document).decode()}
    )

    db.session.refresh(victim)
    assert answer.status_code == 403, (answer.status_code, refusals())
    assert victim.ended_at is None
    assert client.get(PAGE).status_code == 200


def test_replayed_redirect_logout_request_does_not_end_a_later_login(
    app, client, acme_with_idp, idp
):
    """A signed IdP LogoutRequest (no SessionIndex) seen once in a browser's history or a proxy
    log, replayed minutes later after the person logged in again: the new session must live
    (the request's ID was already used)."""
    acme_with_idp()
    log_in(client, idp)
    _, location = idp_request(idp.server(client), "")
    assert app.test_client().get(local(location)).status_code == 302

    again = log_in(client, idp)
    replay = app.test_client().get(local(location))

    db.session.refresh(again)
    assert again.ended_at is None, "the replay ended the new login"
    assert replay.status_code == 403


def test_logout_request_for_another_customers_provider_ends_nothing(
    app, client, acme_with_idp, idp, make_customer, import_csv
):
    """beta has the same IdP (same entity id and key). A LogoutRequest the IdP addressed to
    beta's sls, replayed at acme's sls, must not end acme's session (Destination differs)."""
    acme_with_idp()
    session = log_in(client, idp)
    beta = make_customer("beta", "Beta")
    import_csv(beta, UNITS, [["b1", "B", "One", "b1@beta.test", "E1", "1"]])
    add_saml_provider(
        beta, "corp", idp.metadata, match="username", match_attribute="uid", actor="t"
    )
    db.session.commit()
    beta_sls = SLS.replace("/acme/", "/beta/")
    _, xml = idp.server(client).create_logout_request(
        beta_sls,
        SP_ENTITY.replace("/acme/", "/beta/"),
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=session.name_id),
        sign=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    answer = app.test_client().post(
        "/sso/acme/saml/sls", data={"SAMLRequest": base64.b64encode(str(xml).encode()).decode()}
    )
    db.session.refresh(session)
    assert answer.status_code == 403
    assert session.ended_at is None


def test_relay_state_of_idp_logout_goes_only_to_the_idp(app, client, acme_with_idp, idp):
    acme_with_idp()
    session = log_in(client, idp)
    request_id, request = idp.server(client).create_logout_request(
        SLS,
        SP_ENTITY,
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text="subject-u1"),
        session_indexes=[session.session_index],
        sign=False,
    )
    from saml2 import BINDING_HTTP_REDIRECT

    info = idp.server(client).apply_binding(
        BINDING_HTTP_REDIRECT,
        str(request),
        SLS,
        relay_state="https://evil.test/x",
        sign=True,
        sigalg=SIG_RSA_SHA256,
    )
    answer = app.test_client().get(local(dict(info["headers"])["Location"]))
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith(IDP_SLO + "?")


def test_unsigned_logout_response_garbage_is_refused_not_500(app, client, acme_with_idp):
    acme_with_idp()
    for query in (
        "SAMLRequest=%%%",
        "SAMLResponse=",
        "SAMLRequest=" + "A" * 200000,
        "SAMLRequest=eJwrSS0u0c3IzcnXBQAgKwRl&SAMLRequest=x",
        "RelayState=x",
    ):
        answer = app.test_client().get(f"/sso/acme/saml/sls?{query}")
        assert answer.status_code in (400, 403), (query, answer.status_code)
    for data in (
        {"SAMLRequest": "PD94"},
        {"SAMLRequest": base64.b64encode(b"<a>" * 5000).decode()},
        {"SAMLResponse": base64.b64encode(b"<x/>").decode()},
    ):
        answer = app.test_client().post("/sso/acme/saml/sls", data=data)
        assert answer.status_code in (400, 403), (data, answer.status_code)
