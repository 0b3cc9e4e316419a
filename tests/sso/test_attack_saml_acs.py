"""Attacks on the SAML ACS (/sso/<customer>/saml/acs) not covered by tests/sso: status,
conditions, audiences, confirmation methods, namespaced ID decoys, bombs and sizes, encodings,
extreme times. Documents are made by the in-process pysaml2 IdP and re-signed with the IdP's
real key (tests.sso.test_saml_signature.sign), so a refusal comes from the rule attacked."""

import base64
import copy
import time
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from tests.sso.conftest import OTHER_SP, logged_in_account_id, post_acs, start_login
from tests.sso.test_saml_signature import (
    SAML,
    SAMLP,
    assert_nobody_linked,
    sign,
    text,
    unsigned,
)


def signed_assertion(idp, client, key_pairs, request_id, edit=None, **options):
    root, assertion = unsigned(idp, client, request_id, **options)
    if edit:
        edit(root, assertion)
    sign(assertion, key_pairs["idp"])
    return root, assertion


def refused(answer, client):
    assert answer.status_code == 403, (answer.status_code, answer.get_data(as_text=True)[:300])
    assert logged_in_account_id(client) is None


def test_status_not_success_with_a_valid_signed_assertion_is_refused(
    app, client, acme_with_idp, idp, key_pairs
):
    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id)
    code = root.find(f"{SAMLP}Status/{SAMLP}StatusCode")
    code.set("Value", "urn:oasis:names:tc:SAML:2.0:status:Responder")
    refused(post_acs(client, text(root)), client)


def test_conditions_missing_is_refused(app, client, acme_with_idp, idp, key_pairs):
    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(
        idp,
        client,
        key_pairs,
        started.request_id,
        edit=lambda r, a: a.remove(a.find(f"{SAML}Conditions")),
    )
    refused(post_acs(client, text(root)), client)


def test_a_second_audience_restriction_without_kursa_is_refused(
    app, client, acme_with_idp, idp, key_pairs
):
    def edit(root, assertion):
        conditions = assertion.find(f"{SAML}Conditions")
        extra = etree.SubElement(conditions, f"{SAML}AudienceRestriction")
        etree.SubElement(extra, f"{SAML}Audience").text = OTHER_SP

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)
    refused(post_acs(client, text(root)), client)


def test_empty_audience_restriction_is_refused(app, client, acme_with_idp, idp, key_pairs):
    def edit(root, assertion):
        etree.SubElement(assertion.find(f"{SAML}Conditions"), f"{SAML}AudienceRestriction")

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)
    refused(post_acs(client, text(root)), client)


@pytest.mark.parametrize(
    "method",
    [
        "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key",
        "urn:oasis:names:tc:SAML:2.0:cm:sender-vouches",
        "urn:oasis:names:tc:SAML:2.0:cm:bearer ",
    ],
)
def test_subject_confirmation_with_another_method_is_refused(
    app, client, acme_with_idp, idp, key_pairs, method
):
    def edit(root, assertion):
        for confirmation in assertion.iter(f"{SAML}SubjectConfirmation"):
            confirmation.set("Method", method)

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)
    refused(post_acs(client, text(root)), client)


def test_namespaced_id_decoy_before_the_assertion_is_refused(
    app, client, acme_with_idp, idp, key_pairs
):
    """xmlsec's add_ids matches attributes by local name, so a decoy with x:ID="<assertion id>"
    placed before the Assertion is registered first; Kursa's uniqueness check only looks at
    un-namespaced ID and xml:id. The decoy is the genuine signed assertion for u1 (ID moved
    into a foreign namespace); the read Assertion is forged for u2 with the genuine
    signature. Safe: refused (the digest then covers the decoy, which differs from the
    original)."""
    acme_with_idp()
    started = start_login(client)
    root, assertion = signed_assertion(idp, client, key_pairs, started.request_id, username="u1")
    decoy = copy.deepcopy(assertion)
    assertion_id = decoy.attrib.pop("ID")
    decoy.set("{urn:evil}ID", assertion_id)
    forged = assertion
    for value in forged.iter(f"{SAML}AttributeValue"):
        value.text = (value.text or "").replace("u1", "u2")
    extensions = etree.Element(f"{SAMLP}Extensions")
    root.find(f"{SAML}Issuer").addnext(extensions)
    extensions.append(decoy)
    refused(post_acs(client, text(root)), client)
    assert_nobody_linked()


def test_prefix_redefinition_in_the_signed_assertion_breaks_the_signature(
    app, client, acme_with_idp, idp, key_pairs
):
    """Rebinding the saml prefix inside the signed Assertion to another namespace makes
    NameID/Attribute elements invisible to the reader but keeps the text: refused."""
    acme_with_idp()
    started = start_login(client)
    root, assertion = signed_assertion(idp, client, key_pairs, started.request_id)
    xml = (
        text(root).replace("<ns1:Subject>", '<ns1:Subject xmlns:ns1="urn:evil">', 1)
        if "<ns1:Subject>" in text(root)
        else text(root).replace("<saml:Subject>", '<saml:Subject xmlns:saml="urn:evil">', 1)
    )
    refused(post_acs(client, xml), client)


