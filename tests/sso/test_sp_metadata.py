"""The SP metadata an IdP imports: only the algorithms Kursa accepts, and WantAssertionsSigned
when every enabled SAML provider of the customer requires a signed assertion."""

from defusedxml.ElementTree import fromstring

from portal.core.db import db
from sso import saml_signature
from sso.operations import add_saml_provider, set_provider_enabled
from tests.sso.conftest import SP_ENTITY, SamlIdp

MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
ALG = "{urn:oasis:names:tc:SAML:metadata:algsupport}"


def metadata(client):
    answer = client.get("/sso/acme/saml/metadata")
    assert answer.status_code == 200
    return fromstring(answer.get_data())


def advertised(root, tag: str) -> set[str]:
    return {e.get("Algorithm") for e in root.iter(f"{ALG}{tag}")}


def want_assertions_signed(root) -> str:
    return root.find(f"{MD}SPSSODescriptor").get("WantAssertionsSigned")


def test_only_the_accepted_algorithms_are_advertised(client, make_customer):
    make_customer("acme", "Acme")

    root = metadata(client)

    assert root.get("entityID") == SP_ENTITY
    assert advertised(root, "DigestMethod") == set(saml_signature.DIGEST_METHODS)
    assert advertised(root, "SigningMethod") == set(saml_signature.SIGNATURE_METHODS)
    text = client.get("/sso/acme/saml/metadata").get_data(as_text=True)
    for weak in ("md5", "sha1", "sha224", "ripemd160"):
        assert weak not in text.lower(), weak


def test_want_assertions_signed_follows_the_enabled_providers(
    client, make_customer, idp, key_pairs
):
    acme = make_customer("acme", "Acme")
    assert want_assertions_signed(metadata(client)) == "true"  # no provider yet: the default

    add_saml_provider(acme, "corp", idp.metadata, match="nameid", actor="test")
    lax_idp = SamlIdp(key_pairs["attacker"], entity_id="https://lax.example.test/metadata")
    lax = add_saml_provider(
        acme, "lax", lax_idp.metadata, match="nameid", require_signed_assertion=False,
        actor="test",
    )  # fmt: skip
    db.session.commit()
    assert want_assertions_signed(metadata(client)) == "false"

    set_provider_enabled(lax, False, actor="test")
    db.session.commit()
    assert want_assertions_signed(metadata(client)) == "true"
