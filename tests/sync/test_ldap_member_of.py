"""A source restricted to group members ("member of") against a real OpenLDAP slapd.

The groups are groupOfNames whose `member` values spell the DNs otherwise than the server
does (case, hex escapes), as other tools write them: members are matched in normal form.
"""

import ldap
import ldap.dn
from ldap.modlist import addModlist
from sqlalchemy import func, select

from portal.core.db import db
from portal.directory.models import Person
from sync.models import SyncSource
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    SAMPLE_USERS,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SUFFIX,
    ou_dn,
    sample_ldif_fixture,
    slapd_fixture,
    user_dn,
)
from tests.sync.ldap_helpers import openldap_source as make_source
from tests.sync.ldap_helpers import sync

GROUPS = f"ou=Grupper på Ærø,{SUFFIX}"
GROUP = f"cn=Kursusdeltagere,{GROUPS}"
OTHER_GROUP = f"cn=Ledere,{GROUPS}"
# A person whose RDN holds a comma: the group spells it with a hex escape, the server with \,
COMMA_DN = "cn=Hansen\\, Åse," + ou_dn("Salg/Nord")
COMMA_MEMBER = "CN=HANSEN\\2C ÅSE," + ou_dn("Salg/Nord").upper()


def add_groups(server) -> None:
    conn = server.admin()
    conn.add_s(GROUPS, addModlist({"objectClass": [b"organizationalUnit"]}))
    person = {
        "objectClass": [b"inetOrgPerson"],
        "uid": [b"x00001"],
        "cn": ["Hansen, Åse".encode()],
        "givenName": ["Åse".encode()],
        "sn": [b"Hansen"],
    }
    conn.add_s(COMMA_DN, addModlist(person))
    members = [
        user_dn("e00001", "Økonomi/Løn").upper(),  # UID=E00001,OU=LØN,...
        user_dn("e00002", "Økonomi/Løn"),
        COMMA_MEMBER,
    ]
    conn.add_s(GROUP, addModlist(_group("Kursusdeltagere", members)))
    conn.add_s(OTHER_GROUP, addModlist(_group("Ledere", [user_dn("e01101", "Ledelse")])))


def _group(name: str, members: list[str]) -> dict:
    return {
        "objectClass": [b"groupOfNames"],
        "cn": [name.encode()],
        "member": [m.encode() for m in members],
    }


def active_usernames() -> set[str]:
    return set(db.session.scalars(select(Person.username).where(Person.is_active.is_(True))))


def test_only_members_of_the_groups_are_synced(app, customer, slapd):
    add_groups(slapd)
    source = make_source(customer, slapd, member_of=[GROUP, OTHER_GROUP.upper()])

    run = sync(source, full=True)

    assert run.status == "applied", run.error
    assert run.counts["persons"]["created"] == 4
    assert active_usernames() == {"e00001", "e00002", "x00001", "e01101"}


def test_a_delta_run_creates_no_non_member_and_a_full_run_inactivates_a_removed_one(
    app, customer, slapd
):
    add_groups(slapd)
    source = make_source(customer, slapd, member_of=[GROUP])
    sync(source, full=True)
    conn = slapd.admin()
    conn.modify_s(  # a non-member changes: the delta run reads the entry
        user_dn("e00003", "Økonomi/Løn"), [(ldap.MOD_REPLACE, "mail", [b"ny@example.dk"])]
    )
    conn.modify_s(GROUP, [(ldap.MOD_DELETE, "member", [user_dn("e00002", "Økonomi/Løn").encode()])])

    delta = sync(source)
    after_delta = active_usernames()
    full = sync(source, full=True)

    assert delta.status == "applied", delta.error
    assert delta.counts["persons"]["created"] == delta.counts["persons"]["inactivated"] == 0
    assert after_delta == {"e00001", "e00002", "x00001"}
    assert full.status == "applied", full.error
    assert full.counts["persons"]["inactivated"] == 1
    assert full.counts["persons"]["created"] == 0
    assert active_usernames() == {"e00001", "x00001"}


def test_a_missing_group_fails_the_run_and_changes_nothing(app, customer, slapd):
    add_groups(slapd)
    source = make_source(customer, slapd)
    sync(source, full=True)
    missing = f"cn=Findes ikke,{GROUPS}"
    stored = db.session.get(SyncSource, source.id)
    stored.settings = {**stored.settings, "member_of": [GROUP, missing]}
    db.session.commit()

    run = sync(source, full=True)

    assert run.status == "failed"
    assert f"The group {missing!r}" in run.error and "does not exist" in run.error
    assert "Nothing was changed" in run.error
    assert db.session.scalar(select(func.count()).where(Person.is_active.is_(True))) == (
        SAMPLE_USERS + 1
    )
