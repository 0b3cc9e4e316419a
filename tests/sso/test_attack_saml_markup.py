"""Attacks on the SAML ACS through the markup of a signed document (CDATA, comments, processing
instructions, repeated elements, audiences, bearers, time bounds, advice, foreign namespaces,
ID spelling, two signatures) that held: regression guards.

Documents come from the in-process pysaml2 IdP and are re-signed with the IdP's real key
after each edit (tests.sso.test_saml_signature.sign), so a refusal comes from the rule attacked
and an acceptance is what a real IdP signing that document would get.
"""

import copy
import unicodedata
from datetime import UTC, datetime

import pytest
import saml2.time_util
from lxml import etree

from tests.sso.conftest import (
    OTHER_SP,
    SP_ENTITY,
    post_acs,
    start_login,
)
from tests.sso.saml_attack_helpers import (
    iso,
    logged_in_username,
)
from tests.sso.test_attack_saml_acs import refused, signed_assertion
from tests.sso.test_saml_login import assert_refused
from tests.sso.test_saml_signature import DS, SAML, assert_nobody_linked, text


@pytest.mark.parametrize(
    ("match", "signed_text", "forged_text", "reason"),
    [
        ("nameid", ">u1.evil<", "><![CDATA[u1]]>.evil<", "not_found"),
        ("nameid", ">u1.evil<", ">u1<![CDATA[.evil]]><", "not_found"),
        ("username", ">u1.evil<", ">u1<![CDATA[]]>.evil<", "not_found"),
    ],
)
def test_cdata_does_not_split_a_signed_value(
    app, client, acme_with_idp, idp, match, signed_text, forged_text, reason
):
    """CDATA is text to c14n, so the signature still verifies; the whole text must be read."""
    acme_with_idp(match=match)
    started = start_login(client)
    options = {"subject": "u1.evil"} if match == "nameid" else {"username": "u1.evil"}
    xml = idp.respond(client, started.request_id, **options)
    forged = xml.replace(signed_text, forged_text, 1)
    assert forged != xml
    assert_refused(post_acs(client, forged), client, reason)


def test_a_comment_in_the_audience_does_not_shorten_it(app, client, acme_with_idp, idp, key_pairs):
    """The IdP signed the audience '<Kursa's entity id>.evil' (another SP); a comment after
    Kursa's entity id keeps the signature valid; a reader stopping there would accept it."""

    def edit(root, assertion):
        assertion.find(f".//{SAML}Audience").text = SP_ENTITY + ".evil"

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)
    xml = text(root)
    forged = xml.replace(f">{SP_ENTITY}.evil<", f">{SP_ENTITY}<!---->.evil<", 1)
    assert forged != xml
    assert_refused(post_acs(client, forged), client, "audience")


def test_a_processing_instruction_in_a_signed_name_id_is_refused(
    app, client, acme_with_idp, idp, key_pairs
):
    def edit(root, assertion):
        name_id = assertion.find(f"{SAML}Subject/{SAML}NameID")
        name_id.text = "u1"
        instruction = etree.ProcessingInstruction("x", "y")
        name_id.append(instruction)
        instruction.tail = ".evil"

    acme_with_idp(match="nameid")
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)
    assert_refused(post_acs(client, text(root)), client, "markup_in_value")


@pytest.mark.parametrize("element", ["Conditions", "Issuer"])
def test_a_duplicated_conditions_or_issuer_is_refused(
    app, client, acme_with_idp, idp, key_pairs, element
):
    def edit(root, assertion):
        original = assertion.find(f"{SAML}{element}")
        extra = copy.deepcopy(original)
        if element == "Conditions":
            extra.find(f".//{SAML}Audience").text = OTHER_SP
        else:
            extra.text = "https://evil.test/idp"
        original.addnext(extra)

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)
    refused(post_acs(client, text(root)), client)


@pytest.mark.parametrize("shape", ["ours_second_of_two", "two_restrictions_both_with_ours"])
def test_several_audiences_follow_saml_semantics(app, client, acme_with_idp, idp, key_pairs, shape):
    """Any audience of one restriction suffices; every restriction must name Kursa."""

    def edit(root, assertion):
        restriction = assertion.find(f".//{SAML}AudienceRestriction")
        other = etree.Element(f"{SAML}Audience")
        other.text = OTHER_SP
        restriction.insert(0, other)
        if shape == "two_restrictions_both_with_ours":
            restriction.addnext(copy.deepcopy(restriction))

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)
    assert post_acs(client, text(root)).status_code == 302


def test_a_second_bearer_confirmation_with_another_recipient_is_refused(
    app, client, acme_with_idp, idp, key_pairs
):
    def edit(root, assertion):
        confirmation = assertion.find(f".//{SAML}SubjectConfirmation")
        extra = copy.deepcopy(confirmation)
        extra.find(f"{SAML}SubjectConfirmationData").set("Recipient", "https://evil.test/acs")
        confirmation.addnext(extra)

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)
    assert_refused(post_acs(client, text(root)), client, "recipient")


FROZEN = 2_000_000_000  # a fixed SP clock (2033), whole seconds as pysaml2's utc_now gives


