"""In-process checks of the XML signatures on a SAML Response (python-xmlsec on lxml).

pysaml2 started the xmlsec1 program for each signature and validated each signed element
against the SAML schema (about 100 ms a login); this module does the same proof in-process in
about a millisecond, under rules that make the signed element and the element read the same:

- Parsing: no DTD (a DOCTYPE is refused), no entities, no network, no huge trees. Comments
  are dropped while parsing: the exclusive canonical form without comments is what the IdP
  signed, so the text read afterwards is the whole signed text (the NameID comment attack).
- IDs: every `ID` (and `xml:id`) value occurs once in the document, so a Reference can point
  at one element only.
- Position: a signature counts only as the direct child of the Response or of the one
  Assertion directly inside it, and its one Reference must be `#` + that element's own ID.
  What the caller reads is exactly that Assertion (covered by its own signature or by the
  Response's): an unsigned copy elsewhere is never looked at (signature wrapping).
- SignedInfo: exclusive c14n without comments; transforms exactly enveloped-signature then
  exclusive c14n; RSA or ECDSA with SHA-256/384/512 and a SHA-256/384/512 digest. SHA-1 is
  refused: pysaml2 accepted it, but every IdP Kursa knows signs with SHA-256 by default.
- Keys: only the signing certificates in the IdP's metadata; any of them may verify
  (certificate rollover). A certificate inside the signature's KeyInfo is never trusted; it
  only chooses which metadata key to try first.
"""

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

import xmlsec
from lxml import etree

SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
XENC = "{http://www.w3.org/2001/04/xmlenc#}"
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SIGNATURE_METHODS = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": xmlsec.constants.TransformRsaSha256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": xmlsec.constants.TransformRsaSha384,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": xmlsec.constants.TransformRsaSha512,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": xmlsec.constants.TransformEcdsaSha256,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": xmlsec.constants.TransformEcdsaSha384,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512": xmlsec.constants.TransformEcdsaSha512,
}
DIGEST_METHODS = {
    "http://www.w3.org/2001/04/xmlenc#sha256": xmlsec.constants.TransformSha256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": xmlsec.constants.TransformSha384,
    "http://www.w3.org/2001/04/xmlenc#sha512": xmlsec.constants.TransformSha512,
}
# Symmetric ciphers of EncryptedData -> the key kind xmlsec builds the session key as.
SESSION_KEY_KINDS = {
    "http://www.w3.org/2001/04/xmlenc#aes128-cbc": xmlsec.constants.KeyDataAes,
    "http://www.w3.org/2001/04/xmlenc#aes192-cbc": xmlsec.constants.KeyDataAes,
    "http://www.w3.org/2001/04/xmlenc#aes256-cbc": xmlsec.constants.KeyDataAes,
    "http://www.w3.org/2009/xmlenc11#aes128-gcm": xmlsec.constants.KeyDataAes,
    "http://www.w3.org/2009/xmlenc11#aes192-gcm": xmlsec.constants.KeyDataAes,
    "http://www.w3.org/2009/xmlenc11#aes256-gcm": xmlsec.constants.KeyDataAes,
    "http://www.w3.org/2001/04/xmlenc#tripledes-cbc": xmlsec.constants.KeyDataDes,
}


class SignatureRefused(Exception):
    """The document is not one Kursa can trust; `reason` is a short code for logs and audit."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SigningKey:
    """One signing certificate of the IdP's metadata, as DER and as a loaded key."""

    der: bytes
    key: xmlsec.Key


@dataclass(frozen=True)
class SignedResponse:
    """A Response whose one Assertion is covered by a verified signature.

    `assertion` is the element to read. The Response's own attributes (Destination,
    InResponseTo, Status) are covered only when `response_signed` is true.
    """

    response: etree._Element
    assertion: etree._Element
    response_signed: bool
    assertion_signed: bool


def parse(document: bytes) -> etree._Element:
    """The root of `document` parsed under the rules above; refuses DTDs and broken XML."""
    try:
        root = etree.fromstring(document, _parser())
    except etree.XMLSyntaxError:
        raise SignatureRefused("malformed") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise SignatureRefused("dtd")
    return root


def _parser() -> etree.XMLParser:
    """A new parser each time (cheap): a parser shared across request threads is not."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
    )


def metadata_keys(metadata_xml: str, entity_id: str) -> list[SigningKey]:
    """The signing certificates `entity_id`'s IdP descriptor names (use signing or no use)."""
    root = parse(metadata_xml.encode())
    keys = []
    for descriptor in root.iter(f"{MD}EntityDescriptor"):
        if descriptor.get("entityID") != entity_id:
            continue
        for key_descriptor in descriptor.iterfind(f"{MD}IDPSSODescriptor/{MD}KeyDescriptor"):
            if key_descriptor.get("use", "signing") != "signing":
                continue
            for cert in key_descriptor.iterfind(f".//{DS}X509Certificate"):
                der = _base64(cert.text or "")
                keys.append(SigningKey(der, xmlsec.Key.from_memory(der, xmlsec.KeyFormat.CERT_DER)))
    if not keys:
        raise SignatureRefused("no_signing_key")
    return keys


