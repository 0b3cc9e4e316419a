"""SP-initiated SAML login against pysaml2's IdP in-process: the whole flow, then every
response that must be refused (each leaves no session behind)."""

import logging
import re
from xml.etree import ElementTree as etree

from sqlalchemy import func, select

from portal.accounts.models import Account
from portal.core.audit import AuditEntry
from portal.core.db import db
from portal.directory.models import Person
from sso.models import Identity, SamlAssertionSeen, SamlRequest
from tests.sso.conftest import (
    ACS,
    OTHER_SP,
    PERSONS,
    UNITS,
    logged_in_account_id,
    post_acs,
    start_login,
)

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}


def person_named(username: str) -> Person:
    return db.session.scalar(select(Person).where(Person.username == username))


def assert_refused(answer, client, reason_part: str = ""):
    assert answer.status_code == 403, answer.get_data(as_text=True)
    assert "You cannot log in" in answer.get_data(as_text=True)
    assert logged_in_account_id(client) is None
    refusal = db.session.scalar(
        select(AuditEntry)
        .where(AuditEntry.action == "login.refused")
        .order_by(AuditEntry.id.desc())
    )
    assert refusal is not None
    assert reason_part in refusal.details["reason"]
    return refusal


# --- the whole flow -------------------------------------------------------------------------


def test_sp_initiated_login_logs_in_the_synced_person(app, client, acme_with_idp, idp):
    acme_with_idp()
    started = start_login(client, next_url="/courses")
    stored = db.session.get(SamlRequest, started.request_id)
    assert stored is not None and not stored.is_used

    answer = post_acs(client, idp.respond(client, started.request_id, username="u1"))

    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert answer.headers["Location"].endswith("/courses")
    account = db.session.get(Account, int(logged_in_account_id(client)))
    assert account.person_id == person_named("u1").id
    assert account.password_hash is None
    identity = db.session.scalar(select(Identity))
    assert (identity.subject, identity.person_id) == ("subject-u1", person_named("u1").id)
    db.session.expire_all()
    assert db.session.get(SamlRequest, started.request_id).is_used
    assert db.session.scalar(select(func.count()).select_from(SamlAssertionSeen)) == 1


def test_session_holds_ids_only(app, client, acme_with_idp, idp):
    acme_with_idp()
    started = start_login(client)
    post_acs(client, idp.respond(client, started.request_id))
    with client.session_transaction() as session:
        values = " ".join(str(v) for v in session.values())
    assert "u1" not in values and "acme.test" not in values and "subject" not in values


def test_later_login_follows_the_link_after_a_rename(app, client, acme_with_idp, idp, import_csv):
    customer, _ = acme_with_idp()
    started = start_login(client)
    post_acs(client, idp.respond(client, started.request_id, username="u1"))
    first = logged_in_account_id(client)
    with client.session_transaction() as session:
        session.clear()
    # The person's anchor is the username in a file import, so rename in the database.
    person_named("u1").username = "u1-renamed"
    db.session.commit()

    started = start_login(client)
    answer = post_acs(client, idp.respond(client, started.request_id, username="u1"))

    assert answer.status_code == 302
    assert logged_in_account_id(client) == first


def test_first_and_later_logins_are_audited_and_dated(app, client, acme_with_idp, idp):
    acme_with_idp()
    post_acs(client, idp.respond(client, start_login(client).request_id, username="u1"))
    person = person_named("u1")
    account = db.session.get(Account, int(logged_in_account_id(client)))
    provider = db.session.scalar(select(Identity.provider_id))
    entries = [
        (e.actor, e.action, e.object_type, e.object_id, e.details)
        for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        if e.action in ("sso.linked", "account.created", "login.sso")
    ]
    assert entries == [
        (f"sso:{provider}", "sso.linked", "person", str(person.id), {"provider": provider}),
        ("sso", "account.created", "account", str(account.id), {"person": person.id}),
        ("account:u1", "login.sso", "account", str(account.id), {"provider": provider}),
    ]
    first_seen = (account.last_login_at, db.session.scalar(select(Identity.last_login_at)))
    assert None not in first_seen

    later = app.test_client()
    post_acs(later, idp.respond(later, start_login(later).request_id, username="u1"))
    db.session.expire_all()
    logins = db.session.scalars(select(AuditEntry.action).where(AuditEntry.action == "login.sso"))
    assert len(list(logins)) == 2
    assert db.session.get(Account, account.id).last_login_at > first_seen[0]
    assert db.session.scalar(select(Identity.last_login_at)) > first_seen[1]


