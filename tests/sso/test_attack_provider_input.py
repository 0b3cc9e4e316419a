"""Provider input an IT admin or a provider controls, refused plainly and stored nowhere:
a provider disabled during a login, metadata files in other encodings, without an entity id
or too large, loose OIDC discovery documents, and internationalised email domains."""

import io
import json
import re
import threading

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from portal.core.audit import AuditEntry
from portal.core.db import db
from sso import oidc
from sso.models import IdentityProvider, OidcRequest
from sso.operations import set_provider_enabled
from tests.conftest import csrf_token
from tests.courses import helpers
from tests.sso import test_oidc
from tests.sso.conftest import IDP_ENTITY, logged_in_account_id
from tests.sso.test_admin_pages import errors_under, post
from tests.sso.test_oidc import callback, start

# The OIDC login fixtures of test_oidc (its npm oidc-provider on loopback).
op = test_oidc.op
acme_with_op = test_oidc.acme_with_op
flask = test_oidc.flask
fresh_caches = test_oidc.fresh_caches
acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as = helpers.account_of, helpers.login_as
PAGE = "/sso/admin/acme"
LATIN1 = '<?xml version="1.0" encoding="ISO-8859-1"?>'


@pytest.fixture
def it_admin(login_as):
    return login_as("finn", "it_admin", None)


@pytest.fixture
def add_saml_file(app, make_customer, flask, tmp_path):
    """`flask sso add-saml p --metadata-file F` with F holding `content` (bytes)."""
    make_customer("acme", "Acme")

    def add(content: bytes):
        path = tmp_path / "idp.xml"
        path.write_bytes(content)
        return flask(
            "sso", "add-saml", "p", "--customer", "acme", "--metadata-file", str(path),
            "--match", "nameid",
        )  # fmt: skip

    return add


def assert_cli_refused(result, sentence: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback, a sentence
    assert sentence in result.output
    assert db.session.scalar(select(IdentityProvider)) is None


def body_of(metadata: str) -> str:
    """The metadata without its XML declaration (pysaml2 writes one naming UTF-8)."""
    return metadata.split("?>", 1)[1] if metadata.startswith("<?xml") else metadata


def test_a_provider_disabled_during_a_login_refuses_its_callback(app, client, acme_with_op, op):
    acme_with_op()
    redirect = op.sign_in(start(client), "ida")
    set_provider_enabled(db.session.scalar(select(IdentityProvider)), False, actor="test")
    db.session.commit()

    answer = callback(client, redirect)

    assert answer.status_code == 403
    assert "Kursa could not accept the answer" in answer.get_data(as_text=True)
    assert logged_in_account_id(client) is None
    refusal = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "login.refused").order_by(AuditEntry.id)
    )
    assert refusal.details["reason"] == "provider_disabled"
    assert db.session.scalar(select(OidcRequest.is_used)) is True


def test_a_metadata_file_not_in_utf8_is_refused_in_a_sentence(add_saml_file, idp):
    result = add_saml_file((body_of(idp.metadata) + "<!-- \xe6 -->").encode("latin-1"))

    assert_cli_refused(result, "is not UTF-8, so Kursa cannot read it; save it as UTF-8 XML.")


def test_a_metadata_file_in_the_encoding_it_declares_is_read(add_saml_file, idp):
    content = LATIN1 + body_of(idp.metadata) + "<!-- bl\xe5b\xe6r -->"

    result = add_saml_file(content.encode("latin-1"))

    assert result.exit_code == 0, result.output
    stored = db.session.scalar(select(IdentityProvider)).settings
    assert stored["entity_id"] == IDP_ENTITY
    assert stored["metadata_xml"].startswith('<?xml version="1.0"?>')  # kept as UTF-8 now
    assert stored["metadata_xml"].endswith("<!-- bl\xe5b\xe6r -->")


def test_a_declared_encoding_the_bytes_are_not_in_is_refused(add_saml_file, idp):
    content = '<?xml version="1.0" encoding="no-such-codec"?>' + body_of(idp.metadata)

    result = add_saml_file(content.encode())

    assert_cli_refused(result, "is not in no-such-codec, as it declares, so Kursa cannot read")