def signing_key(der: bytes) -> SigningKey:
    """A SigningKey from one certificate (DER)."""
    try:
        return SigningKey(der, xmlsec.Key.from_memory(der, xmlsec.KeyFormat.CERT_DER))
    except xmlsec.Error:
        raise SignatureRefused("malformed") from None


def verify_root(document: bytes, keys: Sequence[SigningKey]) -> etree._Element:
    """Parse `document` under this module's rules; return its root once the root's own
    enveloped signature (Reference = '#' + the root's ID) verifies with one of `keys`.

    For messages and documents signed as a whole: POSTed logout messages and signed metadata.
    A signed element nested anywhere below cannot vouch for the document (signature wrapping):
    only the root's own Signature child counts, and every element read afterwards lies under
    the root it covers.
    """
    root = parse(document)
    _check_unique_ids(root)
    xmlsec.tree.add_ids(root, ["ID"])
    if not _verify_enveloped(root, keys):
        raise SignatureRefused("signature:unsigned")
    return root


def verify(
    root: etree._Element,
    keys: Sequence[SigningKey],
    *,
    require_signed_assertion: bool,
    decryption_key: xmlsec.Key | None = None,
) -> SignedResponse:
    """Verify the Response's and the Assertion's signatures; return what they cover.

    A signature that is present must verify, even where the other would be enough. An
    EncryptedAssertion is decrypted with `decryption_key` after the Response's signature (which
    covers the encrypted form) and before the Assertion's own (which covers the plain form).
    """
    if root.tag != f"{SAMLP}Response":
        raise SignatureRefused("malformed")
    _check_assertion_count(root)
    _check_unique_ids(root)
    xmlsec.tree.add_ids(root, ["ID"])

    response_signed = _verify_enveloped(root, keys)
    encrypted = root.find(f"{SAML}EncryptedAssertion")
    if encrypted is not None:
        assertion = _decrypt(encrypted, decryption_key)
        _check_unique_ids(root)
        xmlsec.tree.add_ids(root, ["ID"])
    else:
        assertion = root.find(f"{SAML}Assertion")
    assertion_signed = _verify_enveloped(assertion, keys)
    if require_signed_assertion and not assertion_signed:
        raise SignatureRefused("signature:assertion_unsigned")
    if not (response_signed or assertion_signed):
        raise SignatureRefused("signature:unsigned")
    return SignedResponse(root, assertion, response_signed, assertion_signed)


def _check_assertion_count(root: etree._Element) -> None:
    """Exactly one Assertion or EncryptedAssertion directly inside the Response."""
    found = root.findall(f"{SAML}Assertion") + root.findall(f"{SAML}EncryptedAssertion")
    if len(found) != 1:
        raise SignatureRefused("invalid:assertion_count")


def load_decryption_key(key_file: str) -> xmlsec.Key:
    """The SP's private key (PEM) that IdPs encrypt assertions to."""
    return xmlsec.Key.from_file(key_file, xmlsec.KeyFormat.PEM)


def _decrypt(encrypted: etree._Element, key: xmlsec.Key | None) -> etree._Element:
    """Decrypt the EncryptedData of `encrypted` in place; return the plain Assertion.

    The session key is carried as an EncryptedKey inside the EncryptedData's KeyInfo or beside
    it (both forms are common). Anybody can encrypt to the SP's public key, so the plain text
    is attacker-controlled until its signature is checked: it gets the same rule as a parsed
    document (comments dropped), and a fragment cannot carry a DTD.
    """
    if key is None:
        raise SignatureRefused("encrypted_assertion")
    data = encrypted.findall(f"{XENC}EncryptedData")
    if len(data) != 1:
        raise SignatureRefused("malformed")
    context = xmlsec.EncryptionContext()
    beside = encrypted.find(f"{XENC}EncryptedKey")
    try:
        if data[0].find(f"{DS}KeyInfo/{XENC}EncryptedKey") is None and beside is not None:
            context.key = _session_key(beside, data[0], key)
        else:
            manager = xmlsec.KeysManager()
            manager.add_key(key)
            context = xmlsec.EncryptionContext(manager)
        plain = context.decrypt(data[0])
    except xmlsec.Error:
        raise SignatureRefused("decryption") from None
    if not isinstance(plain, etree._Element) or plain.tag != f"{SAML}Assertion":
        raise SignatureRefused("invalid:assertion")
    _drop_comments(plain)
    return plain