@pytest.mark.parametrize(
    ("bound", "offset", "status"),
    [
        ("NotBefore", 120, 302),  # NotBefore = now + skew: inclusive
        ("NotBefore", 121, 403),
        ("NotOnOrAfter", -120, 403),  # NotOnOrAfter = now - skew: exclusive
        ("NotOnOrAfter", -119, 302),
        ("BearerNotOnOrAfter", -120, 403),
        ("BearerNotOnOrAfter", -119, 302),
    ],
)
def test_time_bounds_exactly_at_the_skewed_boundary(
    app, client, acme_with_idp, idp, key_pairs, monkeypatch, bound, offset, status
):
    acme_with_idp(clock_skew_seconds=120)
    started = start_login(client)
    moment = iso(datetime.fromtimestamp(FROZEN + offset, UTC))

    def edit(root, assertion):
        conditions = assertion.find(f"{SAML}Conditions")
        data = assertion.find(f".//{SAML}SubjectConfirmationData")
        conditions.set("NotBefore", iso(datetime.fromtimestamp(FROZEN - 60, UTC)))
        conditions.set("NotOnOrAfter", iso(datetime.fromtimestamp(FROZEN + 300, UTC)))
        data.set("NotOnOrAfter", iso(datetime.fromtimestamp(FROZEN + 300, UTC)))
        if bound == "BearerNotOnOrAfter":
            data.set("NotOnOrAfter", moment)
        else:
            conditions.set(bound, moment)

    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)
    monkeypatch.setattr(saml2.time_util, "utc_now", lambda: FROZEN)
    assert post_acs(client, text(root)).status_code == status


def test_a_signed_assertion_in_the_advice_of_a_forged_one_is_refused(
    app, client, acme_with_idp, idp, key_pairs
):
    acme_with_idp()
    started = start_login(client)
    root, genuine = signed_assertion(idp, client, key_pairs, started.request_id)
    forged = copy.deepcopy(genuine)
    forged.remove(forged.find(f"{DS}Signature"))
    forged.set("ID", "_forged")
    for value in forged.iter(f"{SAML}AttributeValue"):
        value.text = value.text.replace("u1", "u2")
    advice = etree.Element(f"{SAML}Advice")
    forged.find(f"{SAML}Conditions").addnext(advice)
    root.replace(genuine, forged)
    advice.append(genuine)

    assert_refused(post_acs(client, text(root)), client, "unsigned")
    assert_nobody_linked()


def test_an_assertion_in_a_foreign_namespace_beside_the_signed_one_is_not_read(
    app, client, acme_with_idp, idp, key_pairs
):
    """A look-alike Assertion for u2 in the SAML 1.1 namespace, before the signed one for u1:
    it is neither counted nor read."""
    acme_with_idp()
    started = start_login(client)
    root, genuine = signed_assertion(idp, client, key_pairs, started.request_id)
    look_alike = etree.fromstring(
        etree.tostring(genuine)
        .replace(b"urn:oasis:names:tc:SAML:2.0:assertion", b"urn:oasis:names:tc:SAML:1.0:assertion")
        .replace(b">u1<", b">u2<")
    )
    look_alike.set("ID", "_look_alike")
    genuine.addprevious(look_alike)

    answer = post_acs(client, text(root))
    assert answer.status_code in (302, 403)
    assert logged_in_username(client) in (None, "u1")


@pytest.mark.parametrize("variant", ["trailing_space", "zero_width", "nfd"])
def test_ids_differing_by_whitespace_or_normalisation_do_not_redirect_a_reference(
    app, client, acme_with_idp, idp, key_pairs, variant
):
    """The genuine signed assertion (u1) kept in Extensions; in its place a forged one (u2)
    whose ID looks the same (a trailing space, a zero-width space, or NFD of an accented ID)
    and which carries the genuine Signature."""

    def edit(root, assertion):
        assertion.set("ID", "_é-assertion")  # an accented id, so NFD differs from NFC

    acme_with_idp()
    started = start_login(client)
    root, genuine = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)
    forged = copy.deepcopy(genuine)
    forged.set(
        "ID",
        {
            "trailing_space": "_é-assertion ",
            "zero_width": "_é-assertion\u200b",
            "nfd": unicodedata.normalize("NFD", "_é-assertion"),
        }[variant],
    )
    for value in forged.iter(f"{SAML}AttributeValue"):
        value.text = value.text.replace("u1", "u2")
    extensions = etree.Element("{urn:oasis:names:tc:SAML:2.0:protocol}Extensions")
    root.find(f"{SAML}Issuer").addnext(extensions)
    root.replace(genuine, forged)
    extensions.append(genuine)

    refused(post_acs(client, text(root)), client)
    assert_nobody_linked()


def test_two_signatures_on_the_assertion_are_refused(app, client, acme_with_idp, idp, key_pairs):
    acme_with_idp()
    started = start_login(client)
    root, assertion = signed_assertion(idp, client, key_pairs, started.request_id)
    assertion.find(f"{DS}Signature").addnext(copy.deepcopy(assertion.find(f"{DS}Signature")))
    assert_refused(post_acs(client, text(root)), client, "several")