@pytest.mark.parametrize("entity", ["", 'entityID=""', 'entityID="  "'])
def test_metadata_without_an_entity_id_is_refused(add_saml_file, idp, entity):
    content = idp.metadata.replace(f'entityID="{IDP_ENTITY}"', entity)

    result = add_saml_file(content.encode())

    assert_cli_refused(result, "The metadata gives the identity provider no entityID")


def test_a_metadata_file_over_2_mb_is_refused_unread(add_saml_file, idp):
    huge = idp.metadata + "<!--" + "x" * (2 * 2**20) + "-->"

    result = add_saml_file(huge.encode())

    assert_cli_refused(result, "is larger than 2 MB; is it the IdP's metadata?")


def test_the_pages_refuse_a_latin1_upload_and_oversized_metadata(it_admin, acme, idp):
    latin1 = (body_of(idp.metadata) + "<!-- \xe6 -->").encode("latin-1")
    huge = idp.metadata + "<!--" + "x" * (2 * 2**20) + "-->"
    cases = [
        ("metadata_file", {"metadata_file": (io.BytesIO(latin1), "idp.xml")}, "is not UTF-8"),
        (
            "metadata_file",
            {"metadata_file": (io.BytesIO(huge.encode()), "idp.xml")},
            "Metadata file: The file is larger than 2 MB",
        ),
        ("metadata_xml", {"metadata_xml": huge}, "The pasted metadata is larger than 2 MB"),
    ]

    for field, data, message in cases:
        answer = post(it_admin, f"{PAGE}/saml/new", {"name": "corp", "match": "email", **data})
        assert answer.status_code == 400, field
        assert any(message in error for error in errors_under(answer.get_data(True), field))
    assert db.session.scalar(select(IdentityProvider)) is None


class DiscoveryServer:
    """A provider's discovery document on loopback; `document` is served as JSON (or bytes)."""

    def __init__(self):
        self.document: dict | list | bytes = {}
        self._server = make_server("127.0.0.1", 0, self._answer, threaded=True)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self.url = f"{self.issuer}/.well-known/openid-configuration"
        self.sound = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "end_session_endpoint": f"{self.issuer}/logout",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        }

    @Request.application
    def _answer(self, request):
        body = self.document
        body = body if isinstance(body, bytes) else json.dumps(body).encode()
        return Response(body, mimetype="application/json")

    def __enter__(self):
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def discovery_server():
    with DiscoveryServer() as server:
        yield server


@pytest.fixture
def add_oidc(app, make_customer, flask, discovery_server):
    make_customer("acme", "Acme")

    def add(name: str = "corp"):
        return flask(
            "sso", "add-oidc", name, "--customer", "acme", "--discovery", discovery_server.url,
            "--client-id", "kursa", "--client-secret-env", "KURSA_TEST_OIDC_SECRET",
            "--match", "email",
        )  # fmt: skip

    return add


def flawed(sound: dict, key: str, value) -> dict:
    return {**sound, key: value}


FLAWS = {  # a change to a sound document -> what the refusal says
    "another issuer": ("issuer", "https://other.test", "names the issuer 'https://other.test'"),
    "issuer as a list": ("issuer", ["https://a.test"], "names the issuer ['https://a.test']"),
    "issuer as a number": ("issuer", 5, "names the issuer 5"),
    "javascript: authorization": (
        "authorization_endpoint",
        "javascript:alert(1)",
        "authorization_endpoint must be an https:// address, not 'javascript:alert(1)'",
    ),
    "file: authorization": (
        "authorization_endpoint",
        "file:///etc/passwd",
        "authorization_endpoint must be an https:// address",
    ),
    "javascript: end_session": (
        "end_session_endpoint",
        "javascript:alert(1)",
        "end_session_endpoint must be an https:// address",
    ),
    "file: token": ("token_endpoint", "file:///etc/passwd", "token_endpoint address must"),
    "file: userinfo": ("userinfo_endpoint", "file:///x", "userinfo_endpoint address must"),
    "ftp: jwks": ("jwks_uri", "ftp://127.0.0.1/jwks", "jwks_uri address must start with"),
    "endpoint as a list": ("token_endpoint", ["https://a.test"], "token_endpoint is not a web"),
    "response types as a string": (
        "response_types_supported",
        "code id_token",
        "response_types_supported must be a list of strings",
    ),
    "PKCE methods as a string": (
        "code_challenge_methods_supported",
        "S256 plain",
        "code_challenge_methods_supported must be a list of strings",
    ),
}


