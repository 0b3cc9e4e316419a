"""More attacks on the SAML ACS and single logout, beyond tests/sso/test_attack_saml_*.py.

Every test asserts the safe outcome. The first part holds the faults found (they fail until
fixed); the second the attacks that held but had no test (regression guards). Documents come
from the in-process pysaml2 IdP and are re-signed with the IdP's real key after each edit
(tests.sso.test_saml_signature.sign), so a refusal comes from the rule attacked and an
acceptance is what a real IdP signing that document would get.
"""

import base64
import copy
import time
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
import saml2.time_util
from lxml import etree
from saml2 import BINDING_HTTP_REDIRECT
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from sqlalchemy import select

import portal.core.db
import sso.saml
import sso.saml_acs
from portal.accounts.models import Account, LoginSession
from portal.core.db import db
from portal.directory.models import Person
from sso.models import Identity, IdentityProvider, SamlLogoutRequest
from sso.operations import add_saml_provider
from tests.sso.conftest import (
    ACS,
    IDP_ENTITY,
    OTHER_SP,
    SP_ENTITY,
    UNITS,
    SamlIdp,
    logged_in_account_id,
    post_acs,
    start_login,
)
from tests.sso.test_attack_saml_acs import refused, signed_assertion
from tests.sso.test_saml_login import assert_refused
from tests.sso.test_saml_logout import PAGE, SLS, idp_answer, local, log_in, log_out, single
from tests.sso.test_saml_signature import DS, SAML, assert_nobody_linked, sign, text

BETA_SLS = SLS.replace("/acme/", "/beta/")
BETA_SP = SP_ENTITY.replace("/acme/", "/beta/")
BETA_ACS = ACS.replace("/acme/", "/beta/")


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def logged_in_username(client) -> str | None:
    account_id = logged_in_account_id(client)
    if account_id is None:
        return None
    account = db.session.get(Account, int(account_id))
    return db.session.get(Person, account.person_id).username


def forget_browser(client) -> None:
    with client.session_transaction() as session:
        session.clear()


def move_all_clocks(monkeypatch, seconds: float) -> None:
    """Move the SP's clocks: pysaml2's (the ACS's time checks) and the database clock that
    dates and purges replay records (sso.saml and sso.saml_acs import utcnow by name)."""
    real_time, real_utcnow = time.time, portal.core.db.utcnow
    monkeypatch.setattr(saml2.time_util, "utc_now", lambda: int(real_time() + seconds))
    later = lambda: real_utcnow() + timedelta(seconds=seconds)  # noqa: E731
    monkeypatch.setattr(sso.saml, "utcnow", later)
    monkeypatch.setattr(sso.saml_acs, "utcnow", later)


def only_bearer_bound(hours: float):
    """An edit: no NotOnOrAfter on Conditions, the bearer's `hours` ahead (or none at all)."""

    def edit(root, assertion):
        del assertion.find(f"{SAML}Conditions").attrib["NotOnOrAfter"]
        data = assertion.find(f".//{SAML}SubjectConfirmationData")
        if hours:
            data.set("NotOnOrAfter", iso(datetime.now(UTC) + timedelta(hours=hours)))
        else:
            del data.attrib["NotOnOrAfter"]

    return edit


def two_customers_with_the_same_idp(acme_with_idp, make_customer, import_csv, idp, **options):
    customer, provider = acme_with_idp(**options)
    beta = make_customer("beta", "Beta")
    import_csv(beta, UNITS, [["u1", "Bea", "One", "b1@beta.test", "E1", "1"]])
    add_saml_provider(
        beta, "corp", idp.metadata, match="username", match_attribute="uid", actor="t", **options
    )
    db.session.commit()
    return customer, beta


# ==== faults (fail now) =====================================================================


