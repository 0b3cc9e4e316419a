"""Where a verified login carries the value the provider's match rule compares.

A provider may name the SAML attribute or OIDC claim itself. When it does not, the usual
names of the rule are read, in order (DEFAULT_ATTRIBUTES; for OIDC the rule's standard
claim): comparing an opaque persistent NameID with an email address matched nobody, silently.
The `nameid` rule is the one that compares the NameID, as a username. The names looked in
are returned too, so a refusal can say which were missing. An attribute whose values name
different persons is refused as ambiguous (LinkRefused), never decided by their order.
"""

from saml2.saml import NAMEID_FORMAT_EMAILADDRESS

from sso import linking, oidc, saml_acs
from sso.models import MatchRule

# SAML attribute names per rule: friendly (LDAP) names, as sso.saml_assertion gives known
# URI names, then the URIs themselves (an IdP may send them in another name format).
DEFAULT_ATTRIBUTES = {
    MatchRule.EMAIL: (
        "mail",
        "email",
        "urn:oid:0.9.2342.19200300.100.1.3",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    ),
    MatchRule.USERNAME: (
        "uid",
        "sAMAccountName",
        "preferred_username",
        "userName",
        "urn:oid:0.9.2342.19200300.100.1.1",
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/windowsaccountname",
    ),
    MatchRule.EMPLOYEE_NUMBER: (
        "employeeNumber",
        "employeeID",
        "employee_number",
        "urn:oid:2.16.840.1.113730.3.1.3",
    ),
}


def saml_attribute_names(provider) -> tuple[str, ...]:
    """The attributes read for the provider's rule: its own, or the rule's usual ones."""
    own = provider.setting("match_attribute")
    return (own,) if own else DEFAULT_ATTRIBUTES.get(provider.setting("match"), ())


def saml_match(verified: saml_acs.VerifiedLogin) -> tuple[str, tuple[str, ...]]:
    """(the value to compare, the attributes looked in); ("", names) when none is present.

    An email rule without an attribute of its own also takes a NameID whose format says it
    is an email address (IdPs set up to send the address as the NameID)."""
    provider = verified.provider
    if provider.setting("match") == MatchRule.NAMEID:
        return verified.name_id, ()
    names = saml_attribute_names(provider)
    for name in names:
        values = _values(verified.attributes, name)
        if values:
            return _one_value(provider, name, values), names
    if (
        provider.setting("match") == MatchRule.EMAIL
        and not provider.setting("match_attribute")
        and verified.name_id_format == NAMEID_FORMAT_EMAILADDRESS
    ):
        return verified.name_id, names
    return "", names


def _values(attributes: dict[str, list[str]], name: str) -> list[str]:
    """The non-empty values of the attribute `name`, whatever the case of its name (so
    "uid" and "UID" are one attribute); sso.saml_assertion already joined the values of an
    attribute repeated in several AttributeStatements."""
    folded = name.casefold()
    return [
        str(value)
        for key, values in attributes.items()
        if key.casefold() == folded
        for value in values
        if str(value).strip()
    ]


def _one_value(provider, name: str, values: list[str]) -> str:
    """The value the attribute gives: repeated the same is fine, but values that name
    different persons under the rule are ambiguous, and the login is refused."""
    if len(values) > 1 and len({linking.match_key(provider, v) for v in values}) > 1:
        linking.refuse_ambiguous(provider, name)
    return values[0]


def oidc_match(verified: oidc.VerifiedLogin) -> tuple[str, tuple[str, ...]]:
    """(the value of the provider's claim, (that claim,)); "" when absent or not text."""
    provider = verified.provider
    claim = provider.setting("match_claim") or oidc.STANDARD_CLAIMS.get(
        provider.setting("match"), ""
    )
    value = verified.claims.get(claim, "")
    return (str(value) if isinstance(value, str | int) else ""), (claim,)
