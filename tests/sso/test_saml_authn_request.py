"""Kursa's AuthnRequest as the IdP sees it: pysaml2's IdP (Server) parses the Redirect-binding
query with signature verification against the SP metadata Kursa publishes, finds the
request well formed and signed (SHA-256), asking for a persistent NameID at the right ACS and
Destination; a tampered query fails that verification."""

import base64
import zlib
from urllib.parse import parse_qs, urlsplit

import pytest
from saml2 import BINDING_HTTP_REDIRECT
from saml2.response import IncorrectlySigned
from saml2.s_utils import decode_base64_and_inflate
from saml2.saml import NAMEID_FORMAT_PERSISTENT
from saml2.xmldsig import SIG_RSA_SHA256, SIG_RSA_SHA512

from tests.sso.conftest import ACS, IDP_SSO, SP_ENTITY, start_login


def redirect_query(location: str) -> dict[str, str]:
    """The Redirect binding's parameters, decoded once (as the IdP's web framework hands them)."""
    query = parse_qs(urlsplit(location).query, strict_parsing=True)
    assert all(len(values) == 1 for values in query.values())
    return {key: values[0] for key, values in query.items()}


def parse(server, query: dict[str, str]):
    """What pysaml2's IdP does with a Redirect-binding AuthnRequest (signature included)."""
    return server.parse_authn_request(
        query["SAMLRequest"],
        BINDING_HTTP_REDIRECT,
        relay_state=query.get("RelayState"),
        sigalg=query.get("SigAlg"),
        signature=query.get("Signature"),
    )


def deflate(xml: str) -> str:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(compressor.compress(xml.encode()) + compressor.flush()).decode()


@pytest.fixture
def started(app, client, acme_with_idp, idp):
    acme_with_idp()
    return redirect_query(start_login(client).location), idp.server(client)


def test_the_idp_verifies_the_signed_authn_request(started):
    query, server = started

    parsed = parse(server, query)

    assert query["SigAlg"] == SIG_RSA_SHA256
    request = parsed.message
    assert parsed.sender() == SP_ENTITY
    assert request.issuer.text == SP_ENTITY
    assert request.name_id_policy.format == NAMEID_FORMAT_PERSISTENT
    assert request.assertion_consumer_service_url == ACS
    assert request.protocol_binding == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
    assert request.destination == IDP_SSO
    # The IdP would answer at the ACS the request names, which the SP metadata lists.
    assert server.pick_binding("assertion_consumer_service", entity_id=SP_ENTITY)[1] == ACS


def _other_acs(query: dict[str, str]) -> dict[str, str]:
    xml = decode_base64_and_inflate(query["SAMLRequest"]).decode()
    assert ACS in xml
    return {**query, "SAMLRequest": deflate(xml.replace(ACS, "https://evil.example.test/acs"))}


TAMPERED = {
    "request_changed": _other_acs,
    "sig_alg_changed": lambda query: {**query, "SigAlg": SIG_RSA_SHA512},
    "signature_changed": lambda query: {
        **query,
        "Signature": base64.b64encode(bytes(256)).decode(),
    },
    "signature_removed": lambda query: {k: v for k, v in query.items() if k != "Signature"},
    "relay_state_added": lambda query: {**query, "RelayState": "https://evil.example.test/"},
}


@pytest.mark.parametrize("tamper", TAMPERED, ids=str)
def test_a_tampered_query_fails_verification(started, tamper):
    query, server = started
    with pytest.raises(IncorrectlySigned):
        parse(server, TAMPERED[tamper](query))


def test_a_signature_of_another_request_fails_verification(client, started):
    query, server = started
    second = redirect_query(start_login(client).location)
    assert second["SAMLRequest"] != query["SAMLRequest"]

    with pytest.raises(IncorrectlySigned):
        parse(server, {**query, "Signature": second["Signature"]})