@pytest.mark.parametrize("how", ["idp_initiated_allowed", "unsolicited_wrapped_as_an_answer"])
def test_an_assertion_replayed_after_its_replay_record_expired_is_refused(
    app, client, acme_with_idp, idp, key_pairs, monkeypatch, how
):
    """FAULT. The IdP signs an assertion whose only time bound is the bearer's NotOnOrAfter
    (two hours; Conditions carries none, which SAML allows). Kursa keeps its replay record
    for request lifetime + skew (12 min) because it looks only at Conditions' NotOnOrAfter;
    the next login start purges it, and 20 minutes later the same assertion logs the
    person in again. 'unsolicited_wrapped_as_an_answer' does it with IdP-initiated login off
    (see the next test): the attacker wraps the captured assertion in an unsigned Response
    answering a request the attacker started. Since that wrapping is refused (the next test),
    its first use is refused too, and so must its replay be."""
    allowed = how == "idp_initiated_allowed"
    acme_with_idp(allow_idp_initiated=allowed)
    first = None if allowed else start_login(client).request_id
    root, _ = signed_assertion(idp, client, key_pairs, None, edit=only_bearer_bound(2))
    if first:
        root.set("InResponseTo", first)
    assert post_acs(client, text(root)).status_code == (302 if allowed else 403)
    forget_browser(client)

    move_all_clocks(monkeypatch, 20 * 60)
    second = start_login(client).request_id  # any login start purges expired records
    if not allowed:
        root.set("InResponseTo", second)

    assert_refused(post_acs(client, text(root)), client)


def test_an_unsolicited_assertion_wrapped_as_an_answer_is_refused_when_idp_initiated_is_off(
    app, client, acme_with_idp, idp, key_pairs
):
    """FAULT. IdP-initiated login is off (the default), yet an unsolicited assertion (signed,
    its bearer names no request) logs in once put in an unsigned Response whose InResponseTo
    names a request the attacker started at /sso/acme/corp/login: the Response's InResponseTo
    is not signed, so only the bearer's InResponseTo binds the assertion to the request, and
    an empty one is accepted. Expected: refused unless the Response is signed."""
    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, None)
    root.set("InResponseTo", started.request_id)

    assert_refused(post_acs(client, text(root)), client)


@pytest.mark.parametrize(("hours", "status"), [(0, 403), (48, 403), (0.5, 302)])
def test_the_bearer_not_on_or_after_is_required_and_bounded(
    app, client, acme_with_idp, idp, key_pairs, hours, status
):
    """FAULT (hours 0 and 48). The Web SSO profile requires NotOnOrAfter on the bearer's
    SubjectConfirmationData; Kursa accepts an assertion with no time bound at all (valid
    forever, its replay record kept 12 minutes), and one valid for two days through the
    bearer (test_an_assertion_valid_for_days_is_refused covers Conditions only)."""
    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(
        idp, client, key_pairs, started.request_id, edit=only_bearer_bound(hours)
    )
    assert post_acs(client, text(root)).status_code == status


@pytest.mark.parametrize("length", [256, 300])
def test_a_long_persistent_name_id_logs_in_again(app, client, acme_with_idp, idp, length):
    """FAULT. SAML allows a persistent NameID of 256 characters. The link stores subject[:255]
    but looks up the whole NameID, so the second login finds no link, matches again and
    inserts the same truncated subject: IntegrityError (unique provider+subject), a 500."""
    acme_with_idp()
    subject = "s" * length
    for _ in range(2):
        started = start_login(client)
        answer = post_acs(client, idp.respond(client, started.request_id, subject=subject))
        assert answer.status_code == 302
        assert logged_in_username(client) == "u1"
        forget_browser(client)
    assert len(db.session.scalars(select(Identity)).all()) == 1
    # the sessions keep the whole NameID too, so an IdP's logout names exactly them
    assert set(db.session.scalars(select(LoginSession.name_id))) == {subject}