def _drop_comments(element: etree._Element) -> None:
    """Remove comments, keeping the text after each, as the parse of a whole document does.

    The plain Assertion stays where xmlsec put it, inside the EncryptedAssertion: moving or
    re-serialising it could drop namespace declarations its signature's InclusiveNamespaces
    list covers.
    """
    for comment in list(element.iter(etree.Comment)):
        parent, tail = comment.getparent(), comment.tail or ""
        before = comment.getprevious()
        if before is not None:
            before.tail = (before.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
        parent.remove(comment)


def _session_key(encrypted_key: etree._Element, data: etree._Element, key: xmlsec.Key):
    """The symmetric key of `data`, from an EncryptedKey that sits beside it."""
    method = data.find(f"{XENC}EncryptionMethod")
    kind = SESSION_KEY_KINDS.get(method.get("Algorithm") if method is not None else None)
    if kind is None:
        raise SignatureRefused("decryption")
    context = xmlsec.EncryptionContext()
    context.key = key
    return xmlsec.Key.from_binary_data(kind, context.decrypt(encrypted_key))


def _check_unique_ids(root: etree._Element) -> None:
    seen = set()
    for element in root.iter(etree.Element):
        for name in ("ID", XML_ID):
            value = element.get(name)
            if value is None:
                continue
            if value in seen or not value:
                raise SignatureRefused("duplicate_id")
            seen.add(value)


def _verify_enveloped(element: etree._Element, keys: Sequence[SigningKey]) -> bool:
    """False when `element` carries no signature; True when one verifies; else refuse."""
    signatures = element.findall(f"{DS}Signature")
    if not signatures:
        return False
    if len(signatures) > 1:
        raise SignatureRefused("signature:several")
    signature = signatures[0]
    method = _check_signed_info(signature, element)
    for candidate in _ordered(keys, signature):
        context = _context(candidate.key, method)
        try:
            context.verify(signature)
        except xmlsec.Error:
            continue
        return True
    raise SignatureRefused("signature")


def _check_signed_info(signature: etree._Element, element: etree._Element) -> int:
    """Hold SignedInfo to the rules; return the xmlsec transform of its signature method."""
    signed_info = _one(signature, f"{DS}SignedInfo")
    if _one(signed_info, f"{DS}CanonicalizationMethod").get("Algorithm") != EXC_C14N:
        raise SignatureRefused("signature:c14n")
    method = SIGNATURE_METHODS.get(_one(signed_info, f"{DS}SignatureMethod").get("Algorithm"))
    if method is None:
        raise SignatureRefused("signature:algorithm")
    reference = _one(signed_info, f"{DS}Reference")
    element_id = element.get("ID")
    if not element_id or reference.get("URI") != f"#{element_id}":
        raise SignatureRefused("signature:reference")
    transforms = [t.get("Algorithm") for t in reference.iterfind(f"{DS}Transforms/{DS}Transform")]
    if len(reference.findall(f"{DS}Transforms")) != 1 or transforms != [ENVELOPED, EXC_C14N]:
        raise SignatureRefused("signature:transforms")
    if _one(reference, f"{DS}DigestMethod").get("Algorithm") not in DIGEST_METHODS:
        raise SignatureRefused("signature:algorithm")
    return method


def _one(parent: etree._Element, tag: str) -> etree._Element:
    found = parent.findall(tag)
    if len(found) != 1:
        raise SignatureRefused("signature:structure")
    return found[0]


def _ordered(keys: Sequence[SigningKey], signature: etree._Element) -> list[SigningKey]:
    """The metadata keys, the one whose certificate KeyInfo repeats first (a hint only)."""
    embedded = signature.find(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate")
    if embedded is None or len(keys) < 2:
        return list(keys)
    try:
        der = _base64(embedded.text or "")
    except SignatureRefused:
        return list(keys)
    return sorted(keys, key=lambda k: k.der != der)


def _context(key: xmlsec.Key, method: int) -> xmlsec.SignatureContext:
    """A context that runs only the transforms the rules allow, with the given key only."""
    context = xmlsec.SignatureContext()
    context.key = key
    for transform in (xmlsec.constants.TransformExclC14N, method):
        context.enable_signature_transform(transform)
    for transform in (
        xmlsec.constants.TransformEnveloped,
        xmlsec.constants.TransformExclC14N,
        *DIGEST_METHODS.values(),
    ):
        context.enable_reference_transform(transform)
    return context


def _base64(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureRefused("malformed") from None
