"""Attacks on person creation at first SSO login (customer switch on): other customers'
usernames and prefixes, control characters, very long values, cross-customer probing."""

import pytest
from sqlalchemy import func, select

from portal.core.db import db
from portal.directory.models import Person
from sso.linking import LinkRefused, login_person
from tests.sso.test_first_login import log_in_as


def person(username: str):
    return db.session.scalar(select(Person).where(func.lower(Person.username) == username.lower()))


@pytest.fixture
def creating(acme_with_idp):
    customer, provider = acme_with_idp()
    customer.is_creating_persons_at_login = True
    db.session.commit()
    return customer, provider


def test_a_username_with_another_customers_prefix_is_not_created(
    app, client, creating, idp, make_customer, import_csv
):
    """globex names its persons gx-...; acme (no prefix) creates persons at login. acme's IdP
    asserting uid gx-e77 must not create gx-e77 in acme: usernames are unique across
    customers, so globex's next sync of its real gx-e77 would collide."""
    globex = make_customer("globex", "Globex", prefix="gx-")
    import_csv(globex, [["1", "G HQ", "", ""]], [["gx-u1", "Gus", "Gx", "", "G1", "1"]])
    answer = log_in_as(client, idp, "gx-e77")
    assert person("gx-e77") is None, "acme squatted a username in globex's prefix"
    assert answer.status_code == 403
    run = import_csv(
        globex,
        [["1", "G HQ", "", ""]],
        [["gx-u1", "Gus", "Gx", "", "G1", "1"], ["gx-e77", "New", "Hire", "", "G2", "1"]],
    )
    assert run.status == "applied"


@pytest.mark.parametrize("uid", ["u" * 151, "ab\u202ecd", "a b", "ab\tcd", "../x", "x<script>"])
def test_odd_usernames_are_refused_not_500(app, client, creating, idp, uid):
    answer = log_in_as(client, idp, uid)
    assert answer.status_code == 403


def test_very_long_names_do_not_break_the_login(app, client, creating, idp):
    answer = log_in_as(client, idp, "u9", givenName="E" * 5000, sn="B" * 5000)
    assert answer.status_code == 302
    assert len(person("u9").first_name) <= 100


@pytest.mark.parametrize("value", ["Eva\x00", "Eva\x1b[31m", "Eva\u202eavE", "\x7f"])
def test_control_characters_in_claims_are_not_stored_raw_nor_500(app, creating, value):
    """OIDC claims are JSON and may hold any code point (SAML's XML cannot hold most C0)."""
    _, provider = creating
    try:
        account = login_person(
            provider, "sub-9", "u9", profile={"first_name": value, "last_name": "B"}
        )
        db.session.commit()
    except LinkRefused:
        db.session.rollback()
        return
    stored = person("u9").first_name
    assert not any(ord(c) < 32 or ord(c) == 127 or c == "\u202e" for c in stored), repr(stored)
    assert account is not None


def test_refusal_text_does_not_tell_that_an_email_exists_at_another_customer(
    app, client, make_customer, import_csv, idp, acme_with_idp
):
    """acme's IT admin runs acme's IdP; asserting an email of globex must not reveal that a
    person with that address exists at another customer (enumeration across tenants)."""
    from tests.sso.conftest import _request_id  # noqa: F401

    customer, provider = acme_with_idp(match="email", match_attribute="mail")
    globex = make_customer("globex", "Globex")
    import_csv(globex, [["1", "G", "", ""]], [["g1", "Ceo", "Boss", "ceo@globex.test", "E1", "1"]])
    existing = log_in_as(client, idp, "x", mail="ceo@globex.test")
    missing = log_in_as(client, idp, "y", mail="nobody@globex.test")
    assert existing.status_code == missing.status_code == 403
    assert existing.get_data(as_text=True) == missing.get_data(as_text=True)