@pytest.mark.parametrize("duplicate", ["NameID", "Subject"])
def test_a_second_name_id_or_subject_is_refused(
    app, client, acme_with_idp, idp, key_pairs, duplicate
):
    """FAULT. Schema-invalid signed assertions that name two subjects (two NameIDs, or two
    Subjects; pysaml2 refused both by schema validation) are accepted, and the first in
    document order is who logs in: the identity read depends on element order."""

    def edit(root, assertion):
        subject = assertion.find(f"{SAML}Subject")
        subject.find(f"{SAML}NameID").text = "u1"
        original = subject if duplicate == "Subject" else subject.find(f"{SAML}NameID")
        extra = copy.deepcopy(original)
        (extra if duplicate == "NameID" else extra.find(f"{SAML}NameID")).text = "u2"
        original.addprevious(extra)

    acme_with_idp(match="nameid")
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)

    refused(post_acs(client, text(root)), client)
    assert_nobody_linked()


@pytest.mark.parametrize("where", ["two_values", "two_attribute_statements"])
def test_a_match_attribute_with_two_different_values_is_refused(
    app, client, acme_with_idp, idp, key_pairs, where
):
    """FAULT. The match attribute (uid) carries u2 and u1 (two values of one Attribute, or
    the Attribute in two AttributeStatements): the first value silently decides whom the
    NameID is linked to, for good. Expected: an ambiguous match is refused."""

    def edit(root, assertion):
        if where == "two_values":
            value = assertion.find(f".//{SAML}AttributeValue")  # uid's, "u1"
            extra = copy.deepcopy(value)
            extra.text = "u2"
            value.addprevious(extra)
        else:
            statement = assertion.find(f"{SAML}AttributeStatement")
            extra = copy.deepcopy(statement)
            for value in extra.iter(f"{SAML}AttributeValue"):
                value.text = value.text.replace("u1", "u2")
            statement.addprevious(extra)

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)

    refused(post_acs(client, text(root)), client)
    assert_nobody_linked()


def test_a_second_subject_confirmation_data_with_another_recipient_is_refused(
    app, client, acme_with_idp, idp, key_pairs
):
    """FAULT. One bearer SubjectConfirmation with two SubjectConfirmationData (schema allows
    one): Kursa checks only the first. Right-then-wrong Recipient logs in, wrong-then-right
    is refused: the outcome depends on order. Expected: refused either way."""

    def edit(root, assertion):
        data = assertion.find(f".//{SAML}SubjectConfirmationData")
        extra = copy.deepcopy(data)
        extra.set("Recipient", "https://evil.test/acs")
        data.addnext(extra)

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)

    refused(post_acs(client, text(root)), client)


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_a_logout_request_without_destination_for_another_customer_ends_nothing(
    app, client, acme_with_idp, idp, key_pairs, make_customer, import_csv, binding
):
    """FAULT. acme and beta share the IdP. A signed LogoutRequest without Destination (the
    bindings require it on signed messages; Kursa checks it only when present), meant for
    beta, replayed at acme's sls, ends acme's session of the same NameID. The replay record
    is per provider, so the same message works once at each customer."""
    two_customers_with_the_same_idp(acme_with_idp, make_customer, import_csv, idp)
    session = log_in(client, idp)
    server = idp.server(client)
    _, request = server.create_logout_request(
        BETA_SLS,
        BETA_SP,
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=session.name_id),
        sign=False,
    )
    request.destination = None
    if binding == "redirect":
        info = server.apply_binding(
            BINDING_HTTP_REDIRECT, str(request), SLS, sign=True, sigalg=SIG_RSA_SHA256
        )
        answer = app.test_client().get(local(dict(info["headers"])["Location"]))
    else:
        root = etree.fromstring(str(request).encode())
        sign(root, key_pairs["idp"])
        encoded = base64.b64encode(etree.tostring(root)).decode()
        answer = app.test_client().post("/sso/acme/saml/sls", data={"SAMLRequest": encoded})

    db.session.refresh(session)
    assert session.ended_at is None
    assert answer.status_code == 403


# ==== attacks that held (regression guards) ================================================


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


def test_response_in_response_to_differing_from_the_bearers_is_refused(
    app, client, acme_with_idp, idp, key_pairs
):
    """The assertion answers request A; the unsigned Response is re-pointed at request B."""
    acme_with_idp()
    first, second = start_login(client), start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, first.request_id)
    root.set("InResponseTo", second.request_id)
    assert_refused(post_acs(client, text(root)), client, "unknown_request")


