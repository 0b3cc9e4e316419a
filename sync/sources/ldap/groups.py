"""Group memberships of an LDAP source, read whole: the "member of" restriction and role mapping.

A source may be restricted to the members of one or more groups (`member_of`, group DNs).
Each group's `member` is read whole: a group larger than the server's range limit (AD:
`member;range=0-1499`) is read range by range until it is complete. Members are direct
members; a nested group's own members are not followed (name that group as well).

Member DNs and the DNs of person entries are compared in a normal form (RDNs parsed, case
folded), so `CN=Doe\\, Jane` and `cn=doe\\2c jane` are the same person.
"""

from collections.abc import Iterable, Iterator

import ldap.dn

from sync.models import SyncSource
from sync.sources.ldap import profiles, vault
from sync.sources.ldap.connection import (
    DirectoryError,
    Entry,
    MissingEntry,
    close,
    connect,
    read_whole_attribute,
)

MemberKeys = frozenset[tuple]


def group_members(source: SyncSource, group_dn: str) -> list[str]:
    """The DNs of every member of the group, in the server's order; DirectoryError if not."""
    settings = profiles.effective(source.profile, source.settings)
    conn = connect(settings, vault.decrypt(source.password_encrypted or ""))
    try:
        raw = read_whole_attribute(conn, group_dn, "member", settings=settings)
    finally:
        close(conn)
    return [value.decode("utf-8") for value in raw]


def member_keys(conn, settings: dict) -> MemberKeys | None:
    """The normal forms of the DNs of every member of the source's groups; None: no restriction.

    A group that does not exist fails the read (DirectoryError), and so do groups without a
    single member: a restriction nobody passes would make a full run inactivate everyone.
    """
    groups = settings.get("member_of") or []
    if not groups:
        return None
    keys: set[tuple] = set()
    for group_dn in groups:
        try:
            values = read_whole_attribute(conn, group_dn, "member", settings=settings)
        except MissingEntry:
            raise DirectoryError(
                f"The group {group_dn!r} (the source reads only members of it) does not exist "
                f"on the directory server at {settings['uri']} (or the bind account may not "
                "see it). Check the group DNs of the source. Nothing was changed."
            ) from None
        keys.update(member_key(value.decode("utf-8", "replace")) for value in values)
    if not keys:
        named = ", ".join(repr(g) for g in groups)
        have = "have" if len(groups) > 1 else "has"
        raise DirectoryError(
            f"{named} {have} no members, so no person would be read; Kursa never inactivates "
            "everyone because a source came back empty. Check the group DNs of the source. "
            "Nothing was changed."
        )
    return frozenset(keys)


def member_key(dn: str) -> tuple:
    """One key per DN, whatever its escapes, spaces and case: its RDNs, innermost first.

    The same normal form as the reader's dn_key (kept apart so this module needs no reader).
    A member value that is not a DN cannot match a person: it keys as itself.
    """
    try:
        rdns = ldap.dn.str2dn(dn)
    except ldap.DECODING_ERROR:
        return (("", dn.casefold()),)
    return tuple(tuple(sorted((a.lower(), v.lower()) for a, v, _ in rdn)) for rdn in rdns)


def members_only(entries: Iterable[Entry], keys: MemberKeys) -> Iterator[Entry]:
    """The entries whose DN is one of the members' DNs."""
    for dn, values in entries:
        if member_key(dn) in keys:
            yield dn, values