def test_username_match_applies_the_prefix_ignoring_case(
    app, client, make_customer, import_csv, idp
):
    from sso.operations import add_saml_provider

    customer = make_customer("acme", "Acme", prefix="ACME_")
    import_csv(customer, UNITS, [["ACME_u7", "Ida", "Lund", "", "", "1"]])
    add_saml_provider(
        customer, "corp", idp.metadata, match="username", match_attribute="uid", actor="test"
    )
    db.session.commit()
    started = start_login(client)

    answer = post_acs(client, idp.respond(client, started.request_id, username="U7"))

    assert answer.status_code == 302, answer.get_data(as_text=True)
    account = db.session.get(Account, int(logged_in_account_id(client)))
    assert account.person_id == person_named("ACME_u7").id


def test_email_match_reads_the_attribute(app, client, acme_with_idp, idp):
    acme_with_idp(match="email", match_attribute="mail")
    started = start_login(client)

    # The test IdP sends mail = <username>@acme.test: ida.lund@acme.test is u1's email.
    answer = post_acs(client, idp.respond(client, started.request_id, username="ida.lund"))

    assert answer.status_code == 302, answer.get_data(as_text=True)
    account = db.session.get(Account, int(logged_in_account_id(client)))
    assert account.person_id == person_named("u1").id


# --- responses that must be refused ---------------------------------------------------------


def test_unsigned_response_is_refused(app, client, acme_with_idp, idp):
    acme_with_idp()
    started = start_login(client)
    xml = idp.respond(client, started.request_id, sign_response=False, sign_assertion=False)
    assert_refused(post_acs(client, xml), client, "signature")


def test_signed_response_with_unsigned_assertion_is_refused_when_assertion_must_be_signed(
    app, client, acme_with_idp, idp
):
    acme_with_idp()
    started = start_login(client)
    xml = idp.respond(client, started.request_id, sign_response=True, sign_assertion=False)
    assert_refused(post_acs(client, xml), client, "signature")


def test_signed_response_alone_is_accepted_when_the_provider_allows_it(
    app, client, acme_with_idp, idp
):
    acme_with_idp(require_signed_assertion=False)
    started = start_login(client)
    xml = idp.respond(client, started.request_id, sign_response=True, sign_assertion=False)
    assert post_acs(client, xml).status_code == 302
    assert logged_in_account_id(client) is not None


def test_signature_by_another_key_is_refused(app, client, acme_with_idp, attacker_idp):
    acme_with_idp()
    started = start_login(client)
    xml = attacker_idp.respond(client, started.request_id)
    assert_refused(post_acs(client, xml), client, "signature")


def test_wrong_audience_is_refused(app, client, acme_with_idp, idp):
    acme_with_idp()
    started = start_login(client)
    xml = idp.respond(client, started.request_id, audience=OTHER_SP)
    assert_refused(post_acs(client, xml), client, "audience")


def test_wrong_destination_is_refused(app, client, acme_with_idp, idp):
    acme_with_idp()
    started = start_login(client)
    xml = idp.respond(client, started.request_id, destination="https://other-sp.test/acs")
    assert_refused(post_acs(client, xml), client, "destination")


