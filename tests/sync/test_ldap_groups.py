"""Group memberships read whole: AD's range limit (member;range=0-1499) is followed.

Samba AD (4.x) answers ranged requests (`member;range=1500-*`) as Windows does, but does not
enforce MaxValRange on a plain read of `member`: it returns all values. So the 1,600-member
tests put a thin stand-in for AD's limit in front of the real DC (it turns the first, plain
request into `member;range=0-1499`, as a Windows DC does implicitly); every ranged answer
after that comes from Samba itself. A scripted connection covers the broken answers.
"""

import uuid

import ldap
import ldap.dn
import pytest
from ldap.modlist import addModlist
from sqlalchemy import select

from portal.core.db import db
from portal.directory.models import Person
from sync.models import SyncSource
from sync.sources.ldap import groups
from sync.sources.ldap.connection import DirectoryError, read_whole_attribute
from sync.sources.ldap.groups import group_members
from sync.sources.ldap.operations import add_ldap_source, sync_source
from tests.servers.samba_ad import ADMIN, ADMIN_PASSWORD, BASE, samba_ad_fixture  # noqa: F401

MEMBERS = 1_600
OTHERS = 3  # users in no group


class ScriptedConnection:
    """Answers each base search from a script keyed on the requested attribute."""

    def __init__(self, answers: dict[str, dict]):
        self.answers = answers
        self.requested: list[str] = []

    def search_ext_s(self, dn, scope, search_filter, attributes, timeout=-1):
        [attribute] = attributes
        self.requested.append(attribute)
        return [(dn, self.answers[attribute])]


def test_ranges_are_followed_until_the_range_ends_in_a_star():
    conn = ScriptedConnection(
        {
            "member": {"member;range=0-1": [b"a", b"b"]},
            "member;range=2-*": {"Member;Range=2-3": [b"c", b"d"]},
            "member;range=4-*": {"member;range=4-*": [b"e"]},
        }
    )

    assert read_whole_attribute(conn, "cn=g", "member") == [b"a", b"b", b"c", b"d", b"e"]
    assert conn.requested == ["member", "member;range=2-*", "member;range=4-*"]


def test_an_unranged_answer_is_whole_and_a_missing_attribute_is_empty():
    whole = ScriptedConnection({"member": {"Member": [b"a", b"b"]}})
    assert read_whole_attribute(whole, "x", "member") == [b"a", b"b"]
    assert read_whole_attribute(ScriptedConnection({"member": {}}), "x", "member") == []


@pytest.mark.parametrize(
    "next_answer",
    [{}, {"member;range=5-*": [b"c"]}, {"member;range=2-3": []}],
    ids=["range-missing", "range-skips-values", "empty-bounded-range"],
)
def test_a_broken_range_sequence_fails_instead_of_returning_part(next_answer):
    conn = ScriptedConnection(
        {"member": {"member;range=0-1": [b"a", b"b"]}, "member;range=2-*": next_answer}
    )

    with pytest.raises(DirectoryError, match="cannot be sure it read every value"):
        read_whole_attribute(conn, "cn=g", "member")


@pytest.fixture(scope="session")
def big_group(samba_ad):
    """An OU with 1,600 users in OU Medlemmer, one group holding them all, and OU Andre with
    a few users who are in no group."""
    conn = samba_ad.admin()
    ou = ldap.dn.dn2str([[("ou", f"Kursa grupper {uuid.uuid4().hex[:8]}", 1)]]) + "," + BASE
    inside, outside = f"OU=Medlemmer,{ou}", f"OU=Andre på Ærø,{ou}"
    for dn in (ou, inside, outside):
        conn.add_s(dn, [("objectClass", [b"organizationalUnit"])])
    tag = uuid.uuid4().hex[:6]
    members = [f"CN=m{tag}{n:04d},{inside}" for n in range(MEMBERS)]
    others = [f"CN=x{tag}{n:04d},{outside}" for n in range(OTHERS)]
    # Sent all at once and collected after: no round trip per entry.
    pending = [conn.add_ext(dn, addModlist(_user(dn[3:14]))) for dn in members + others]
    for msgid in pending:
        conn.result3(msgid)
    group = f"CN=Alle {tag} på Ærø,{ou}"
    conn.add_s(
        group,
        addModlist(
            {
                "objectClass": [b"group"],
                "sAMAccountName": [f"g{tag}".encode()],
                "member": [dn.encode() for dn in members],
            }
        ),
    )
    conn.unbind_s()
    return ou, group, members


