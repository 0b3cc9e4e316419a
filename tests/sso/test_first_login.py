"""Creating persons at first SSO login: off by default, on per customer (`flask customer set`)."""

import pytest
from saml2.saml import AUTHN_PASSWORD_PROTECTED, NAMEID_FORMAT_PERSISTENT, NameID
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from sqlalchemy import func, select

from portal.core.audit import AuditEntry
from portal.core.db import db
from portal.directory.models import Customer, Person
from sso.models import Identity
from sso.operations import add_saml_provider
from tests.sso.conftest import ACS, PERSONS, SP_ENTITY, UNITS, logged_in_account_id, post_acs
from tests.sso.conftest import start_login as start


@pytest.fixture
def acme(make_customer, import_csv, idp):
    customer = make_customer("acme", "Acme", prefix="ac-")
    import_csv(customer, UNITS, PERSONS)
    provider = add_saml_provider(
        customer, "corp", idp.metadata, actor="test", match="username", match_attribute="uid"
    )
    db.session.commit()
    return customer, provider


@pytest.fixture
def customer_set(app):
    runner = app.test_cli_runner()

    def run(*args):
        result = runner.invoke(args=["customer", "set", *args])
        return result

    return run


def log_in_as(client, idp, uid: str, **names):
    """A signed answer for `uid` with the given attributes, posted to the ACS."""
    started = start(client)
    identity = {"uid": [uid], "mail": [f"{uid}@acme.test"]}
    identity.update({name: [value] for name, value in names.items()})
    xml = idp.server(client).create_authn_response(
        identity,
        started.request_id,
        ACS,
        SP_ENTITY,
        userid=uid,
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=f"subject-{uid}"),
        authn={"class_ref": AUTHN_PASSWORD_PROTECTED},
        sign_response=True,
        sign_assertion=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    return post_acs(client, str(xml))


def person(username: str) -> Person | None:
    return db.session.scalar(select(Person).where(func.lower(Person.username) == username))


def refusal() -> str:
    entry = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "login.refused").order_by(AuditEntry.id)
    )
    return entry.details["reason"] if entry else ""


def test_off_by_default_an_unknown_person_is_refused(client, acme, idp):
    customer, _ = acme
    assert customer.is_creating_persons_at_login is False

    answer = log_in_as(client, idp, "u9", givenName="Eva", sn="Berg")

    assert answer.status_code == 403
    assert logged_in_account_id(client) is None
    assert person("ac-u9") is None
    assert refusal() == "not_found"


def test_on_the_first_login_creates_the_person_in_the_root_unit(client, acme, idp, customer_set):
    customer, provider = acme
    result = customer_set("acme", "--create-persons-at-login", "on")
    assert result.exit_code == 0, result.output

    answer = log_in_as(client, idp, "u9", givenName="Eva", sn="Berg")

    assert answer.status_code == 302, answer.get_data(as_text=True)
    created = person("ac-u9")
    assert (created.first_name, created.last_name, created.email) == ("Eva", "Berg", "u9@acme.test")
    assert created.unit_id == customer.root_unit_id and created.is_active
    assert created.source == "sso:corp"
    audit = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "person.created"))
    assert audit.actor == f"sso:{provider.id}" and audit.object_id == str(created.id)
    assert db.session.scalar(select(Identity.person_id)) == created.id
    assert logged_in_account_id(client) is not None
    # The next login finds the same person; nobody is created twice.
    assert log_in_as(client, idp, "u9").status_code == 302
    assert db.session.scalar(select(func.count(Person.id))) == 3


def test_on_an_inactive_person_is_still_refused(client, acme, idp, import_csv, customer_set):
    customer, _ = acme
    customer_set("acme", "--create-persons-at-login", "on")
    import_csv(customer, UNITS, PERSONS[:1])  # u2 left: inactivated
    assert person("ac-u2").is_active is False

    assert log_in_as(client, idp, "u2").status_code == 403
    assert refusal() == "inactive"
    assert db.session.scalar(select(func.count(Person.id))) == 2


def test_on_a_person_of_another_customer_is_still_refused(
    client, acme, idp, make_customer, import_csv, customer_set
):
    other = make_customer("beta", "Beta", prefix="ac-")
    import_csv(other, [["7", "Beta HQ", "", ""]], [["u7", "Kim", "Dahl", "", "", "7"]])
    customer_set("acme", "--create-persons-at-login", "on")

    assert log_in_as(client, idp, "u7").status_code == 403
    assert refusal() == "other_customer"
    assert person("ac-u7").customer_id == other.id


def test_the_switch_names_the_customer_and_can_be_turned_off(app, acme, customer_set):
    assert customer_set("nope", "--create-persons-at-login", "on").exit_code != 0
    assert customer_set("acme", "--create-persons-at-login", "maybe").exit_code != 0
    customer_set("acme", "--create-persons-at-login", "on")
    assert customer_set("acme", "--create-persons-at-login", "off").exit_code == 0
    db.session.expire_all()
    assert db.session.scalar(select(Customer.is_creating_persons_at_login)) is False
