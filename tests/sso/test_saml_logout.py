"""SAML single logout, Redirect binding, against pysaml2's own IdP in both directions."""

import base64
import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from saml2 import BINDING_HTTP_REDIRECT
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.sigver import verify_redirect_signature
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256
from sqlalchemy import select

from portal.accounts.models import LoginSession
from portal.accounts.sessions import SESSION_KEY
from portal.core.audit import AuditEntry
from portal.core.db import db
from sso.models import SamlLogoutRequest
from sso.operations import add_saml_provider
from tests.conftest import csrf_token
from tests.servers.saml_idp import SamlIdpServer
from tests.sso.conftest import (
    BASE_URL,
    IDP_SLO,
    PERSONS,
    SP_ENTITY,
    UNITS,
    SamlIdp,
    post_acs,
    start_login,
)

SLS = f"{BASE_URL}/sso/acme/saml/sls"
PAGE = "/courses/"


def log_in(client, idp) -> LoginSession:
    started = start_login(client)
    assert post_acs(client, idp.respond(client, started.request_id)).status_code == 302
    assert client.get(PAGE).status_code == 200
    with client.session_transaction() as cookie:
        return db.session.get(LoginSession, cookie[SESSION_KEY])


def log_out(client) -> str:
    answer = client.post("/logout", data={"csrf_token": csrf_token(client, PAGE)})
    assert answer.status_code == 302
    return answer.headers["Location"]


def local(url: str) -> str:
    """The path and query a browser would ask Kursa for."""
    assert url.startswith(BASE_URL)
    return url[len(BASE_URL) :]


def single(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def sp_cert_body(key_pairs) -> str:
    text = open(key_pairs["sp"][1]).read()
    return "".join(line for line in text.splitlines() if "-----" not in line)


def kursas_request(server, location: str):
    """Kursa's LogoutRequest as the IdP reads it from the address Kursa sent the browser to
    (pysaml2 verifies its Redirect signature)."""
    query = single(location)
    return server.parse_logout_request(
        query["SAMLRequest"],
        BINDING_HTTP_REDIRECT,
        sigalg=query["SigAlg"],
        signature=query["Signature"],
    ).message


def idp_answer(server, request, *, sign=True, sigalg=SIG_RSA_SHA256, destination=SLS) -> str:
    """The IdP's signed LogoutResponse to Kursa's request, as the address it redirects to."""
    response = server.create_logout_response(request, [BINDING_HTTP_REDIRECT], sign=False)
    response.destination = destination
    info = server.apply_binding(
        BINDING_HTTP_REDIRECT, str(response), SLS, response=True, sign=sign, sigalg=sigalg
    )
    return dict(info["headers"])["Location"]


def idp_request(server, session_index: str, *, sign=True, subject="subject-u1") -> tuple:
    request_id, request = server.create_logout_request(
        SLS,
        SP_ENTITY,
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=subject),
        session_indexes=[session_index] if session_index else None,
        sign=False,
    )
    info = server.apply_binding(
        BINDING_HTTP_REDIRECT,
        str(request),
        SLS,
        relay_state="relay-7",
        sign=sign,
        sigalg=SIG_RSA_SHA256,
    )
    return request_id, dict(info["headers"])["Location"]


def refusals() -> list[str]:
    rows = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "logout.refused"))
    return [row.details["reason"] for row in rows]


def test_sp_metadata_publishes_the_logout_address(client, acme_with_idp):
    acme_with_idp()
    xml = client.get("/sso/acme/saml/metadata").get_data(as_text=True)
    assert re.search(r'SingleLogoutService[^>]+HTTP-Redirect[^>]+Location="' + SLS, xml)


def test_sp_initiated_logout_round_trip(client, acme_with_idp, idp):
    acme_with_idp()
    session = log_in(client, idp)

    location = log_out(client)

    assert location.startswith(IDP_SLO + "?")
    db.session.refresh(session)
    assert session.end_reason == "logout"
    assert client.get(PAGE).status_code == 302
    # pysaml2's IdP verifies the Redirect signature and reads who is to be logged out.
    server = idp.server(client)
    request = kursas_request(server, location)
    assert request.name_id.text == "subject-u1"
    assert [index.text for index in request.session_index] == [session.session_index]

    back = client.get(local(idp_answer(server, request)))
    assert back.status_code == 302 and back.headers["Location"].startswith("/login")
    # The same answer twice is refused: it answered its request already.
    assert client.get(local(idp_answer(server, request))).status_code == 403
    assert refusals() == ["unknown_request"]


@pytest.mark.parametrize(
    ("forger", "sign", "sigalg", "reason"),
    [
        ("attacker", True, SIG_RSA_SHA256, "signature"),
        ("idp", False, SIG_RSA_SHA256, "unsigned"),
        ("idp", True, SIG_RSA_SHA1, "signature_algorithm"),
    ],
)
def test_forged_or_unsigned_logout_responses_are_refused(
    client, acme_with_idp, idp, key_pairs, forger, sign, sigalg, reason
):
    acme_with_idp()
    log_in(client, idp)
    server = idp.server(client)
    request = kursas_request(server, log_out(client))
    signer = idp if forger == "idp" else SamlIdp(key_pairs["attacker"])
    answer = client.get(local(idp_answer(signer.server(client), request, sign=sign, sigalg=sigalg)))
    assert answer.status_code == 403
    assert refusals() == [reason]


