"""What a verified SAML Response says, read from the very elements its signature covered.

sso.saml_signature hands over the Response and its one verified Assertion; this module reads
them into plain values for Kursa's checks (status, destination, issuer, audience, times,
bearer recipient) and for linking (NameID, attributes). It never looks anywhere else in the
document. Values that carry markup where SAML allows only text (a processing instruction in a
NameID, say) are refused rather than read in part; an attribute value with markup is skipped.
"""

from dataclasses import dataclass, field
from functools import cache

from lxml import etree
from saml2.attribute_converter import ac_factory

from sso.saml_signature import SAML, SAMLP, SignatureRefused, SignedResponse

SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
SUBJECT_IDS = {f"{SAML}NameID", f"{SAML}BaseID", f"{SAML}EncryptedID"}


@dataclass(frozen=True)
class Bearer:
    """One bearer SubjectConfirmationData: where, until when and for which request."""

    recipient: str
    not_on_or_after: str
    in_response_to: str


@dataclass
class AssertionFacts:
    """The values Kursa checks and uses; times are the document's strings."""

    response_issuer: str
    destination: str
    in_response_to: str
    status: str
    id: str
    issuer: str
    response_signed: bool = False  # the Response's InResponseTo is covered only then
    name_id: str = ""
    name_id_format: str = ""
    not_before: str = ""
    not_on_or_after: str = ""
    audience_restrictions: list[list[str]] = field(default_factory=list)
    bearers: list[Bearer] = field(default_factory=list)
    attributes: dict[str, list[str]] = field(default_factory=dict)
    authn_statements: int = 0
    session_index: str = ""  # the first AuthnStatement's SessionIndex, kept for single logout


def read(signed: SignedResponse) -> AssertionFacts:
    """Read `signed` into facts (no check beyond well-formed values)."""
    response, assertion = signed.response, signed.assertion
    status = response.find(f"{SAMLP}Status/{SAMLP}StatusCode")
    facts = AssertionFacts(
        response_issuer=_child_text(response, f"{SAML}Issuer"),
        destination=response.get("Destination", ""),
        in_response_to=response.get("InResponseTo", ""),
        status=status.get("Value", "") if status is not None else "",
        id=assertion.get("ID", ""),
        issuer=_child_text(assertion, f"{SAML}Issuer"),
        response_signed=signed.response_signed,
    )
    _read_subject(assertion, facts)
    _read_conditions(assertion, facts)
    facts.attributes = _attributes(assertion)
    statements = assertion.findall(f"{SAML}AuthnStatement")
    facts.authn_statements = len(statements)
    indexes = [s.get("SessionIndex", "").strip() for s in statements if s.get("SessionIndex")]
    facts.session_index = indexes[0] if indexes else ""
    return facts


def _read_subject(assertion: etree._Element, facts: AssertionFacts) -> None:
    """The one subject: a second Subject, or a second identifier in it (NameID, BaseID or
    EncryptedID; the schema allows one), is refused rather than letting order decide who."""
    subjects = assertion.findall(f"{SAML}Subject")
    if len(subjects) > 1:
        raise SignatureRefused("invalid:duplicate_subject")
    if not subjects:
        return
    subject = subjects[0]
    if sum(1 for child in subject if child.tag in SUBJECT_IDS) > 1:
        raise SignatureRefused("invalid:duplicate_subject")
    name_id = subject.find(f"{SAML}NameID")
    if name_id is not None:
        facts.name_id = _text(name_id)
        facts.name_id_format = name_id.get("Format", "")
    for confirmation in subject.iterfind(f"{SAML}SubjectConfirmation"):
        if confirmation.get("Method") == BEARER:
            facts.bearers.append(_bearer(confirmation))


def _bearer(confirmation: etree._Element) -> Bearer:
    """The confirmation's one SubjectConfirmationData (the schema allows no second, and
    checking only the first would make the outcome depend on their order)."""
    found = confirmation.findall(f"{SAML}SubjectConfirmationData")
    if len(found) > 1:
        raise SignatureRefused("invalid:duplicate_confirmation_data")
    if not found:
        return Bearer("", "", "")
    data = found[0]
    return Bearer(
        data.get("Recipient", ""), data.get("NotOnOrAfter", ""), data.get("InResponseTo", "")
    )


def _read_conditions(assertion: etree._Element, facts: AssertionFacts) -> None:
    conditions = assertion.findall(f"{SAML}Conditions")
    if len(conditions) > 1:
        raise SignatureRefused("invalid:conditions")
    if not conditions:
        return
    facts.not_before = conditions[0].get("NotBefore", "")
    facts.not_on_or_after = conditions[0].get("NotOnOrAfter", "")
    for restriction in conditions[0].iterfind(f"{SAML}AudienceRestriction"):
        facts.audience_restrictions.append(
            [_text(a) for a in restriction.iterfind(f"{SAML}Audience")]
        )


def _attributes(assertion: etree._Element) -> dict[str, list[str]]:
    """Attribute values by name; known URI/OID names get pysaml2's friendly names
    (urn:oid:0.9.2342.19200300.100.1.1 -> uid), as pysaml2 gave them before."""
    found: dict[str, list[str]] = {}
    names = _friendly_names()
    for attribute in assertion.iterfind(f"{SAML}AttributeStatement/{SAML}Attribute"):
        name = (attribute.get("Name") or "").strip()
        if not name:
            continue
        known = names.get(attribute.get("NameFormat", ""), {})
        key = known.get(name.lower(), name)
        values = [
            (value.text or "").strip()
            for value in attribute.iterfind(f"{SAML}AttributeValue")
            if len(value) == 0
        ]
        found.setdefault(key, []).extend(values)
    return found


@cache
def _friendly_names() -> dict[str, dict[str, str]]:
    """pysaml2's attribute maps: name format -> lower-case attribute name -> friendly name."""
    names: dict[str, dict[str, str]] = {}
    for converter in ac_factory():
        names.setdefault(converter.name_format, {}).update(converter._fro or {})
    return names


def _child_text(parent: etree._Element, tag: str) -> str:
    found = parent.findall(tag)
    if len(found) > 1:
        raise SignatureRefused("invalid:duplicate_element")
    return _text(found[0]) if found else ""


def _text(element: etree._Element) -> str:
    """The element's whole text; refused when it has children (elements or processing
    instructions), since reading only the part before them would differ from what was signed."""
    if len(element):
        raise SignatureRefused("invalid:markup_in_value")
    return (element.text or "").strip()
