"""Encrypted assertions from pysaml2's IdP: decrypted with the SP's configured encryption key,
and the decrypted assertion's signature is still checked as the provider requires."""

import re

import pytest
from defusedxml.ElementTree import fromstring

from sso.keys import write_self_signed_pair
from tests.sso.conftest import logged_in_account_id, post_acs, start_login

MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"


@pytest.fixture
def encryption_pair(app, tmp_path, monkeypatch):
    """A separate encryption key pair from [sso] encryption_key_file / encryption_cert_file."""
    key_file, cert_file = write_self_signed_pair(tmp_path / "enc", "Kursa encryption")
    sso = app.config["KURSA"]["sso"]
    monkeypatch.setitem(sso, "encryption_key_file", key_file)
    monkeypatch.setitem(sso, "encryption_cert_file", cert_file)
    return key_file, cert_file


def cert_body(path: str) -> str:
    return "".join(line for line in open(path).read().splitlines() if "-----" not in line)


def encrypted_answer(client, idp, *, sign_assertion=True, to_cert: str | None = None) -> str:
    started = start_login(client)
    extra = {"encrypt_assertion": True, "encrypt_assertion_self_contained": True}
    if to_cert is not None:
        extra["encrypt_cert_assertion"] = to_cert
    xml = idp.respond(client, started.request_id, sign_assertion=sign_assertion, **extra)
    assert "EncryptedAssertion" in xml and "subject-u1" not in xml  # really encrypted
    return xml


def test_sp_metadata_publishes_the_encryption_certificate(client, acme_with_idp, encryption_pair):
    acme_with_idp()
    root = fromstring(client.get("/sso/acme/saml/metadata").get_data())
    keys = root.findall(f"{MD}SPSSODescriptor/{MD}KeyDescriptor")
    published = {
        key.get("use"): "".join(key.find(f".//{DS}X509Certificate").text.split()) for key in keys
    }
    assert published["encryption"] == cert_body(encryption_pair[1])
    assert published["signing"] != published["encryption"]


def test_an_encrypted_signed_assertion_is_decrypted_and_accepted(
    client, acme_with_idp, idp, encryption_pair
):
    acme_with_idp()
    answer = post_acs(client, encrypted_answer(client, idp))
    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert logged_in_account_id(client) is not None


def test_the_decrypted_assertion_must_be_signed_when_the_provider_requires_it(
    client, acme_with_idp, idp, encryption_pair
):
    acme_with_idp()  # require_signed_assertion is on by default; the Response is signed
    answer = post_acs(client, encrypted_answer(client, idp, sign_assertion=False))
    assert answer.status_code == 403
    assert logged_in_account_id(client) is None


def test_a_provider_content_with_a_signed_response_accepts_it(
    client, acme_with_idp, idp, encryption_pair
):
    acme_with_idp(require_signed_assertion=False)
    answer = post_acs(client, encrypted_answer(client, idp, sign_assertion=False))
    assert answer.status_code == 302, answer.get_data(as_text=True)


def test_an_assertion_encrypted_to_another_key_is_refused(
    client, acme_with_idp, idp, encryption_pair, key_pairs
):
    acme_with_idp()
    other = re.sub(r"\s", "", cert_body(key_pairs["attacker"][1]))
    answer = post_acs(client, encrypted_answer(client, idp, to_cert=other))
    assert answer.status_code == 403
    assert logged_in_account_id(client) is None
