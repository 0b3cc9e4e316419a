"""A real SAML IdP in-process (pysaml2's own Server, its own key pair) and an SP set up for it.

`login_flow` drives the browser's part: GET Kursa's login address, hand the Redirect to the
IdP, let the IdP answer that request and return the base64 SAMLResponse ready to POST.
"""

import base64
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
import saml2.time_util
from saml2 import BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import AUTHN_PASSWORD_PROTECTED, NAME_FORMAT_URI, NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server
from saml2.sigver import get_xmlsec_binary
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from portal.core.db import db
from sso.keys import write_self_signed_pair
from sso.operations import add_saml_provider

BASE_URL = "https://kursa.test"
IDP_ENTITY = "https://idp.corp.test/metadata"
IDP_SSO = "https://idp.corp.test/sso/redirect"
IDP_SLO = "https://idp.corp.test/slo/redirect"
ACS = f"{BASE_URL}/sso/acme/saml/acs"
SP_ENTITY = f"{BASE_URL}/sso/acme/saml/metadata"
OTHER_SP = "https://other-sp.test/metadata"
UNITS = [["1", "Acme HQ", "", ""]]
PERSONS = [
    ["u1", "Ida", "Lund", "ida.lund@acme.test", "E100", "1"],
    ["u2", "Bo", "Holm", "bo.holm@acme.test", "E200", "1"],
]


@pytest.fixture(scope="session")
def key_pairs(tmp_path_factory):
    """Key pairs made once: the SP's, the IdP's, and an attacker's."""
    root = tmp_path_factory.mktemp("saml-keys")
    return {name: write_self_signed_pair(root / name, name) for name in ("sp", "idp", "attacker")}


@pytest.fixture(autouse=True)
def sso_settings(engine_app, key_pairs, monkeypatch):
    sso = engine_app.config["KURSA"]["sso"]
    key_file, cert_file = key_pairs["sp"]
    monkeypatch.setitem(engine_app.config["KURSA"]["web"], "base_url", BASE_URL)
    monkeypatch.setitem(sso, "allow_private_addresses", True)  # the test IdPs are on loopback
    monkeypatch.setitem(sso, "key_file", key_file)
    monkeypatch.setitem(sso, "cert_file", cert_file)


class SamlIdp:
    """pysaml2's IdP with one key pair; `server()` trusts the SP metadata Kursa publishes."""

    def __init__(self, key_pair: tuple[str, str], entity_id: str = IDP_ENTITY):
        self.key_file, self.cert_file = key_pair
        self.entity_id = entity_id
        self._server = None

    def config(self, sp_metadata: list[str] | None = None) -> IdPConfig:
        settings = {
            "entityid": self.entity_id,
            "xmlsec_binary": get_xmlsec_binary(["/usr/bin"]),
            "key_file": self.key_file,
            "cert_file": self.cert_file,
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(IDP_SSO, BINDING_HTTP_REDIRECT)],
                        "single_logout_service": [(IDP_SLO, BINDING_HTTP_REDIRECT)],
                    },
                    # pysaml2 checks the Redirect signature of every request only with this.
                    "want_authn_requests_signed": True,
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": 5},
                            "attribute_restrictions": None,
                            "name_form": NAME_FORMAT_URI,
                        }
                    },
                }
            },
        }
        if sp_metadata:
            settings["metadata"] = {"inline": sp_metadata}
        conf = IdPConfig()
        conf.load(settings)
        return conf

    @property
    def metadata(self) -> str:
        return create_metadata_string(None, config=self.config()).decode()

    def server(self, client) -> Server:
        if self._server is None:
            sp_metadata = client.get("/sso/acme/saml/metadata").get_data(as_text=True)
            # A second SP the IdP also serves, for answers addressed to the wrong audience.
            other = sp_metadata.replace(f'entityID="{SP_ENTITY}"', f'entityID="{OTHER_SP}"')
            self._server = Server(config=self.config([sp_metadata, other]))
        return self._server

    def respond(
        self,
        client,
        in_response_to: str | None,
        *,
        username: str = "u1",
        subject: str = "subject-u1",
        sign_response: bool = True,
        sign_assertion: bool = True,
        destination: str = ACS,
        audience: str = SP_ENTITY,
        recipient: str | None = None,
        **extra,
    ) -> str:
        """A SAMLResponse (XML text) for `username`, signed with SHA-256 as asked."""
        server = self.server(client)
        identity = {"uid": [username], "mail": [f"{username}@acme.test"]}
        if recipient:
            extra["farg"] = {
                "assertion": {
                    "subject": {
                        "subject_confirmation": {
                            "method": "urn:oasis:names:tc:SAML:2.0:cm:bearer",
                            "subject_confirmation_data": {
                                "recipient": recipient,
                                "in_response_to": in_response_to,
                            },
                        }
                    }
                }
            }
        response = server.create_authn_response(
            identity,
            in_response_to,
            destination,
            audience,
            userid=username,
            name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=subject),
            authn={"class_ref": AUTHN_PASSWORD_PROTECTED},
            sign_response=sign_response,
            sign_assertion=sign_assertion,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
            **extra,
        )
        return str(response)


