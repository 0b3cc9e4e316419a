"""An email domain of another customer's staff: refused when an IT admin lists it for a
provider, and at the login page an address of another customer's person is not sent to a
provider that claimed its domain first."""

import logging

import pytest
from sqlalchemy import event, select, text

from portal.core.audit import AuditEntry
from portal.core.db import db
from portal.core.errors import Conflict
from sso import queries
from sso.domains import set_email_domains
from sso.models import EmailDomain
from sso.operations import add_saml_provider, set_provider_enabled
from tests.conftest import _csrf_token, csrf_token
from tests.courses import helpers

acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as = helpers.account_of, helpers.login_as
NO_PROVIDER = "Kursa does not know a company sign-in for that email address"
OTHERS = (
    "Email domains: {} is in the email addresses of people of another customer in Kursa; "
    "list only your own organisation's domains."
)


@pytest.fixture
def corp(acme, idp):
    """acme's SAML provider `corp`, without domains."""
    provider = add_saml_provider(acme, "corp", idp.metadata, match="email", actor="test")
    db.session.commit()
    return provider


@pytest.fixture
def globex_staff(make_customer, import_csv):
    """Another customer, Globex Corporation; import persons (emails) into it."""

    def make(*emails: str):
        customer = make_customer("globex", "Globex Corporation")
        persons = [[f"g{i}", "Gus", "Gren", email, "", "1"] for i, email in enumerate(emails)]
        run = import_csv(customer, [["1", "Globex HQ", "", ""]], persons)
        assert run.status == "applied", run.error
        return customer

    return make


def post_email(client, email: str):
    return client.post("/login", data={"email": email, "csrf_token": csrf_token(client, "/login")})


@pytest.mark.parametrize(
    ("stored", "listed", "refused"),
    [
        ("gus@globex.test", "globex.test", "globex.test"),
        ("Gus@GLOBEX.Test", "Globex.test", "globex.test"),
        ("gus@æblegrød.dk", "xn--blegrd-oua3m.dk", "xn--blegrd-oua3m.dk"),
        ("gus@xn--blegrd-oua3m.dk", "æblegrød.dk", "xn--blegrd-oua3m.dk"),
    ],
)
def test_a_domain_of_another_customers_persons_is_refused_without_naming_it(
    corp, globex_staff, stored, listed, refused
):
    globex_staff(stored)

    with pytest.raises(Conflict) as caught:
        set_email_domains(corp, ["acme.test", listed], actor="test")
    db.session.rollback()

    assert str(caught.value) == OTHERS.format(refused)
    assert "Globex Corporation" not in str(caught.value)
    assert db.session.scalars(select(EmailDomain.domain)).all() == []
    assert queries.email_domains(corp) == []


def test_a_subdomain_or_the_own_customers_domain_is_not_another_customers(corp, globex_staff):
    globex_staff("gus@mail.globex.test")

    set_email_domains(corp, ["acme.test", "globex.test"], actor="test")

    assert queries.email_domains(corp) == ["acme.test", "globex.test"]


def test_domains_claimed_before_the_other_customers_staff_arrived_stay(corp, globex_staff):
    set_email_domains(corp, ["globex.test"], actor="test")
    db.session.commit()
    globex_staff("gus@globex.test")

    set_email_domains(corp, ["globex.test", "acme.test"], actor="test")  # a new one added
    db.session.commit()

    assert queries.email_domains(corp) == ["globex.test", "acme.test"]


def test_enabling_again_rechecks_the_domains(corp, globex_staff):
    set_email_domains(corp, ["globex.test"], actor="test")
    set_provider_enabled(corp, False, actor="test")  # a disabled provider claims nothing
    db.session.commit()
    globex_staff("gus@globex.test")

    with pytest.raises(Conflict, match="people of another customer"):
        set_provider_enabled(corp, True, actor="test")
    db.session.rollback()

    assert corp.is_enabled is False


def test_the_edit_page_shows_the_refusal_under_the_domains(login_as, corp, globex_staff):
    globex_staff("gus@globex.test")
    it_admin = login_as("finn", "it_admin", None)
    page = f"/sso/admin/acme/{corp.id}/edit"
    form = {"is_enabled": "y", "match": "email", "email_domains": "globex.test"}
    token = _csrf_token(it_admin.get(page).get_data(as_text=True))

    answer = it_admin.post(page, data={**form, "csrf_token": token})

    body = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert '<p class="field-error">Email domains: globex.test is in the email' in body
    assert "Globex Corporation" not in body
    assert db.session.scalars(select(EmailDomain.domain)).all() == []
    assert (
        db.session.scalar(select(AuditEntry).where(AuditEntry.action == "sso.provider_domains"))
        is None
    )


def test_flask_sso_set_domains_exits_1_with_the_sentence(app, corp, globex_staff):
    globex_staff("gus@globex.test")

    result = app.test_cli_runner().invoke(
        args=["sso", "set-domains", "corp", "--customer", "acme", "globex.test"]
    )

    assert result.exit_code == 1
    assert OTHERS.format("globex.test") in result.output
    assert db.session.scalars(select(EmailDomain.domain)).all() == []


def test_an_address_of_another_customers_person_finds_no_provider(
    client, corp, globex_staff, caplog
):
    """corp claimed globex.test before Globex's staff arrived: the claim stands for addresses
    nobody else has, but Globex's persons are not sent to Acme's sign-in."""
    set_email_domains(corp, ["acme.test", "globex.test", "æblegrød.dk"], actor="test")
    db.session.commit()
    globex_staff("Gus@globex.test", "ole@æblegrød.dk")
    caplog.set_level(logging.WARNING, logger="sso.queries")

    answers = [
        post_email(client, email)
        for email in ("gus@GLOBEX.test", "ole@xn--blegrd-oua3m.dk", "OLE@æblegrød.dk")
    ]

    for answer in answers:
        assert answer.status_code == 200
        assert NO_PROVIDER in answer.get_data(as_text=True)
    assert post_email(client, "nobody@globex.test").headers["Location"] == "/sso/acme/corp/login"
    assert post_email(client, "anna@acme.test").headers["Location"] == "/sso/acme/corp/login"
    warnings = [r.getMessage() for r in caplog.records if r.name == "sso.queries"]
    assert len(warnings) == 3 and f"provider {corp.id}" in warnings[0]
    assert not any("gus" in w.lower() or "ole" in w.lower() for w in warnings)


def test_the_login_check_is_one_query_on_the_email_index(app, corp, globex_staff):
    set_email_domains(corp, ["globex.test"], actor="test")
    db.session.commit()
    globex_staff("gus@globex.test")
    statements = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert queries.login_address_for_email("gus@globex.test") is None
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)

    assert len(statements) == 1
    assert "ix_persons_email_lower" in _plan(*statements[0])


def _plan(statement: str, parameters) -> str:
    """The engine's plan of the statement (PostgreSQL told to avoid a scan of tiny tables)."""
    connection = db.session.connection()
    if db.engine.dialect.name == "sqlite":
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return "\n".join(str(row[-1]) for row in rows)
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
    plan = "\n".join(row[0] for row in rows)
    connection.execute(text("RESET enable_seqscan"))
    return plan
