"""The ACS rules that bind a signed assertion to one login: the request it answers, its time
bounds and replay record, the one subject it names and the value it is matched by.

Beside tests/sso/test_attack_saml_more.py (the attacks that found these faults), these hold
the cases the attacks did not try. Documents are the in-process IdP's, edited and re-signed
with its key (tests.sso.test_saml_signature.sign).
"""

import copy
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree
from sqlalchemy import select

from portal.core.db import db
from sso.linking import match_key
from sso.models import SamlAssertionSeen
from tests.sso.conftest import post_acs, start_login
from tests.sso.saml_attack_helpers import (
    forget_browser,
    iso,
    logged_in_username,
    move_all_clocks,
)
from tests.sso.test_attack_saml_acs import signed_assertion
from tests.sso.test_saml_login import assert_refused
from tests.sso.test_saml_signature import SAML, assert_nobody_linked, sign, text


def without_bearer_in_response_to(root, assertion):
    del assertion.find(f".//{SAML}SubjectConfirmationData").attrib["InResponseTo"]


def whole_seconds_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def bounds(conditions_minutes: int | None, bearer_minutes: int, now: datetime | None = None):
    """An edit: Conditions' NotOnOrAfter (None: absent) and the bearer's, minutes from now."""

    def edit(root, assertion):
        nonlocal now
        now = now or whole_seconds_now()
        conditions = assertion.find(f"{SAML}Conditions")
        if conditions_minutes is None:
            del conditions.attrib["NotOnOrAfter"]
        else:
            conditions.set("NotOnOrAfter", iso(now + timedelta(minutes=conditions_minutes)))
        data = assertion.find(f".//{SAML}SubjectConfirmationData")
        data.set("NotOnOrAfter", iso(now + timedelta(minutes=bearer_minutes)))

    return edit


def second_bearer(hours: int | None):
    """An edit: a copy of the bearer confirmation, NotOnOrAfter `hours` ahead (None: absent)."""

    def edit(root, assertion):
        confirmation = assertion.find(f".//{SAML}SubjectConfirmation")
        extra = copy.deepcopy(confirmation)
        data = extra.find(f"{SAML}SubjectConfirmationData")
        if hours is None:
            del data.attrib["NotOnOrAfter"]
        else:
            data.set("NotOnOrAfter", iso(whole_seconds_now() + timedelta(hours=hours)))
        confirmation.addnext(extra)

    return edit


# --- an unsolicited assertion is no answer to a request -------------------------------------


def test_an_unsolicited_assertion_in_an_unsigned_response_is_refused_with_its_reason(
    app, client, acme_with_idp, idp, key_pairs
):
    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, None)
    root.set("InResponseTo", started.request_id)

    assert_refused(post_acs(client, text(root)), client, "idp_initiated")


def test_an_unsigned_response_cannot_turn_an_unsolicited_assertion_into_an_answer(
    app, client, acme_with_idp, idp, key_pairs
):
    """IdP-initiated login allowed: the assertion is still no answer to the request the
    unsigned Response names (the request would lend it its next page and be used up)."""
    acme_with_idp(allow_idp_initiated=True)
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, None)
    root.set("InResponseTo", started.request_id)

    assert_refused(post_acs(client, text(root)), client, "unknown_request")


@pytest.mark.parametrize(("allowed", "status"), [(False, 403), (True, 302)])
def test_a_signed_response_binds_a_bearer_without_in_response_to_only_where_allowed(
    app, client, acme_with_idp, idp, key_pairs, allowed, status
):
    """The IdP signed the Response answering the request, its bearer names none: an
    unsolicited assertion all the same, so IdP-initiated login must be allowed."""
    acme_with_idp(allow_idp_initiated=allowed)
    started = start_login(client)
    root, _ = signed_assertion(
        idp, client, key_pairs, started.request_id, edit=without_bearer_in_response_to
    )
    sign(root, key_pairs["idp"])

    assert post_acs(client, text(root)).status_code == status


# --- time bounds and the replay record ------------------------------------------------------


@pytest.mark.parametrize(("conditions", "bearer", "earliest"), [(120, 60, 60), (30, 90, 30)])
def test_the_replay_record_lasts_until_the_earliest_bound_plus_skew(
    app, client, acme_with_idp, idp, key_pairs, conditions, bearer, earliest
):
    acme_with_idp(allow_idp_initiated=True, clock_skew_seconds=120)
    now = whole_seconds_now()
    root, _ = signed_assertion(idp, client, key_pairs, None, edit=bounds(conditions, bearer, now))

    assert post_acs(client, text(root)).status_code == 302
    seen = db.session.scalar(select(SamlAssertionSeen))
    assert seen.expires_at == now + timedelta(minutes=earliest, seconds=120)


@pytest.mark.parametrize(("later_minutes", "reason"), [(20, "replay"), (63, "expired")])
def test_a_replay_is_refused_while_the_record_lasts_and_after_it(
    app, client, acme_with_idp, idp, key_pairs, monkeypatch, later_minutes, reason
):
    """The bearer's bound (60 min) is the earliest, Conditions' is later: before the record
    goes (60 min + skew) the replay is caught by it, after that by the bearer's bound."""
    acme_with_idp(allow_idp_initiated=True, clock_skew_seconds=120)
    root, _ = signed_assertion(idp, client, key_pairs, None, edit=bounds(120, 60))
    assert post_acs(client, text(root)).status_code == 302
    forget_browser(client)

    move_all_clocks(monkeypatch, later_minutes * 60)
    start_login(client)  # purges the expired records

    assert_refused(post_acs(client, text(root)), client, reason)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (second_bearer(None), "bearer_not_on_or_after"),
        (second_bearer(48), "lifetime"),
        (bounds(60 * 48, 5), "lifetime"),
    ],
    ids=["second_bearer_unbounded", "second_bearer_two_days", "conditions_two_days"],
)
def test_every_not_on_or_after_is_required_or_bounded_to_a_day(
    app, client, acme_with_idp, idp, key_pairs, edit, reason
):
    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)

    assert_refused(post_acs(client, text(root)), client, reason)