@pytest.mark.parametrize("flaw", FLAWS)
def test_a_flawed_discovery_document_is_refused_when_adding(add_oidc, discovery_server, flaw):
    key, value, sentence = FLAWS[flaw]
    discovery_server.document = flawed(discovery_server.sound, key, value)

    assert_cli_refused(add_oidc(), sentence)


@pytest.mark.parametrize("flaw", FLAWS)
def test_a_discovery_document_flawed_later_is_refused_when_fetched_again(
    add_oidc, discovery_server, flaw
):
    discovery_server.document = discovery_server.sound
    assert add_oidc().exit_code == 0
    key, value, sentence = FLAWS[flaw]
    discovery_server.document = flawed(discovery_server.sound, key, value)
    oidc.forget_caches()  # as after the hour a document is cached

    with pytest.raises(ValueError, match=re.escape(sentence)):
        oidc.fetch_discovery(discovery_server.url)


def test_a_login_is_not_sent_to_a_javascript_address(app, client, add_oidc, discovery_server):
    discovery_server.document = discovery_server.sound
    assert add_oidc().exit_code == 0
    discovery_server.document = flawed(
        discovery_server.sound, "authorization_endpoint", "javascript:alert(1)"
    )
    oidc.forget_caches()

    answer = client.get("/sso/acme/corp/login")

    assert answer.status_code == 503 and "Location" not in answer.headers
    assert db.session.scalar(select(OidcRequest)) is None


@pytest.mark.parametrize("issuer_end", ["", "/"])
def test_an_issuer_with_or_without_its_trailing_slash_is_accepted(
    add_oidc, discovery_server, issuer_end
):
    discovery_server.document = {**discovery_server.sound, "issuer": discovery_server.issuer}
    discovery_server.document["issuer"] += issuer_end

    assert add_oidc().exit_code == 0
    stored = db.session.scalar(select(IdentityProvider)).settings
    assert stored["issuer"] == discovery_server.issuer + issuer_end


def test_an_oversized_discovery_document_names_the_limit_in_kb(add_oidc, discovery_server):
    discovery_server.document = {**discovery_server.sound, "padding": "x" * 300_000}

    assert_cli_refused(add_oidc(), "is larger than 256 KB; is that the right address?")


IDN = "æblegrød.dk"
IDN_ASCII = "xn--blegrd-oua3m.dk"


@pytest.fixture
def corp_provider(app, acme_with_idp, flask):
    _customer, provider = acme_with_idp()
    return provider


def typed_email_leads_to(client, email: str) -> str | None:
    answer = client.post(
        "/login", data={"email": email, "csrf_token": csrf_token(client, "/login")}
    )
    return answer.headers.get("Location")


@pytest.mark.parametrize("stored_as", [IDN, IDN_ASCII, "ÆBLEGRØD.DK"])
@pytest.mark.parametrize("typed", [f"ida@{IDN}", f"ida@{IDN_ASCII}", "Ida@ÆbleGrød.dk"])
def test_an_internationalised_domain_is_stored_in_one_form_and_matches_either(
    client, corp_provider, flask, stored_as, typed
):
    result = flask("sso", "set-domains", "corp", "--customer", "acme", stored_as)

    assert result.exit_code == 0, result.output
    assert db.session.get(IdentityProvider, corp_provider.id).settings["email_domains"] == [
        IDN_ASCII
    ]
    assert typed_email_leads_to(client, typed) == "/sso/acme/corp/login"


def test_a_look_alike_domain_leads_nowhere(client, corp_provider, flask):
    assert flask("sso", "set-domains", "corp", "--customer", "acme", "example.test").exit_code == 0

    assert typed_email_leads_to(client, "ida@ex\u0430mple.test") is None  # Cyrillic a
    assert typed_email_leads_to(client, "ida@example.test") == "/sso/acme/corp/login"


@pytest.mark.parametrize("bad", ["*.example.test", "exa_mple.test", "acme..test", "a" * 64 + ".dk"])
def test_a_domain_that_is_no_idna_name_is_still_refused(corp_provider, flask, bad):
    result = flask("sso", "set-domains", "corp", "--customer", "acme", bad)

    assert result.exit_code == 1 and "is not a domain name such as example.com" in result.output