def test_wrong_recipient_is_refused(app, client, acme_with_idp, idp):
    acme_with_idp()
    started = start_login(client)
    xml = idp.respond(client, started.request_id, recipient="https://other-sp.test/acs")
    assert_refused(post_acs(client, xml), client, "recipient")


def test_expired_assertion_is_refused(app, client, acme_with_idp, idp, sp_clock):
    acme_with_idp()
    started = start_login(client)
    xml = idp.respond(client, started.request_id)
    sp_clock(5 * 60 + 121)  # the IdP's lifetime is 5 minutes; skew 120 s
    assert_refused(post_acs(client, xml), client, "expired")


def test_not_on_or_after_is_exclusive(app, client, acme_with_idp, idp, sp_clock):
    acme_with_idp(clock_skew_seconds=0)
    started = start_login(client)
    xml = idp.respond(client, started.request_id)
    bound = _not_on_or_after(xml)
    import calendar
    import time

    sp_clock(calendar.timegm(time.strptime(bound, "%Y-%m-%dT%H:%M:%SZ")) - time.time())
    assert_refused(post_acs(client, xml), client, "expired")


def test_assertion_within_the_clock_skew_is_accepted(app, client, acme_with_idp, idp, sp_clock):
    acme_with_idp()
    started = start_login(client)
    xml = idp.respond(client, started.request_id)
    sp_clock(-60)  # the SP's clock is a minute behind the IdP's
    assert post_acs(client, xml).status_code == 302


def test_not_yet_valid_assertion_is_refused(app, client, acme_with_idp, idp, sp_clock):
    acme_with_idp()
    started = start_login(client)
    xml = idp.respond(client, started.request_id)
    sp_clock(-600)  # ten minutes behind: the assertion's NotBefore lies ahead
    assert_refused(post_acs(client, xml), client, "not_yet_valid")


def test_unknown_in_response_to_is_refused(app, client, acme_with_idp, idp):
    acme_with_idp()
    start_login(client)
    xml = idp.respond(client, "id-that-kursa-never-sent")
    assert_refused(post_acs(client, xml), client, "unknown_request")


def test_replayed_response_is_refused(app, client, acme_with_idp, idp):
    acme_with_idp()
    started = start_login(client)
    xml = idp.respond(client, started.request_id)
    assert post_acs(client, xml).status_code == 302
    with client.session_transaction() as session:
        session.clear()

    assert_refused(post_acs(client, xml), client, "unknown_request")


def test_replayed_idp_initiated_assertion_is_refused(app, client, acme_with_idp, idp):
    acme_with_idp(allow_idp_initiated=True)
    xml = idp.respond(client, None)
    assert post_acs(client, xml).status_code == 302
    with client.session_transaction() as session:
        session.clear()

    assert_refused(post_acs(client, xml), client, "replay")


def test_idp_initiated_login_is_refused_by_default(app, client, acme_with_idp, idp):
    acme_with_idp()
    xml = idp.respond(client, None)
    assert_refused(post_acs(client, xml), client, "idp_initiated")


def test_dtd_and_entities_are_refused(app, client, acme_with_idp, idp):
    acme_with_idp()
    started = start_login(client)
    xml = idp.respond(client, started.request_id)
    body = xml.split("?>", 1)[1] if xml.startswith("<?xml") else xml
    doctype = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    assert_refused(post_acs(client, doctype + body), client, "dtd")


