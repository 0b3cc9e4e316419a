"""What the Active Directory and OpenLDAP profiles fill in; a source's settings override them."""

import copy

from portal.core.errors import UserError

PROFILES = ("ad", "openldap")
ORG_FROM = ("ou", "attribute")

# Record field -> LDAP attribute. "anchor" is the stable id every record is keyed on.
_ATTRIBUTES = {
    "ad": {
        "anchor": "objectGUID",
        "username": "sAMAccountName",
        "first_name": "givenName",
        "last_name": "sn",
        "email": "mail",
        "employee_number": "employeeNumber",
        "unit_number": "departmentNumber",
        "unit_name": "department",
    },
    "openldap": {
        "anchor": "entryUUID",
        "username": "uid",
        "first_name": "givenName",
        "last_name": "sn",
        "email": "mail",
        "employee_number": "employeeNumber",
        "unit_number": "departmentNumber",
        "unit_name": "ou",
    },
}
_DEFAULTS = {
    "ad": {
        "user_filter": "(&(objectCategory=person)(objectClass=user))",
        "ou_filter": "(objectClass=organizationalUnit)",
        # The highest uSNChanged seen, valid only with the same domain controller (invocationId).
        "change_attribute": "uSNChanged",
    },
    "openldap": {
        "user_filter": "(objectClass=inetOrgPerson)",
        "ou_filter": "(objectClass=organizationalUnit)",
        "change_attribute": "modifyTimestamp",
        # A person matching this filter as well is inactive; empty: nobody is.
        "inactive_filter": "",
    },
}
COMMON = {
    "uri": "",
    "bind_dn": "",
    "user_bases": [],
    "org_from": "ou",
    "org_base": "",
    # OU mode: the attribute of an OU that gives the unit its number; "ou" is the OU's name.
    "unit_number_attribute": "ou",
    "page_size": 500,
    "network_timeout": 10,  # seconds to connect
    "timeout": 60,  # seconds for one page of results
    # A PEM file in [sync] ca_dir, or the CA certificate itself pasted on the source's page.
    "ca_file": "",
    "ca_pem": "",
    "starttls": False,
    "verify_certificates": True,
    "attributes": {},
    # Group DNs: only their (direct) members are read as persons; empty: no restriction.
    "member_of": [],
}
SETTING_KEYS = set(COMMON) | {"user_filter", "ou_filter", "inactive_filter"}


def effective(profile: str, settings: dict) -> dict:
    """The profile's defaults with the source's own settings on top."""
    if profile not in PROFILES:
        raise UserError(f"Unknown profile {profile!r}; use one of {', '.join(PROFILES)}.")
    merged = copy.deepcopy(COMMON)
    merged.update(copy.deepcopy(_DEFAULTS[profile]))
    merged.update({k: v for k, v in settings.items() if k != "attributes"})
    merged["attributes"] = {**_ATTRIBUTES[profile], **settings.get("attributes", {})}
    merged["profile"] = profile
    return merged


def check(profile: str, settings: dict) -> None:
    """Refuse settings that cannot work, with the reason."""
    unknown = set(settings) - SETTING_KEYS
    if unknown:
        raise UserError(f"Unknown LDAP setting {sorted(unknown)[0]!r}.")
    merged = effective(profile, settings)
    if not merged["uri"].startswith(("ldap://", "ldaps://", "ldapi://")):
        raise UserError("The URI must start with ldap://, ldaps:// or ldapi://.")
    if not merged["user_bases"]:
        raise UserError("Give at least one user base DN (--user-base).")
    if merged["org_from"] not in ORG_FROM:
        raise UserError("The org tree comes from 'ou' (the OU structure) or 'attribute'.")
    if merged["org_from"] == "ou" and not merged["org_base"]:
        raise UserError("An org tree from OUs needs the base DN of the OU tree (--org-base).")
    if not 1 <= int(merged["page_size"]) <= 5000:
        raise UserError("The page size must be between 1 and 5000.")