def test_idp_initiated_logout_ends_the_session_on_every_device(
    app, client, acme_with_idp, idp, key_pairs
):
    acme_with_idp()
    session = log_in(client, idp)
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value)
    assert other.get(PAGE).status_code == 200
    server = idp.server(client)

    request_id, location = idp_request(server, session.session_index)
    answer = app.test_client().get(local(location))  # the IdP's front channel, any browser

    assert answer.status_code == 302 and answer.headers["Location"].startswith(IDP_SLO + "?")
    for device in (client, other):
        assert device.get(PAGE).status_code == 302
    db.session.refresh(session)
    assert session.end_reason == "idp_logout"
    # The answer is signed by Kursa's key and answers the IdP's request with Success.
    query = single(answer.headers["Location"])
    assert query["RelayState"] == "relay-7"
    assert verify_redirect_signature(query, server.sec.sec_backend, cert=sp_cert_body(key_pairs))
    response = server.parse_logout_request_response(query["SAMLResponse"], BINDING_HTTP_REDIRECT)
    assert response.response.in_response_to == request_id
    assert response.response.status.status_code.value.endswith(":Success")


def test_idp_logout_without_session_index_ends_every_session_of_the_name_id(
    app, client, acme_with_idp, idp
):
    acme_with_idp()
    first = log_in(client, idp)
    second_browser = app.test_client()
    second = log_in(second_browser, idp)
    assert first.id != second.id

    _, location = idp_request(idp.server(client), "")
    assert app.test_client().get(local(location)).status_code == 302

    ended = db.session.scalars(select(LoginSession.end_reason)).all()
    assert ended == ["idp_logout", "idp_logout"]


@pytest.mark.parametrize(
    ("signer", "sign", "reason"), [("attacker", True, "signature"), ("idp", False, "unsigned")]
)
def test_forged_or_unsigned_logout_requests_end_nothing(
    app, client, acme_with_idp, idp, key_pairs, signer, sign, reason
):
    acme_with_idp()
    session = log_in(client, idp)
    forger = idp if signer == "idp" else SamlIdp(key_pairs["attacker"])

    _, location = idp_request(forger.server(client), session.session_index, sign=sign)
    answer = app.test_client().get(local(location))

    assert answer.status_code == 403
    assert client.get(PAGE).status_code == 200
    db.session.refresh(session)
    assert session.ended_at is None
    assert refusals() == [reason]


def test_logout_without_idp_logout_service_ends_only_kursa_session(
    client, make_customer, import_csv, idp
):
    from sso.operations import add_saml_provider
    from tests.sso.conftest import PERSONS, UNITS

    customer = make_customer("acme", "Acme")
    import_csv(customer, UNITS, PERSONS)
    metadata = re.sub(r"<[^<>]*SingleLogoutService[^<>]*/>", "", idp.metadata)
    add_saml_provider(
        customer, "corp", metadata, actor="test", match="username", match_attribute="uid"
    )
    db.session.commit()
    session = log_in(client, idp)

    assert log_out(client).startswith("/login")
    db.session.refresh(session)
    assert session.end_reason == "logout"


def test_idp_logout_without_an_answer_address_still_ends_the_session(
    app, client, make_customer, import_csv, idp
):
    customer = make_customer("acme", "Acme")
    import_csv(customer, UNITS, PERSONS)
    metadata = re.sub(r"<[^<>]*SingleLogoutService[^<>]*/>", "", idp.metadata)
    add_saml_provider(
        customer, "corp", metadata, actor="test", match="username", match_attribute="uid"
    )
    db.session.commit()
    session = log_in(client, idp)

    _, location = idp_request(idp.server(client), session.session_index)
    answer = app.test_client().get(local(location))

    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")
    db.session.refresh(session)
    assert session.end_reason == "idp_logout"


# --- against npm saml-idp (samlp), an IdP that shares no code with Kursa --------------------

NPM_USER = {
    "userName": "ida.lund@acme.test",
    "nameIdFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "email": "ida.lund@acme.test",
}


