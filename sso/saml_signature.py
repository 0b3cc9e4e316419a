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


def verify(
    root: etree._Element, keys: Sequence[SigningKey], *, require_signed_assertion: bool
) -> SignedResponse:
    """Verify the Response's and the Assertion's signatures; return what they cover.

    A signature that is present must verify, even where the other would be enough.
    """
    if root.tag != f"{SAMLP}Response":
        raise SignatureRefused("malformed")
    assertion = _only_assertion(root)
    _check_unique_ids(root)
    xmlsec.tree.add_ids(root, ["ID"])

    response_signed = _verify_enveloped(root, keys)
    assertion_signed = _verify_enveloped(assertion, keys)
    if require_signed_assertion and not assertion_signed:
        raise SignatureRefused("signature:assertion_unsigned")
    if not (response_signed or assertion_signed):
        raise SignatureRefused("signature:unsigned")
    return SignedResponse(root, assertion, response_signed, assertion_signed)


def _only_assertion(root: etree._Element) -> etree._Element:
    if root.find(f"{SAML}EncryptedAssertion") is not None:
        # TODO: decrypt with the SP key; no customer IdP encrypts today (see issue 4 note).
        raise SignatureRefused("encrypted_assertion")
    assertions = root.findall(f"{SAML}Assertion")
    if len(assertions) != 1:
        raise SignatureRefused("invalid:assertion_count")
    return assertions[0]


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
