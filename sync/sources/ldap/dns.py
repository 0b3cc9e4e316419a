"""Distinguished names as the LDAP reader compares them: one key per DN whatever its escapes,
spaces and case, the parent found by a plain split where that is exact, and the nearest OU
above an entry."""

import re

import ldap.dn


def dn_key(dn: str) -> tuple:
    """One key per DN, whatever its escapes, spaces and case: its RDNs, innermost first."""
    return tuple(map(_rdn_key, ldap.dn.str2dn(dn)))


# An RDN without a backslash, a quote or the old ';' separator cannot hide a comma.
_RDN_SPECIALS = re.compile(r'[\\";]')


def parent_dn(dn: str) -> str | None:
    """The DN's text after its first RDN, when a plain split at the first comma finds it exactly.

    None when the first RDN escapes or quotes something (`cn=Doe\\, Jane`, `cn=Doe\\2C Jane`):
    such a DN is parsed in full. The text is the server's spelling, not a normalised DN.
    """
    rdn, comma, parent = dn.partition(",")
    if not comma or _RDN_SPECIALS.search(rdn):
        return None
    return parent


def _rdn_key(rdn) -> tuple:
    if len(rdn) == 1:  # nearly every RDN has one value: no sorting needed
        return ((rdn[0][0].lower(), rdn[0][1].lower()),)
    return tuple(sorted((a.lower(), v.lower()) for a, v, _ in rdn))


def rdn_value(dn: str) -> str:
    return ldap.dn.str2dn(dn)[0][0][1]


def nearest_unit(rdns: tuple, ou_of_dn: dict[tuple, str]) -> str:
    for start in range(1, len(rdns)):
        key = ou_of_dn.get(rdns[start:])
        if key:
            return key
    return ""


def where(dn: str) -> str:
    """The entry's DN names a rejected record in the run report, as a file and row would."""
    return dn[:300]