@pytest.fixture(scope="module")
def npm_idp(tmp_path_factory):
    server = SamlIdpServer(
        tmp_path_factory.mktemp("saml-idp-slo"),
        acs_url=f"{BASE_URL}/sso/acme/saml/acs",
        audience=SP_ENTITY,
        user=NPM_USER,
        slo_url=SLS,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def acme_with_npm_idp(make_customer, import_csv, npm_idp):
    customer = make_customer("acme", "Acme")
    import_csv(customer, UNITS, PERSONS)
    add_saml_provider(customer, "corp", npm_idp.metadata(), match="email", actor="test")
    db.session.commit()


def npm_log_in(client, npm_idp, browser) -> LoginSession:
    started = client.get("/sso/acme/corp/login")
    encoded = npm_idp.sign_in(started.headers["Location"], browser)
    assert client.post("/sso/acme/saml/acs", data={"SAMLResponse": encoded}).status_code == 302
    with client.session_transaction() as cookie:
        return db.session.get(LoginSession, cookie[SESSION_KEY])


def post_form(client, page: str):
    """Submit the auto-posting form samlp answers with (its HTTP-POST binding) to Kursa."""
    action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', page).group(1))
    fields = {
        name: html.unescape(value)
        for name, value in re.findall(r'name="(\w+)"\s+value="([^"]*)"', page)
    }
    assert action == SLS and set(fields) & {"SAMLRequest", "SAMLResponse"}, page[:500]
    return client.post(local(action), data=fields)


def test_sp_initiated_logout_with_npm_saml_idp(client, acme_with_npm_idp, npm_idp):
    browser = requests.Session()
    session = npm_log_in(client, npm_idp, browser)

    location = log_out(client)
    assert location.startswith(f"{npm_idp.url}/saml/slo?")
    answer = browser.get(location, allow_redirects=False, timeout=5)
    answer.raise_for_status()  # samlp checked Kursa's signed request and answers by POST
    back = post_form(client, answer.text)

    assert back.status_code == 302 and back.headers["Location"].startswith("/login")
    assert refusals() == []
    db.session.refresh(session)
    assert session.end_reason == "logout"


def test_idp_initiated_logout_with_npm_saml_idp(app, client, acme_with_npm_idp, npm_idp):
    browser = requests.Session()
    session = npm_log_in(client, npm_idp, browser)

    answer = browser.get(f"{npm_idp.url}/signout", timeout=5)  # the IdP starts the logout
    answer.raise_for_status()
    kursa = post_form(app.test_client(), answer.text)

    assert kursa.status_code == 302, kursa.get_data(as_text=True)
    assert kursa.headers["Location"].startswith(f"{npm_idp.url}/saml/slo?")
    assert client.get(PAGE).status_code == 302
    db.session.refresh(session)
    assert session.end_reason == "idp_logout"
    done = browser.get(kursa.headers["Location"], allow_redirects=False, timeout=5)
    assert done.status_code < 400, done.text[:500]  # samlp accepted Kursa's signed answer


@pytest.mark.parametrize(
    ("signer", "sign", "status", "reason"),
    [
        ("idp", True, 302, None),
        ("attacker", True, 403, "signature"),
        ("idp", False, 403, "unsigned"),
    ],
)
def test_logout_requests_by_post_must_carry_a_valid_xml_signature(
    app, client, acme_with_idp, idp, key_pairs, signer, sign, status, reason
):
    acme_with_idp()
    session = log_in(client, idp)
    forger = idp if signer == "idp" else SamlIdp(key_pairs["attacker"])
    _, xml = forger.server(client).create_logout_request(
        SLS,
        SP_ENTITY,
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text="subject-u1"),
        session_indexes=[session.session_index],
        sign=sign,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    encoded = base64.b64encode(str(xml).encode()).decode()

    answer = app.test_client().post("/sso/acme/saml/sls", data={"SAMLRequest": encoded})

    assert answer.status_code == status
    db.session.refresh(session)
    assert (session.ended_at is not None) == (status == 302)
    assert refusals() == ([reason] if reason else [])


# --- Destination: required, and this customer's sls ----------------------------------------

DESTINATIONS = {"absent": None, "another_customers": SLS.replace("/acme/", "/beta/")}


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_a_logout_request_must_name_this_sls_as_its_destination(
    app, client, acme_with_idp, idp, destination
):
    """Signed by the right IdP, naming the right person, sent to acme's sls: refused unless
    its Destination is acme's sls (the attacks hold it at another customer's)."""
    acme_with_idp()
    session = log_in(client, idp)
    server = idp.server(client)
    _, request = server.create_logout_request(
        SLS,
        SP_ENTITY,
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=session.name_id),
        sign=False,
    )
    request.destination = DESTINATIONS[destination]
    info = server.apply_binding(
        BINDING_HTTP_REDIRECT, str(request), SLS, sign=True, sigalg=SIG_RSA_SHA256
    )

    answer = app.test_client().get(local(dict(info["headers"])["Location"]))

    assert answer.status_code == 403
    db.session.refresh(session)
    assert session.ended_at is None
    assert refusals() == ["destination"]


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_a_logout_response_must_name_this_sls_as_its_destination(
    client, acme_with_idp, idp, destination
):
    """The IdP's genuine answer to Kursa's logout, its Destination removed or another's:
    refused, and Kursa's request stays open for the right answer."""
    acme_with_idp()
    log_in(client, idp)
    server = idp.server(client)
    request = kursas_request(server, log_out(client))

    answer = client.get(local(idp_answer(server, request, destination=DESTINATIONS[destination])))

    assert answer.status_code == 403
    assert refusals() == ["destination"]
    assert not db.session.get(SamlLogoutRequest, request.id).is_used
