"""Provider input an IT admin or a provider controls, refused plainly and stored nowhere:
a provider disabled during a login, metadata files in other encodings, without an entity id
or too large, loose OIDC discovery documents, and internationalised email domains."""

import io

import pytest
from sqlalchemy import select

from portal.core.audit import AuditEntry
from portal.core.db import db
from sso.models import IdentityProvider, OidcRequest
from sso.operations import set_provider_enabled
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