def test_deep_nesting_is_refused_cleanly(app, client, acme_with_idp):
    acme_with_idp()
    depth = 60000
    xml = '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">' + "<a>" * depth
    xml += "</a>" * depth + "</samlp:Response>"
    started = time.monotonic()
    refused(post_acs(client, xml), client)
    assert time.monotonic() - started < 5


def test_many_elements_under_the_size_limit_are_handled_quickly(app, client, acme_with_idp):
    """About 190 kB of tiny elements with ID attributes: the uniqueness walk must be quick."""
    acme_with_idp()
    body = "".join(f'<x ID="i{i}"/>' for i in range(14000))
    xml = (
        '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" InResponseTo="nope">'
        f"<saml:Issuer>x</saml:Issuer>{body}</samlp:Response>"
    )
    started = time.monotonic()
    refused(post_acs(client, xml), client)
    assert time.monotonic() - started < 5


def test_entity_reference_without_dtd_is_refused(app, client, acme_with_idp, idp, key_pairs):
    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id)
    xml = text(root).replace("subject-u1", "&xxe;subject-u1", 1)
    refused(post_acs(client, xml), client)


@pytest.mark.parametrize("size", [300 * 1024, 3 * 1024 * 1024])
def test_huge_base64_is_refused_not_500(app, client, acme_with_idp, size):
    acme_with_idp()
    answer = client.post("/sso/acme/saml/acs", data={"SAMLResponse": "A" * size})
    assert answer.status_code in (403, 413)


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"\xff\xfe\x00<",
        b'<?xml version="1.0" encoding="EBCDIC-XYZ"?><a/>',
        b'<?xml version="1.0" encoding="UTF-16"?><a/>',
        '<?xml version="1.0" encoding="ISO-8859-1"?><samlp:Response '
        'xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">\xe6\xf8\xe5</samlp:Response>'.encode(
            "latin-1"
        ),
        b"<samlp:Response xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'>"
        b"\xc3\x28</samlp:Response>",
        b"not xml at all",
        b"<?xml-stylesheet href='http://evil.test/x.xsl'?><a/>",
        b"<xi:include xmlns:xi='http://www.w3.org/2001/XInclude' href='/etc/passwd'/>",
    ],
)
def test_odd_documents_and_encodings_are_refused_not_500(app, client, acme_with_idp, document):
    acme_with_idp()
    answer = client.post(
        "/sso/acme/saml/acs", data={"SAMLResponse": base64.b64encode(document).decode()}
    )
    assert answer.status_code == 403


def test_a_utf16_encoded_valid_response_does_not_crash(app, client, acme_with_idp, idp, key_pairs):
    """The same signed document re-encoded in UTF-16 (c14n is UTF-8, so it still verifies):
    either a login or a refusal, never a 500."""
    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id)
    document = etree.tostring(root, encoding="UTF-16", xml_declaration=True)
    answer = client.post(
        "/sso/acme/saml/acs", data={"SAMLResponse": base64.b64encode(document).decode()}
    )
    assert answer.status_code in (302, 403)


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "2030-13-45T99:00:00Z",
        "+275760-09-13T00:00:00Z",
    ],
)
def test_extreme_times_in_a_signed_assertion_are_refused_not_500(
    app, client, acme_with_idp, idp, key_pairs, value
):
    """An IdP that writes an extreme NotOnOrAfter (a misconfigured lifetime) must not 500."""

    def edit(root, assertion):
        assertion.find(f"{SAML}Conditions").set("NotOnOrAfter", value)

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)
    answer = post_acs(client, text(root))
    assert answer.status_code in (302, 403)


def test_response_for_another_customer_is_refused(
    app, client, acme_with_idp, idp, key_pairs, make_customer
):
    """A valid answer to acme's request posted to beta's ACS (beta exists, no provider)."""
    acme_with_idp()
    make_customer("beta", "Beta")
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id)
    sign(root, key_pairs["idp"])
    encoded = base64.b64encode(text(root).encode()).decode()
    answer = client.post("/sso/beta/saml/acs", data={"SAMLResponse": encoded})
    assert answer.status_code == 403
    # and the request is still usable at acme (nothing consumed by the wrong customer)
    assert post_acs(client, text(root)).status_code == 302


@pytest.mark.parametrize(("days", "status"), [(0.5, 302), (2, 403)])
def test_an_assertion_valid_for_days_is_refused(
    app, client, acme_with_idp, idp, key_pairs, days, status
):
    """The replay record must outlive the assertion, so one valid far longer than a login
    takes (here two days) is refused instead of being remembered for years."""
    until = (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def edit(root, assertion):
        assertion.find(f"{SAML}Conditions").set("NotOnOrAfter", until)

    acme_with_idp()
    started = start_login(client)
    root, _ = signed_assertion(idp, client, key_pairs, started.request_id, edit=edit)
    assert post_acs(client, text(root)).status_code == status
