"""Mapped attribute names as the directory spells them; what the read says once about them.

LDAP attribute names are case-insensitive and may have aliases (userid for uid), but
python-ldap hands back each entry's attributes under the name the server sends, which is the
schema's name ("uid" when "UID" was asked for). The reader looks values up by name in a plain
dict, once per attribute per entry, so the names are put into the server's spelling once per
read, from the schema, instead of comparing without case per entry. A mapping of the
profile's own names needs no look-up; when the schema cannot be read the names stay as given.
"""

import logging
import re

import ldap

from sync.records import Issue, PersonRecord
from sync.sources.ldap import profiles

logger = logging.getLogger(__name__)
# An attribute type's description: "( 0.9.2342.19200300.100.1.1 NAME ( 'uid' 'userid' ) ..."
_TYPE = re.compile(r"^\(\s*([0-9.]+)\s+NAME\s+(?:'([^']+)'|\(([^)]*)\))")
PERSON_FIELDS = ("username", "first_name", "last_name", "email", "employee_number")


def as_server_spells(conn, settings: dict) -> dict:
    """`settings` with the mapped attribute names (and the org attribute) spelled as the
    server's schema spells them; the same dict when nothing needs it."""
    own = profiles.effective(settings["profile"], {})
    custom = {
        name
        for field, name in settings["attributes"].items()
        if name != own["attributes"].get(field)
    }
    if settings["unit_number_attribute"] != own["unit_number_attribute"]:
        custom.add(settings["unit_number_attribute"])
    if not custom:
        return settings
    spelled = _schema_names(conn, settings)
    if not spelled:
        return settings

    def spell(name: str) -> str:
        return spelled.get(name.lower(), name)

    return {
        **settings,
        "attributes": {field: spell(name) for field, name in settings["attributes"].items()},
        "unit_number_attribute": spell(settings["unit_number_attribute"]),
    }


def _schema_names(conn, settings: dict) -> dict[str, str]:
    """Every attribute name and OID, lower-cased -> the type's first name in the schema."""
    timeout = float(settings["timeout"])
    try:
        root = conn.search_ext_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["subschemaSubentry"])
        subentry = _first(root, "subschemaSubentry")
        if not subentry:
            return {}
        found = conn.search_ext_s(
            subentry.decode(), ldap.SCOPE_BASE, "(objectClass=*)", ["attributeTypes"],
            timeout=timeout,
        )  # fmt: skip
    except ldap.LDAPError as exc:
        logger.info("LDAP schema not readable (%s); mapped names are used as given", exc)
        return {}
    names: dict[str, str] = {}
    for value in _values(found, "attributeTypes"):
        match = _TYPE.match(value.decode("utf-8", "replace"))
        if match:
            oid, one, several = match.groups()
            spellings = [one] if one else re.findall(r"'([^']+)'", several)
            for alias in [oid, *spellings]:
                names.setdefault(alias.lower(), spellings[0])
    return names


def _values(found, attribute: str) -> list[bytes]:
    for dn, entry in found or ():
        if dn is not None:
            for key, values in entry.items():
                if key.lower() == attribute.lower():
                    return values
    return []


def _first(found, attribute: str) -> bytes:
    values = _values(found, attribute)
    return values[0] if values else b""


def never_returned(
    persons: list[PersonRecord], attributes: dict, unit_attribute: str | None = None
) -> list[Issue]:
    """One issue per mapped person field that no entry came back with; `unit_attribute`, when
    persons' units come from an attribute, counts as one of them (an error).

    Per-person errors ("The username is empty") do not say why; this names the attribute.
    `any` stops at the first person with a value, so a field in use costs next to nothing.
    """
    issues = []
    if unit_attribute and persons and not any(p.unit_ref for p in persons):
        issues.append(
            Issue(
                f"No entry came back with the attribute {unit_attribute!r}, which this source "
                "takes each person's unit from, so no person could be placed in a unit: check "
                "the attribute mapping, that the entries have it, and that the bind account "
                "may read it.",
                column=unit_attribute,
            )
        )
    for field in PERSON_FIELDS:
        if persons and not any(getattr(p, field) for p in persons):
            label = field.replace("_", " ")
            issues.append(
                Issue(
                    f"No entry came back with the attribute {attributes[field]!r}, which is "
                    f"mapped to the {label}: check the attribute mapping, and that the bind "
                    "account may read it.",
                    column=attributes[field],
                    severity="notice" if field in ("email", "employee_number") else "error",
                )
            )
    return issues


def repeated_anchors(persons: list[PersonRecord], repeated: list, attribute: str) -> list[Issue]:
    """One error per entry skipped because an earlier entry had its anchor.

    The same DN again (user bases that overlap) is no error. Runs only when an anchor came
    twice, so the reading loop pays nothing for it otherwise.
    """
    first = {p.anchor: p.file for p in persons}
    return [
        Issue(
            f"The entries {first[anchor]!r} and {dn!r} have the same {attribute} {anchor!r}, "
            "which Kursa keys persons on; the later one was skipped. Give each entry its "
            "own value.",
            file=dn[:300],
            column=attribute,
            value=anchor,
        )
        for anchor, dn in repeated
        if first.get(anchor) != dn[:300]
    ]


def report_names(settings: dict, attributes: dict) -> dict:
    """How a run's report names an entry's values (SourceData's headers, unit_column and
    unit_missing): by the LDAP attributes a file's columns stand for, and where a person's
    unit comes from -- the entry's place below the org base, or an attribute."""
    persons = {name: attributes[name] for name in PERSON_FIELDS}
    if settings["org_from"] == "ou":
        org = {"number": settings["unit_number_attribute"], "name": "ou"}
        unit_column = "dn"  # the unit is the entry's place
        unit_missing = (
            f"The entry lies in no OU below the org base {settings['org_base']!r}, which this "
            "source takes a person's unit from; the person is skipped and left as they are. "
            "Move the entry below the org base, or change the user base."
        )
    else:
        org = {"number": attributes["unit_number"], "name": attributes["unit_name"]}
        unit_column = attributes["unit_number"]
        unit_missing = (
            f"The entry has no {unit_column}, which this source takes a person's unit from; "
            "the person is skipped and left as they are."
        )
    return {
        "headers": {"persons": persons, "org": org},
        "unit_column": unit_column,
        "unit_missing": unit_missing,
    }