def test_an_answer_stripped_of_its_in_response_to_is_not_an_idp_initiated_login(
    app, client, acme_with_idp, idp, key_pairs
):
    """IdP-initiated allowed: an SP-initiated answer whose unsigned Response loses its
    InResponseTo still names the request in its bearer, so it is refused."""
    acme_with_idp(allow_idp_initiated=True)
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id)
    del root.attrib["InResponseTo"]
    assert_refused(post_acs(client, text(root)), client, "unknown_request")


@pytest.mark.parametrize("issuer", ["own", "corp"])
def test_another_idp_of_the_same_customer_cannot_answer_corps_request(
    app, client, acme_with_idp, idp, key_pairs, issuer
):
    """acme also trusts a second IdP (another key): its signed answer to corp's request is
    refused under its own issuer and under corp's."""
    customer, _ = acme_with_idp()
    other = SamlIdp(key_pairs["attacker"], entity_id="https://other-idp.test/idp")
    add_saml_provider(
        customer, "other", other.metadata, match="username", match_attribute="uid", actor="t"
    )
    db.session.commit()
    started = start_login(client)  # corp's
    xml = other.respond(client, started.request_id)
    if issuer == "corp":
        xml = xml.replace("https://other-idp.test/idp", IDP_ENTITY)
    refused(post_acs(client, xml), client)


def test_an_assertion_for_two_audiences_cannot_be_replayed_at_the_other_customer(
    app, client, acme_with_idp, idp, key_pairs, make_customer, import_csv
):
    """acme and beta share the IdP, IdP-initiated allowed at both. An assertion naming both
    SPs as audiences, used at acme, then replayed at beta (replay records are per provider):
    refused by the bearer Recipient (acme's ACS)."""
    two_customers_with_the_same_idp(
        acme_with_idp, make_customer, import_csv, idp, allow_idp_initiated=True
    )

    def edit(root, assertion):
        audience = etree.SubElement(
            assertion.find(f".//{SAML}AudienceRestriction"), f"{SAML}Audience"
        )
        audience.text = BETA_SP

    root, _ = signed_assertion(idp, client, key_pairs, None, edit=edit)
    assert post_acs(client, text(root)).status_code == 302
    forget_browser(client)
    root.set("Destination", BETA_ACS)
    encoded = base64.b64encode(text(root).encode()).decode()
    answer = client.post("/sso/beta/saml/acs", data={"SAMLResponse": encoded})
    assert_refused(answer, client, "recipient")


@pytest.mark.parametrize(
    "value",
    ["!!!!", "====", "é", "A", " ", "\x00", "PD94bWw", base64.b64encode(b"\x89PNG").decode()],
)
def test_a_saml_response_that_is_not_base64_or_not_xml_is_refused(
    app, client, acme_with_idp, value
):
    acme_with_idp()
    answer = client.post("/sso/acme/saml/acs", data={"SAMLResponse": value})
    assert answer.status_code == 403


def test_a_ten_megabyte_saml_response_is_refused_quickly(app, client, acme_with_idp):
    acme_with_idp()
    started = time.monotonic()
    answer = client.post("/sso/acme/saml/acs", data={"SAMLResponse": "PD94" * (10 * 2**18)})
    assert answer.status_code in (403, 413)
    assert time.monotonic() - started < 5


# --- single logout -------------------------------------------------------------------------


