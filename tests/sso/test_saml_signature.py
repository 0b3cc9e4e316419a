"""The in-process signature rules (sso.saml_signature) through the ACS.

Each forged response here carries a signature that is cryptographically valid (made with the
IdP's real key by python-xmlsec) or one that was valid before the attacker's edit, so a refusal
comes from the rule under test, not from a broken signature.
"""

import re
from datetime import UTC, datetime, timedelta

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree
from sqlalchemy import func, select

from portal.core.db import db
from sso import saml_signature
from sso.keys import write_self_signed_pair
from sso.models import Identity
from sso.operations import add_saml_provider
from tests.sso.conftest import PERSONS, UNITS, SamlIdp, logged_in_account_id, post_acs, start_login
from tests.sso.test_saml_login import assert_refused

SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
C = xmlsec.constants
RULES = (C.TransformEnveloped, C.TransformExclC14N)


def sign(
    element,
    key_pair,
    *,
    uri: str | None = None,
    transforms=RULES,
    c14n=C.TransformExclC14N,
    method=C.TransformRsaSha256,
    digest=C.TransformSha256,
):
    """Sign `element` (enveloped, after its Issuer) the way an IdP would, with any choice."""
    signature = xmlsec.template.create(element, c14n, method)
    element.find(f"{SAML}Issuer").addnext(signature)
    reference = xmlsec.template.add_reference(
        signature, digest, uri=uri if uri is not None else f"#{element.get('ID')}"
    )
    for transform in transforms:
        xmlsec.template.add_transform(reference, transform)
    x509_data = xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    xmlsec.template.x509_data_add_certificate(x509_data)
    key = xmlsec.Key.from_file(key_pair[0], xmlsec.KeyFormat.PEM)
    key.load_cert_from_file(key_pair[1], xmlsec.KeyFormat.PEM)
    context = xmlsec.SignatureContext()
    context.key = key
    xmlsec.tree.add_ids(element.getroottree().getroot(), ["ID"])
    context.sign(signature)
    return signature


def unsigned(idp, client, request_id, **options):
    """The IdP's answer without signatures, parsed, and its Assertion."""
    xml = idp.respond(client, request_id, sign_response=False, sign_assertion=False, **options)
    root = etree.fromstring(xml.encode())
    return root, root.find(f"{SAML}Assertion")


def text(root) -> str:
    return etree.tostring(root).decode()


def assert_nobody_linked():
    assert db.session.scalar(select(func.count()).select_from(Identity)) == 0


# --- what a well-behaved IdP may send ------------------------------------------------------


def test_assertion_signed_in_process_by_the_idp_key_is_accepted(
    app, client, acme_with_idp, idp, key_pairs
):
    """The test signer itself is sound: without any trick, its signature logs in."""
    acme_with_idp()
    started = start_login(client)
    root, assertion = unsigned(idp, client, started.request_id)
    sign(assertion, key_pairs["idp"])
    sign(root, key_pairs["idp"])

    assert post_acs(client, text(root)).status_code == 302
    assert logged_in_account_id(client) is not None


@pytest.mark.parametrize("signer", ["idp", "next"])
def test_any_signing_certificate_of_the_metadata_verifies(
    app, client, make_customer, import_csv, idp, key_pairs, tmp_path, signer
):
    """Certificate rollover: the metadata lists the current and the next key; both work."""
    next_pair = write_self_signed_pair(tmp_path / "next", "next")
    customer = make_customer("acme", "Acme")
    import_csv(customer, UNITS, PERSONS)
    add_saml_provider(
        customer,
        "corp",
        with_second_signing_cert(idp.metadata, next_pair[1]),
        match="username",
        match_attribute="uid",
        actor="test",
    )
    db.session.commit()
    started = start_login(client)
    responder = idp if signer == "idp" else SamlIdp(next_pair)

    answer = post_acs(client, responder.respond(client, started.request_id))

    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert logged_in_account_id(client) is not None


def test_ecdsa_sha256_signature_from_a_metadata_key_is_accepted(
    app, client, make_customer, import_csv, idp, tmp_path
):
    """The rules allow ECDSA with SHA-2 besides RSA: an IdP with an EC P-256 key logs in."""
    ec_pair = write_ec_pair(tmp_path / "ec")
    customer = make_customer("acme", "Acme")
    import_csv(customer, UNITS, PERSONS)
    add_saml_provider(
        customer,
        "corp",
        with_second_signing_cert(idp.metadata, ec_pair[1]),
        match="username",
        match_attribute="uid",
        actor="test",
    )
    db.session.commit()
    started = start_login(client)
    root, assertion = unsigned(idp, client, started.request_id)
    sign(assertion, ec_pair, method=C.TransformEcdsaSha256)

    answer = post_acs(client, text(root))

    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert logged_in_account_id(client) is not None


