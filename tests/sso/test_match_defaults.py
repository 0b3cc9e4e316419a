"""A provider without its own match attribute reads the usual attributes of its rule (not the
NameID); a login that carries none of them is refused, naming what was looked for."""

import flask_migrate
import pytest
from sqlalchemy import select

from app import create_app
from portal.core.audit import AuditEntry
from portal.core.db import db
from portal.directory.operations import create_customer
from sso.matching import DEFAULT_ATTRIBUTES
from sso.models import IdentityProvider, MatchRule
from sso.operations import add_saml_provider
from tests.conftest import settings_for
from tests.sso.conftest import (
    UNITS,
    as_another_idp,
    logged_in_account_id,
    post_acs,
    start_login,
)

# The test IdP sends uid = the username and mail = username@acme.test, as URI (OID) names.
PERSONS = [["u1", "Ida", "Lund", "u1@acme.test", "E100", "1"]]


@pytest.fixture
def acme(make_customer, import_csv):
    customer = make_customer("acme", "Acme")
    import_csv(customer, UNITS, PERSONS)
    return customer


@pytest.mark.parametrize("rule", ["email", "username"])
def test_the_usual_attribute_of_the_rule_is_read(client, acme, idp, rule):
    add_saml_provider(acme, "corp", idp.metadata, match=rule, actor="test")
    db.session.commit()
    started = start_login(client)

    # The NameID names nobody: only the attribute can match.
    answer = post_acs(client, idp.respond(client, started.request_id, subject="opaque-7f3a"))

    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert logged_in_account_id(client) is not None


def test_none_of_the_usual_attributes_is_refused_naming_them(client, acme, idp):
    add_saml_provider(acme, "corp", idp.metadata, match="employee_number", actor="test")
    db.session.commit()
    started = start_login(client)

    answer = post_acs(client, idp.respond(client, started.request_id, subject="E100"))

    assert answer.status_code == 403
    names = DEFAULT_ATTRIBUTES[MatchRule.EMPLOYEE_NUMBER]
    assert f"It sent none of: {', '.join(names)}." in answer.get_data(as_text=True)
    assert logged_in_account_id(client) is None
    refusal = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "login.refused"))
    assert refusal.details["reason"] == "no_value"
    assert refusal.details["missing"] == list(names)


def test_a_named_attribute_that_is_missing_is_named_alone(client, acme, idp):
    add_saml_provider(
        acme, "corp", idp.metadata, match="email", match_attribute="workMail", actor="test"
    )
    db.session.commit()
    started = start_login(client)

    answer = post_acs(client, idp.respond(client, started.request_id))

    assert answer.status_code == 403
    assert "It sent none of: workMail." in answer.get_data(as_text=True)


def test_the_migration_keeps_username_without_attribute_on_the_nameid(
    engine_app, database_url, idp
):
    """Before, username with no attribute compared the NameID: such providers become nameid,
    the others keep their rule."""
    engine = engine_app.config["KURSA_ENGINE"]
    app = create_app(settings_for(database_url(engine, "match_nameid")), environ={})
    with app.app_context():
        customer = create_customer("acme", "Acme", actor="t")
        rules = {"bare": ("username", ""), "uid": ("username", "uid"), "mail": ("email", "")}
        for name, (rule, attribute) in rules.items():
            add_saml_provider(
                customer, name, as_another_idp(idp.metadata, name), match=rule,
                match_attribute=attribute, actor="t",
            )  # fmt: skip
        db.session.commit()
        flask_migrate.downgrade(revision="l3_hardening")

        flask_migrate.upgrade(revision="heads")

        db.session.expire_all()
        found = {p.name: p.setting("match") for p in db.session.scalars(select(IdentityProvider))}
        assert found == {"bare": "nameid", "uid": "username", "mail": "email"}
        db.session.remove()
        db.engine.dispose()