def as_another_idp(metadata: str, name: str) -> str:
    """The IdP's metadata under another entity id: a second IdP of the same customer (one
    customer cannot add the same IdP twice)."""
    return metadata.replace(f'entityID="{IDP_ENTITY}"', f'entityID="https://{name}.test/idp"')


@pytest.fixture
def idp(key_pairs):
    return SamlIdp(key_pairs["idp"])


@pytest.fixture
def attacker_idp(key_pairs):
    """Same entity id as the real IdP, another key."""
    return SamlIdp(key_pairs["attacker"])


@pytest.fixture
def acme_with_idp(make_customer, import_csv, idp):
    """Customer acme with persons u1 and u2 from a real import and the IdP `corp`."""

    def make(**provider_settings):
        customer = make_customer("acme", "Acme")
        import_csv(customer, UNITS, PERSONS)
        options = {"match": "username", **provider_settings}
        if options["match"] != "nameid":  # the nameid rule takes no attribute
            options.setdefault("match_attribute", "uid")
        provider = add_saml_provider(customer, "corp", idp.metadata, actor="test", **options)
        db.session.commit()
        return customer, provider

    return make


@dataclass
class Started:
    request_id: str
    location: str


def start_login(client, next_url: str = "") -> Started:
    """GET Kursa's login address; return the AuthnRequest id the IdP receives."""
    answer = client.get("/sso/acme/corp/login" + (f"?next={next_url}" if next_url else ""))
    assert answer.status_code == 302, answer.get_data(as_text=True)
    location = answer.headers["Location"]
    assert location.startswith(IDP_SSO + "?")
    return Started(request_id=_request_id(location), location=location)


def _request_id(location: str) -> str:
    from saml2 import samlp
    from saml2.pack import http_redirect_message  # noqa: F401 - documents the binding
    from saml2.s_utils import decode_base64_and_inflate

    query = parse_qs(urlsplit(location).query)
    assert {"SAMLRequest", "SigAlg", "Signature"} <= set(query)
    request = samlp.authn_request_from_string(decode_base64_and_inflate(query["SAMLRequest"][0]))
    assert request.name_id_policy.format == NAMEID_FORMAT_PERSISTENT
    assert request.assertion_consumer_service_url == ACS
    return request.id


def post_acs(client, xml: str):
    encoded = base64.b64encode(xml.encode()).decode()
    return client.post("/sso/acme/saml/acs", data={"SAMLResponse": encoded})


def logged_in_account_id(client) -> str | None:
    with client.session_transaction() as session:
        return session.get("_user_id")


@pytest.fixture
def sp_clock(monkeypatch):
    """Move the SP's clock (pysaml2's and Kursa's checks read the same one)."""

    def move(seconds: float) -> None:
        real = time.time
        monkeypatch.setattr(saml2.time_util, "utc_now", lambda: int(real() + seconds))

    return move