# --- references, IDs and positions ---------------------------------------------------------


def test_two_elements_with_the_same_id_are_refused(app, client, acme_with_idp, idp, key_pairs):
    """A forged copy under the signed Assertion's ID must not be what a Reference resolves."""
    acme_with_idp()
    started = start_login(client)
    root, assertion = unsigned(idp, client, started.request_id)
    sign(assertion, key_pairs["idp"])
    forged = etree.fromstring(etree.tostring(assertion))
    forged.remove(forged.find(f"{DS}Signature"))
    extensions = etree.SubElement(root, f"{SAMLP}Extensions")
    extensions.append(forged)

    assert_refused(post_acs(client, text(root)), client, "duplicate_id")
    assert_nobody_linked()


def test_an_xml_id_equal_to_the_assertion_id_is_refused(app, client, acme_with_idp, idp, key_pairs):
    acme_with_idp()
    started = start_login(client)
    root, assertion = unsigned(idp, client, started.request_id)
    sign(assertion, key_pairs["idp"])
    root.find(f"{SAMLP}Status").set("{http://www.w3.org/XML/1998/namespace}id", assertion.get("ID"))

    assert_refused(post_acs(client, text(root)), client, "duplicate_id")


def test_reference_to_another_element_is_refused(app, client, acme_with_idp, idp, key_pairs):
    """A valid IdP signature over some other element does not vouch for the Assertion."""
    acme_with_idp()
    started = start_login(client)
    root, assertion = unsigned(idp, client, started.request_id, username="u2")
    subject = assertion.find(f"{SAML}Subject")
    subject.set("ID", "_only-the-subject")
    sign(assertion, key_pairs["idp"], uri="#_only-the-subject")

    assert_refused(post_acs(client, text(root)), client, "signature:reference")
    assert_nobody_linked()


def test_reference_to_the_whole_document_is_refused(app, client, acme_with_idp, idp, key_pairs):
    """URI="" (the whole document) is valid XMLDSig, but the rule is the element's own ID."""
    acme_with_idp(require_signed_assertion=False)
    started = start_login(client)
    root, _ = unsigned(idp, client, started.request_id)
    sign(root, key_pairs["idp"], uri="")

    assert_refused(post_acs(client, text(root)), client, "signature:reference")


def test_signed_assertion_moved_aside_for_a_forged_one_is_refused(app, client, acme_with_idp, idp):
    """Wrapping: the IdP's signed Assertion hidden in Extensions, an unsigned one for u2 in
    its place (the Response itself unsigned)."""
    acme_with_idp(require_signed_assertion=False)
    started = start_login(client)
    xml = idp.respond(client, started.request_id, username="u1", sign_response=False)
    root = etree.fromstring(xml.encode())
    signed = root.find(f"{SAML}Assertion")
    forged = etree.fromstring(etree.tostring(signed))
    forged.remove(forged.find(f"{DS}Signature"))
    forged.set("ID", "_forged")
    for value in forged.iter(f"{SAML}AttributeValue"):
        value.text = (value.text or "").replace("u1", "u2")
    root.replace(signed, forged)
    etree.SubElement(root, f"{SAMLP}Extensions").append(signed)

    assert_refused(post_acs(client, text(root)), client, "signature:unsigned")
    assert_nobody_linked()


def test_a_present_response_signature_must_verify_even_beside_a_good_assertion_signature(
    app, client, acme_with_idp, idp, key_pairs
):
    acme_with_idp()
    started = start_login(client)
    root, assertion = unsigned(idp, client, started.request_id)
    sign(assertion, key_pairs["idp"])
    sign(root, key_pairs["attacker"])

    assert_refused(post_acs(client, text(root)), client, "signature")


# --- what the signature may say ------------------------------------------------------------


