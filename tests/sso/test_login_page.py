"""The login page: home realm discovery by email domain, one button per provider of a customer,
and the administrators' local form kept behind "Administrator login"."""

import re

import pytest
from sqlalchemy import select

from portal.core.audit import AuditEntry
from portal.core.db import db
from portal.core.errors import Conflict, UserError
from sso.domains import set_email_domains
from sso.operations import add_saml_provider, set_provider_enabled
from tests.conftest import ADMIN_PASSWORD, csrf_token
from tests.sso.conftest import as_another_idp

NO_PROVIDER = "Kursa does not know a company sign-in for that email address"


@pytest.fixture
def corp(acme_with_idp):
    """acme's SAML provider `corp`, reached by the domain acme.test."""
    _customer, provider = acme_with_idp()
    set_email_domains(provider, ["Acme.test", "@staff.acme.test"], actor="test")
    db.session.commit()
    return provider


def post_email(client, email: str, url: str = "/login"):
    return client.post(url, data={"email": email, "csrf_token": csrf_token(client, url)})


def test_domains_are_lower_cased_and_audited(corp):
    assert corp.settings["email_domains"] == ["acme.test", "staff.acme.test"]
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "sso.provider_domains"))
    assert entry.details["domains"] == ["acme.test", "staff.acme.test"]


@pytest.mark.parametrize("bad", ["acme", "acme..test", "-acme.test", "ac me.test", "a@b.test"])
def test_a_domain_must_be_a_domain_name(corp, bad):
    with pytest.raises(UserError, match="Email domains: .* is not a domain name"):
        set_email_domains(corp, [bad], actor="test")


def test_a_domain_leads_to_one_provider_of_all_customers(corp, make_customer, idp):
    other = make_customer("globex", "Globex")
    rival = add_saml_provider(other, "corp", idp.metadata, match="email", actor="test")

    with pytest.raises(Conflict, match="acme.test already leads to another identity provider"):
        set_email_domains(rival, ["globex.test", "acme.test"], actor="test")
    set_provider_enabled(corp, False, actor="test")
    # a disabled provider holds nothing (acme.test itself is Acme's persons' domain, so Globex
    # could not take it: test_other_customers_domains.py)
    set_email_domains(rival, ["staff.acme.test"], actor="test")
    with pytest.raises(Conflict, match="staff.acme.test already leads"):
        set_provider_enabled(corp, True, actor="test")


def test_typed_email_leads_to_the_providers_login(client, corp):
    answer = client.post(
        "/login?next=/courses",
        data={"email": " Ida.Lund@ACME.test ", "csrf_token": csrf_token(client, "/login")},
    )

    assert answer.status_code == 302
    assert answer.headers["Location"] == "/sso/acme/corp/login?next=%2Fcourses"
    started = client.get(answer.headers["Location"])
    assert started.status_code == 302  # on to the IdP


def test_a_foreign_next_is_dropped(client, corp):
    for target in ("//evil.test/x", "https://evil.test/", "/\\evil.test"):
        answer = post_email(client, "bo.holm@staff.acme.test", f"/login?next={target}")
        assert answer.headers["Location"] == "/sso/acme/corp/login"


def test_unknown_or_disabled_domain_gets_a_plain_message(client, corp):
    unknown = post_email(client, "someone@globex.test")
    set_provider_enabled(corp, False, actor="test")
    db.session.commit()
    disabled = post_email(client, "ida.lund@acme.test")

    for answer in (unknown, disabled):
        assert answer.status_code == 200
        assert NO_PROVIDER in answer.get_data(as_text=True)


def test_an_email_without_domain_names_the_field(client, corp):
    answer = post_email(client, "ida.lund")
    assert "Work email: enter it as name@company.com." in answer.get_data(as_text=True)


def test_a_customer_address_shows_one_button_per_enabled_provider(client, corp, idp):
    spare_idp, old_idp = as_another_idp(idp.metadata, "spare"), as_another_idp(idp.metadata, "old")
    spare = add_saml_provider(corp.customer, "spare", spare_idp, match="email", actor="test")
    off = add_saml_provider(corp.customer, "old", old_idp, match="email", actor="test")
    set_provider_enabled(off, False, actor="test")
    db.session.commit()

    for url in ("/login?customer=acme&next=/courses", "/login/acme?next=/courses"):
        page = client.get(url).get_data(as_text=True)
        assert 'href="/sso/acme/corp/login?next=%2Fcourses"' in page
        assert f'href="/sso/acme/{spare.name}/login?next=%2Fcourses"' in page
        assert "/sso/acme/old/login" not in page


def test_a_button_shows_the_label_as_given_and_else_log_in_with_the_name(client, corp, idp):
    spare_idp = as_another_idp(idp.metadata, "spare")
    add_saml_provider(
        corp.customer, "spare", spare_idp, match="email", label="  Log in with   Acme account ",
        actor="test",
    )  # fmt: skip
    db.session.commit()

    page = client.get("/login/acme").get_data(as_text=True)

    buttons = re.findall(r'<a class="button" href="/sso/acme/[^"]+">([^<]*)</a>', page)
    assert sorted(buttons) == ["Log in with Acme account", "Log in with corp"]
    assert "Log in with Log in with" not in page


@pytest.mark.parametrize(
    ("label", "message"),
    [("x" * 81, "Label: at most 80 characters."), ("Acme\x00", "Label: use letters")],
)
def test_a_label_too_long_or_with_control_characters_is_refused(corp, idp, label, message):
    with pytest.raises(UserError, match=message):
        add_saml_provider(
            corp.customer, "spare", as_another_idp(idp.metadata, "spare"), match="email",
            label=label, actor="test",
        )  # fmt: skip


def test_a_customer_address_names_the_customer_escaped(client, corp):
    corp.customer.name = "Acme <Træning> & Co"
    db.session.commit()

    named = client.get("/login/acme").get_data(as_text=True)
    plain = client.get("/login").get_data(as_text=True)

    assert "<h1>Log in to Acme &lt;Træning&gt; &amp; Co</h1>" in named
    assert "<Træning>" not in named
    assert "<h1>Log in to Kursa</h1>" in plain


def test_an_unknown_customer_looks_like_one_without_providers(client, corp, make_customer):
    make_customer("globex", "Globex")

    unknown = client.get("/login/nosuch")
    without = client.get("/login/globex")

    assert unknown.status_code == without.status_code == 200
    assert "sign-ins" not in unknown.get_data(as_text=True)
    assert _without_token(unknown) == _without_token(without)


def test_the_admin_form_stays_behind_administrator_login(client, admin):
    page = client.get("/login").get_data(as_text=True)
    assert '<details class="admin-login">' in page  # closed until asked for

    wrong = client.post(
        "/login",
        data={
            "username": admin.username,
            "password": "nope",
            "csrf_token": csrf_token(client, "/login"),
        },
    )
    assert '<details class="admin-login" open>' in wrong.get_data(as_text=True)
    right = client.post(
        "/login?next=/persons",
        data={
            "username": admin.username,
            "password": ADMIN_PASSWORD,
            "csrf_token": csrf_token(client, "/login"),
        },
    )
    assert right.headers["Location"] == "/persons"


def _without_token(answer) -> str:
    return re.sub(r'value="[^"]*"', "", answer.get_data(as_text=True))