def test_a_logout_response_answering_another_customers_request_is_refused(
    app, client, acme_with_idp, idp, make_customer, import_csv
):
    """acme and beta share the IdP. The IdP's genuine LogoutResponse to a logout request of
    beta's, sent to acme's sls: refused, and beta's request stays open for its own answer."""
    _, beta = two_customers_with_the_same_idp(acme_with_idp, make_customer, import_csv, idp)
    log_in(client, idp)
    query = single(log_out(client))
    server = idp.server(client)
    request = server.parse_logout_request(
        query["SAMLRequest"],
        BINDING_HTTP_REDIRECT,
        sigalg=query["SigAlg"],
        signature=query["Signature"],
    ).message
    # A logout request Kursa sent for beta (stored as start_logout stores it).
    beta_provider = db.session.scalar(
        select(IdentityProvider).where(IdentityProvider.customer_id == beta.id)
    )
    now = portal.core.db.utcnow()
    db.session.add(
        SamlLogoutRequest(
            id="id-beta-logout-1",
            provider_id=beta_provider.id,
            created_at=now,
            expires_at=now + timedelta(minutes=10),
        )
    )
    db.session.commit()
    request.id = "id-beta-logout-1"

    answer = client.get(local(idp_answer(server, request)))

    assert answer.status_code == 403
    assert not db.session.get(SamlLogoutRequest, "id-beta-logout-1").is_used


def test_a_logout_response_signed_by_another_idp_of_the_customer_is_refused(
    app, client, acme_with_idp, idp, key_pairs
):
    """acme trusts a second IdP; it answers the logout Kursa sent to corp (InResponseTo
    right, its own issuer and key): refused, the request stays open."""
    customer, _ = acme_with_idp()
    other = SamlIdp(key_pairs["attacker"], entity_id="https://other-idp.test/idp")
    add_saml_provider(
        customer, "other", other.metadata, match="username", match_attribute="uid", actor="t"
    )
    db.session.commit()
    log_in(client, idp)
    query = single(log_out(client))
    request = (
        idp.server(client)
        .parse_logout_request(
            query["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            sigalg=query["SigAlg"],
            signature=query["Signature"],
        )
        .message
    )

    answer = client.get(local(idp_answer(other.server(client), request)))

    assert answer.status_code == 403
    assert not db.session.get(SamlLogoutRequest, request.id).is_used


def test_beta_idps_logout_request_naming_an_acme_name_id_ends_nothing_at_acme(
    app, client, acme_with_idp, idp, key_pairs, make_customer, import_csv
):
    """beta's own IdP (another entity and key) signs a valid LogoutRequest naming acme's
    user's NameID and sends it to beta's sls and to acme's: acme's session lives."""
    acme_with_idp()
    session = log_in(client, idp)
    beta = make_customer("beta", "Beta")
    import_csv(beta, UNITS, [["b1", "B", "One", "b1@beta.test", "E1", "1"]])
    evil = SamlIdp(key_pairs["attacker"], entity_id="https://beta-idp.test/idp")
    add_saml_provider(
        beta, "corp", evil.metadata, match="username", match_attribute="uid", actor="t"
    )
    db.session.commit()
    for sls, sp in ((BETA_SLS, BETA_SP), (SLS, SP_ENTITY)):
        _, xml = evil.server(client).create_logout_request(
            sls,
            sp,
            name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=session.name_id),
            sign=True,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        encoded = base64.b64encode(str(xml).encode()).decode()
        app.test_client().post(sls[len("https://kursa.test") :], data={"SAMLRequest": encoded})

    db.session.refresh(session)
    assert session.ended_at is None
    assert client.get(PAGE).status_code == 200


@pytest.mark.parametrize("insert", ["<!---->", "<![CDATA[]]>"])
def test_markup_in_a_posted_logout_request_name_id_does_not_shorten_it(
    app, client, acme_with_idp, idp, insert
):
    """The message is verified on lxml's parse and read on defusedxml's (expat): the IdP
    signed the NameID 'subject-u1.evil' (another person); a comment or empty CDATA after
    'subject-u1' keeps the signature valid; the reader must still see the whole NameID."""
    acme_with_idp()
    session = log_in(client, idp)
    _, xml = idp.server(client).create_logout_request(
        SLS,
        SP_ENTITY,
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text="subject-u1.evil"),
        sign=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    forged = str(xml).replace(">subject-u1.evil<", f">subject-u1{insert}.evil<", 1)
    assert forged != str(xml)
    encoded = base64.b64encode(forged.encode()).decode()

    answer = app.test_client().post("/sso/acme/saml/sls", data={"SAMLRequest": encoded})

    assert answer.status_code in (302, 403)
    db.session.refresh(session)
    assert session.ended_at is None