@pytest.mark.parametrize(
    "transforms",
    [
        (C.TransformEnveloped,),
        (C.TransformEnveloped, C.TransformInclC14N),
        (C.TransformEnveloped, C.TransformExclC14NWithComments),
        (C.TransformEnveloped, C.TransformExclC14N, C.TransformExclC14N),
    ],
    ids=["enveloped-only", "inclusive-c14n", "with-comments", "extra"],
)
def test_transforms_other_than_enveloped_then_exc_c14n_are_refused(
    app, client, acme_with_idp, idp, key_pairs, transforms
):
    acme_with_idp()
    started = start_login(client)
    root, assertion = unsigned(idp, client, started.request_id)
    sign(assertion, key_pairs["idp"], transforms=transforms)

    assert_refused(post_acs(client, text(root)), client, "signature:transforms")


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"method": C.TransformRsaSha1}, "signature:algorithm"),
        ({"digest": C.TransformSha1}, "signature:algorithm"),
        ({"c14n": C.TransformExclC14NWithComments}, "signature:c14n"),
        ({"c14n": C.TransformInclC14N}, "signature:c14n"),
    ],
    ids=["rsa-sha1", "digest-sha1", "c14n-with-comments", "inclusive-c14n"],
)
def test_sha1_and_other_canonicalizations_are_refused(
    app, client, acme_with_idp, idp, key_pairs, options, reason
):
    acme_with_idp()
    started = start_login(client)
    root, assertion = unsigned(idp, client, started.request_id)
    sign(assertion, key_pairs["idp"], **options)

    assert_refused(post_acs(client, text(root)), client, reason)


def test_a_certificate_in_key_info_is_not_trusted(app, client, acme_with_idp, idp, key_pairs):
    """Signed by a key whose certificate rides along in KeyInfo, but not in the metadata."""
    acme_with_idp()
    started = start_login(client)
    root, assertion = unsigned(idp, client, started.request_id)
    signature = sign(assertion, key_pairs["attacker"])
    embedded = signature.find(".//{*}X509Certificate")
    assert embedded is not None and embedded.text.strip()

    assert_refused(post_acs(client, text(root)), client, "signature")


def test_assertion_without_authn_statement_is_refused(app, client, acme_with_idp, idp, key_pairs):
    """An assertion that says nothing about a login (an attribute statement, say) logs no one
    in, although the IdP signed it."""
    acme_with_idp()
    started = start_login(client)
    root, assertion = unsigned(idp, client, started.request_id)
    assertion.remove(assertion.find(f"{SAML}AuthnStatement"))
    sign(assertion, key_pairs["idp"])

    assert_refused(post_acs(client, text(root)), client, "no_authn_statement")


# --- reading what was signed ---------------------------------------------------------------


def test_comment_in_name_id_does_not_shorten_it(app, client, acme_with_idp, idp):
    """The classic c14n comment attack: the IdP signs the NameID u1.evil; a comment after u1
    leaves the signature valid. A reader that stops at the comment would log in u1."""
    acme_with_idp(match="nameid")
    started = start_login(client)
    xml = idp.respond(client, started.request_id, subject="u1.evil")
    forged = re.sub(r">u1\.evil<", ">u1<!---->.evil<", xml, count=1)
    assert forged != xml

    assert_refused(post_acs(client, forged), client, "not_found")
    assert_nobody_linked()


def test_comment_in_an_attribute_value_does_not_shorten_it(app, client, acme_with_idp, idp):
    acme_with_idp()  # matched by the uid attribute
    started = start_login(client)
    xml = idp.respond(client, started.request_id, username="u1.evil")
    forged = re.sub(r">u1\.evil<", ">u1<!-- -->.evil<", xml, count=1)
    assert forged != xml

    assert_refused(post_acs(client, forged), client, "not_found")


def test_comment_in_name_id_is_read_with_the_whole_signed_text(app, client, acme_with_idp, idp):
    acme_with_idp()
    started = start_login(client)
    xml = idp.respond(client, started.request_id, username="u1", subject="subject-u1.evil")
    forged = xml.replace(">subject-u1.evil<", ">subject-u1<!---->.evil<", 1)
    assert forged != xml

    assert post_acs(client, forged).status_code == 302
    assert db.session.scalar(select(Identity.subject)) == "subject-u1.evil"