def test_signature_wrapping_is_refused(app, client, acme_with_idp, idp):
    """An unsigned assertion for u2 put before the signed one for u1 must not log in u2."""
    acme_with_idp()
    started = start_login(client)
    xml = idp.respond(client, started.request_id, username="u1", sign_response=False)
    # Edited as text: re-serialising would change the signed bytes and fail for another reason.
    start = re.search(r"<(\w+:)?Assertion[ >]", xml).start()
    end = xml.index("Assertion>", start) + len("Assertion>")
    signed = xml[start:end]
    forged = re.sub(r"<(\w+:)?Signature[ >].*?</(\w+:)?Signature>", "", signed, flags=re.S)
    forged = re.sub(r'ID="[^"]+"', 'ID="_forged"', forged, count=1)
    forged = (
        forged.replace(">u1<", ">u2<").replace("u1@", "u2@").replace("subject-u1", "subject-u2")
    )
    assert forged != signed and "Signature" not in forged
    wrapped = xml[:start] + forged + xml[start:]

    answer = post_acs(client, wrapped)

    assert_refused(answer, client)
    assert db.session.scalar(select(func.count()).select_from(Identity)) == 0


def test_unknown_person_is_refused_with_whom_to_contact(app, client, acme_with_idp, idp):
    acme_with_idp()
    started = start_login(client)
    answer = post_acs(client, idp.respond(client, started.request_id, username="nobody"))
    refusal = assert_refused(answer, client, "not_found")
    text = answer.get_data(as_text=True)
    assert "not in Acme" in text and "HR or IT department" in text
    assert "nobody" not in str(refusal.details)


def test_inactive_person_is_refused(app, client, acme_with_idp, idp, import_csv):
    customer, _ = acme_with_idp()
    import_csv(customer, UNITS, PERSONS[1:])  # u1 left the file: inactivated by the import
    db.session.commit()
    assert not person_named("u1").is_active
    started = start_login(client)
    answer = post_acs(client, idp.respond(client, started.request_id, username="u1"))
    assert_refused(answer, client, "inactive")
    assert "inactive" in answer.get_data(as_text=True)


def test_person_of_another_customer_is_refused(
    app, client, acme_with_idp, idp, make_customer, import_csv
):
    acme_with_idp()
    beta = make_customer("beta", "Beta")
    import_csv(beta, [["9", "Beta HQ", "", ""]], [["b9", "Eva", "Berg", "", "", "9"]])
    db.session.commit()
    started = start_login(client)
    answer = post_acs(client, idp.respond(client, started.request_id, username="b9"))
    assert_refused(answer, client, "other_customer")


def test_refusals_are_logged_at_warning_without_personal_data(
    app, client, acme_with_idp, idp, caplog, monkeypatch
):
    acme_with_idp()
    started = start_login(client)
    xml = idp.respond(client, started.request_id, username="nobody")
    # The migrations' logging.fileConfig disables loggers that existed before they ran.
    for name in ("sso.saml_acs", "sso.linking", "saml2"):
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    caplog.set_level(logging.DEBUG)

    post_acs(client, xml)
    post_acs(client, idp.respond(client, "unknown-request", username="nobody"))

    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "refused" in r.message]
    assert {r.name for r in warnings} == {"sso.saml_acs", "sso.linking"}
    assert "nobody" not in caplog.text and "subject-" not in caplog.text


def test_metadata_names_the_acs_and_the_signing_key(app, client, acme_with_idp):
    acme_with_idp()
    answer = client.get("/sso/acme/saml/metadata")
    assert answer.status_code == 200
    root = etree.fromstring(answer.data)
    md = "urn:oasis:names:tc:SAML:2.0:metadata"
    assert root.get("entityID") == "https://kursa.test/sso/acme/saml/metadata"
    acs = root.find(f".//{{{md}}}AssertionConsumerService")
    assert acs.get("Location") == ACS
    assert root.find(f".//{{{NS['ds']}}}X509Certificate") is not None


def test_unknown_customer_or_provider_is_not_found(app, client, acme_with_idp):
    acme_with_idp()
    assert client.get("/sso/nope/corp/login").status_code == 404
    assert client.get("/sso/acme/nope/login").status_code == 404
    assert client.get("/sso/nope/saml/metadata").status_code == 404


def _not_on_or_after(xml: str) -> str:
    root = etree.fromstring(xml.encode())
    return root.find(".//saml:Conditions", NS).get("NotOnOrAfter")