# --- one subject, one confirmation data -----------------------------------------------------


@pytest.mark.parametrize("wrong", ["first", "second"])
def test_a_bearer_with_two_confirmation_data_is_refused_in_either_order(
    app, client, acme_with_idp, idp, key_pairs, wrong
):
    def edit(root, assertion):
        data = assertion.find(f".//{SAML}SubjectConfirmationData")
        extra = copy.deepcopy(data)
        (data if wrong == "first" else extra).set("Recipient", "https://evil.test/acs")
        data.addnext(extra)

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)

    assert_refused(post_acs(client, text(root)), client, "duplicate_confirmation_data")


@pytest.mark.parametrize("second", ["NameID", "Subject", "EncryptedID"])
def test_a_second_subject_after_the_first_is_refused(
    app, client, acme_with_idp, idp, key_pairs, second
):
    """The attack puts the other subject first; after the genuine one, or as an identifier
    Kursa does not read (EncryptedID), it is refused all the same."""

    def edit(root, assertion):
        subject = assertion.find(f"{SAML}Subject")
        name_id = subject.find(f"{SAML}NameID")
        name_id.text = "u1"
        if second == "Subject":
            extra = copy.deepcopy(subject)
            extra.find(f"{SAML}NameID").text = "u2"
            subject.addnext(extra)
        else:
            extra = etree.Element(f"{SAML}{second}")
            extra.text = "u2"
            name_id.addnext(extra)

    acme_with_idp(match="nameid")
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)

    assert_refused(post_acs(client, text(root)), client, "duplicate_subject")
    assert_nobody_linked()


# --- the match value: one person, however often it is sent ---------------------------------


def attribute_values(name: str, *texts: str, basic: bool = False):
    """An edit: the Attribute `name` (its URI, or a basic name) given `texts` as its values."""

    form = "basic" if basic else "uri"

    def edit(root, assertion):
        statement = assertion.find(f"{SAML}AttributeStatement")
        attribute = etree.SubElement(statement, f"{SAML}Attribute", Name=name)
        attribute.set("NameFormat", f"urn:oasis:names:tc:SAML:2.0:attrname-format:{form}")
        for text_ in texts:
            etree.SubElement(attribute, f"{SAML}AttributeValue").text = text_
        for old in statement.findall(f"{SAML}Attribute"):
            if old is not attribute and old.get("Name") == name and not basic:
                statement.remove(old)

    return edit


UID = "urn:oid:0.9.2342.19200300.100.1.1"
MAIL = "urn:oid:0.9.2342.19200300.100.1.3"


@pytest.mark.parametrize(
    ("match", "edit"),
    [
        ("username", attribute_values(UID, "u1", "u1")),
        ("username", attribute_values(UID, "u1", " U1 ")),
        ("username", attribute_values(UID, "u1", "")),
        ("email", attribute_values(MAIL, "ida.lund@acme.test", "Ida.Lund@ACME.test")),
    ],
    ids=["repeated", "case_and_space", "an_empty_one", "email_case"],
)
def test_a_match_value_repeated_alike_logs_in(
    app, client, acme_with_idp, idp, key_pairs, match, edit
):
    acme_with_idp(match=match, match_attribute="")
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)

    assert post_acs(client, text(root)).status_code == 302
    assert logged_in_username(client) == "u1"


@pytest.mark.parametrize(
    ("match", "edit", "attribute"),
    [
        ("username", attribute_values(UID, "u1", "u2"), "uid"),
        ("username", attribute_values("UID", "u2", basic=True), "uid"),
        ("email", attribute_values(MAIL, "ida.lund@acme.test", "bo.holm@acme.test"), "mail"),
    ],
    ids=["two_values", "same_name_in_another_case", "email"],
)
def test_a_match_attribute_naming_two_persons_is_refused_and_named(
    app, client, acme_with_idp, idp, key_pairs, match, edit, attribute
):
    acme_with_idp(match=match, match_attribute="")
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)

    answer = post_acs(client, text(root))

    refusal = assert_refused(answer, client, "ambiguous")
    assert refusal.details["attribute"] == attribute
    assert f"more than one {attribute}" in answer.get_data(as_text=True)
    assert_nobody_linked()


@pytest.mark.parametrize(
    ("rule", "prefix", "first", "second", "alike"),
    [
        ("username", "ac-", "u1", "AC-u1", True),
        ("nameid", "ac-", "ac-u1", "u1", True),
        ("username", "ac-", "u1", "ac-u2", False),
        ("email", "", "U1@acme.test", " u1@acme.test", True),
        ("email", "ac-", "u1@acme.test", "ac-u1@acme.test", False),
        ("employee_number", "", "E1", "e1", True),
        ("employee_number", "", "E1", "E2", False),
    ],
)
def test_match_values_are_alike_under_the_rules_normalisation(
    acme_with_idp, rule, prefix, first, second, alike
):
    customer, provider = acme_with_idp(match=rule, match_attribute="")
    customer.username_prefix = prefix

    assert (match_key(provider, first) == match_key(provider, second)) is alike