def with_second_signing_cert(metadata: str, cert_file: str) -> str:
    """`metadata` with one more signing KeyDescriptor (the next key of a rollover)."""
    md = "urn:oasis:names:tc:SAML:2.0:metadata"
    root = etree.fromstring(metadata.encode())
    descriptor = root.find(f".//{{{md}}}IDPSSODescriptor")
    pem = open(cert_file).read()
    body = "".join(line for line in pem.splitlines() if "CERTIFICATE" not in line)
    key_descriptor = etree.Element(f"{{{md}}}KeyDescriptor", use="signing")
    cert = etree.SubElement(
        etree.SubElement(etree.SubElement(key_descriptor, f"{DS}KeyInfo"), f"{DS}X509Data"),
        f"{DS}X509Certificate",
    )
    cert.text = body
    descriptor.insert(0, key_descriptor)
    return etree.tostring(root).decode()


def encrypted_to_sp(client, idp, key_pairs, **extra) -> str:
    """A signed Response whose signed Assertion is encrypted to the SP's key, the EncryptedKey
    beside the EncryptedData (pysaml2's default form)."""
    started = start_login(client)
    xml = idp.respond(
        client,
        started.request_id,
        sign_response=True,
        encrypt_assertion=True,
        encrypt_cert_assertion=open(key_pairs["sp"][1]).read(),
        **extra,
    )
    assert "EncryptedAssertion" in xml and "subject-u1" not in xml
    return xml


def test_an_assertion_encrypted_to_the_sp_is_decrypted_and_its_signature_checked(
    app, client, acme_with_idp, idp, key_pairs
):
    acme_with_idp()
    answer = post_acs(client, encrypted_to_sp(client, idp, key_pairs))

    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert logged_in_account_id(client) is not None


def test_an_encrypted_assertion_beside_a_plain_one_is_refused(
    app, client, acme_with_idp, idp, key_pairs
):
    """Two assertions, one hidden in encryption: which one is read must never be a question."""
    acme_with_idp()
    xml = encrypted_to_sp(client, idp, key_pairs)
    plain = etree.fromstring(idp.respond(client, start_login(client).request_id).encode())
    root = etree.fromstring(xml.encode())
    root.find(f"{SAML}EncryptedAssertion").addprevious(plain.find(f"{SAML}Assertion"))
    doctored = etree.tostring(root).decode()
    assert doctored != xml

    assert_refused(post_acs(client, doctored), client, "assertion_count")


def test_comments_in_a_decrypted_assertion_are_dropped_keeping_the_text(key_pairs):
    """Anybody can encrypt to the SP's public key, so the decrypted text gets the parse's
    rule: comments dropped and the text around them kept, so a NameID reads whole."""
    response = saml_signature.parse(
        b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        b'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="r1">'
        b'<saml:Assertion ID="a1"><saml:Subject><saml:NameID>subject-<!--x-->u1'
        b"<!--y--></saml:NameID></saml:Subject></saml:Assertion></samlp:Response>"
    )
    assertion = response[0]
    wrapper = etree.SubElement(response, f"{SAML}EncryptedAssertion")
    template = xmlsec.template.encrypted_data_create(
        wrapper, xmlsec.constants.TransformAes256Cbc, type=xmlsec.constants.TypeEncElement
    )
    xmlsec.template.encrypted_data_ensure_cipher_value(template)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(template)
    encrypted_key = xmlsec.template.add_encrypted_key(key_info, xmlsec.constants.TransformRsaOaep)
    xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_file(key_pairs["sp"][1], xmlsec.KeyFormat.CERT_PEM))
    context = xmlsec.EncryptionContext(manager)
    context.key = xmlsec.Key.generate(
        xmlsec.constants.KeyDataAes, 256, xmlsec.constants.KeyDataTypeSession
    )
    wrapper.append(context.encrypt_xml(template, assertion))
    assert b"subject-" not in etree.tostring(response)

    plain = saml_signature._decrypt(wrapper, saml_signature.load_decryption_key(key_pairs["sp"][0]))

    name_id = plain.find(f".//{SAML}NameID")
    assert name_id.text == "subject-u1" and len(name_id) == 0


def test_an_encrypted_assertion_without_a_decryption_key_is_refused():
    wrapper = etree.Element(f"{SAML}EncryptedAssertion")
    with pytest.raises(saml_signature.SignatureRefused) as refused:
        saml_signature._decrypt(wrapper, None)
    assert refused.value.reason == "encrypted_assertion"


def write_ec_pair(folder) -> tuple[str, str]:
    """An EC P-256 key and self-signed certificate (PEM files) for an IdP that uses ECDSA."""
    folder.mkdir(parents=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec-idp")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / "key.pem", folder / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)