def _user(username: str) -> dict:
    return {
        "objectClass": [b"user"],
        "sAMAccountName": [username.encode()],
        "givenName": ["Søren".encode()],
        "sn": ["Ærbø".encode()],
    }


class ADRangeLimit:
    """A Windows DC's MaxValRange in front of a real connection: a plain read is ranged."""

    def __init__(self, conn, limit: int = 1500):
        self.conn, self.limit = conn, limit
        self.requested: list[str] = []

    def search_ext_s(self, dn, scope, search_filter, attributes, timeout=-1):
        asked = [a if ";" in a else f"{a};range=0-{self.limit - 1}" for a in attributes]
        self.requested.extend(asked)
        return self.conn.search_ext_s(dn, scope, search_filter, asked, timeout=timeout)


def test_samba_answers_a_ranged_read_of_a_big_group_with_part_of_it(samba_ad, big_group):
    _, group, _ = big_group
    conn = samba_ad.admin()

    [(_, first)] = conn.search_s(group, ldap.SCOPE_BASE, attrlist=["member;range=0-1499"])
    [(_, rest)] = conn.search_s(group, ldap.SCOPE_BASE, attrlist=["member;range=1500-*"])

    assert {k.lower(): len(v) for k, v in first.items()} == {"member;range=0-1499": 1500}
    assert {k.lower(): len(v) for k, v in rest.items()} == {"member;range=1500-*": 100}


def test_read_whole_attribute_follows_the_ranges_of_1600_members_on_ad(samba_ad, big_group):
    _, group, members = big_group
    conn = ADRangeLimit(samba_ad.admin())

    values = read_whole_attribute(conn, group, "member")

    assert conn.requested == ["member;range=0-1499", "member;range=1500-*"]
    assert len(values) == MEMBERS
    assert {v.decode().lower() for v in values} == {dn.lower() for dn in members}


def test_group_members_of_a_stored_ad_source(app, customer, samba_ad, big_group):
    ou, group, members = big_group
    source = add_ldap_source(
        customer,
        f"ad-groups-{uuid.uuid4().hex[:6]}",
        profile="ad",
        settings={
            "uri": samba_ad.uri,
            "bind_dn": ADMIN,
            "user_bases": [ou],
            "org_from": "ou",
            "org_base": ou,
        },
        password=ADMIN_PASSWORD,
        actor="test",
    )
    db.session.commit()

    found = group_members(source, group)

    assert len(found) == MEMBERS
    assert {dn.lower() for dn in found} == {dn.lower() for dn in members}


# -- the "member of" restriction of a source, through the sync ----------------------------------


@pytest.fixture
def ad_range_limit(monkeypatch):
    """Every group read of the sync goes through ADRangeLimit; what it asked is kept."""
    requested: list[str] = []

    def ranged(conn, dn, attribute, **options):
        limited = ADRangeLimit(conn)
        try:
            return read_whole_attribute(limited, dn, attribute, **options)
        finally:
            requested.extend(limited.requested)

    monkeypatch.setattr(groups, "read_whole_attribute", ranged)
    return requested


def test_a_source_restricted_to_a_1600_member_group_syncs_exactly_its_members(
    app, customer, samba_ad, big_group, ad_range_limit
):
    ou, group, members = big_group
    source = add_ldap_source(
        customer,
        f"ad-member-of-{uuid.uuid4().hex[:6]}",
        profile="ad",
        settings={
            "uri": samba_ad.uri,
            "bind_dn": ADMIN,
            "user_bases": [ou],
            "org_from": "ou",
            "org_base": ou,
            "member_of": [group.upper()],  # compared in normal form, not as spelled
        },
        password=ADMIN_PASSWORD,
        actor="test",
    )
    db.session.commit()

    run = sync_source(db.session.get(SyncSource, source.id), actor="test", full=True)

    assert run.status == "applied", run.error
    assert ad_range_limit == ["member;range=0-1499", "member;range=1500-*"]
    assert run.counts["persons"]["created"] == MEMBERS
    synced = {p.username for p in db.session.scalars(select(Person))}
    assert synced == {dn[3:14] for dn in members}
