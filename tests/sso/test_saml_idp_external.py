"""Kursa's SP against an IdP it shares no code with: npm saml-idp (samlp) on loopback."""

import base64

import pytest
from sqlalchemy import select

from portal.accounts.models import Account
from portal.core.db import db
from portal.directory.models import Person
from sso.models import Identity
from sso.operations import add_saml_provider
from tests.servers.saml_idp import SamlIdpServer
from tests.sso.conftest import ACS, PERSONS, SP_ENTITY, UNITS, logged_in_account_id

USER = {
    "userName": "Ida.Lund@acme.test",  # the NameID; the directory has ida.lund@acme.test
    "nameIdFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "email": "Ida.Lund@acme.test",
    "firstName": "Ida",
    "lastName": "Lund",
}


@pytest.fixture(scope="module")
def saml_idp(tmp_path_factory):
    server = SamlIdpServer(
        tmp_path_factory.mktemp("saml-idp"), acs_url=ACS, audience=SP_ENTITY, user=USER
    ).start()
    yield server
    server.stop()


def test_login_through_npm_saml_idp_links_by_email(
    app, client, make_customer, import_csv, saml_idp
):
    customer = make_customer("acme", "Acme")
    import_csv(customer, UNITS, PERSONS)
    add_saml_provider(customer, "corp", saml_idp.metadata(), match="email", actor="test")
    db.session.commit()

    started = client.get("/sso/acme/corp/login")
    assert started.status_code == 302
    assert started.headers["Location"].startswith(saml_idp.url)
    encoded = saml_idp.sign_in(started.headers["Location"])
    base64.b64decode(encoded, validate=True)
    answer = client.post("/sso/acme/saml/acs", data={"SAMLResponse": encoded})

    assert answer.status_code == 302, answer.get_data(as_text=True)
    account = db.session.get(Account, int(logged_in_account_id(client)))
    ida = db.session.scalar(select(Person).where(Person.username == "u1"))
    assert account.person_id == ida.id
    assert db.session.scalar(select(Identity.subject)) == USER["userName"]

    replay = client.post("/sso/acme/saml/acs", data={"SAMLResponse": encoded})
    assert replay.status_code == 403
