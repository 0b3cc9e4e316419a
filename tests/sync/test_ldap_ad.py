"""The LDAP source against a real Samba Active Directory DC: objectGUID keys, disabled
accounts (userAccountControl 0x2), an OU rename, uSNChanged deltas, referrals skipped.

One DC runs for the session; every test builds an OU tree of its own, so tests are independent.
"""

import itertools
import uuid

import ldap
import ldap.dn
from sqlalchemy import select

from portal.core.db import db
from portal.directory.models import OrgUnit, Person
from sync.models import SyncSource
from sync.sources.ldap import profiles
from sync.sources.ldap.operations import add_ldap_source, sync_source
from sync.sources.ldap.reader import read_directory
from tests.servers.samba_ad import ADMIN, ADMIN_PASSWORD, BASE, samba_ad_fixture  # noqa: F401

ENABLED, DISABLED = b"544", b"546"  # NORMAL_ACCOUNT | PASSWD_NOTREQD, and ACCOUNTDISABLE too
_trees = itertools.count(1)


class Tree:
    """OU 'Kursa N på Ærø' with OUs Økonomi and Salg, and three users (one disabled)."""

    def __init__(self, server):
        self.server = server
        self.n = next(_trees) + uuid.uuid4().int % 10_000 * 100
        self.base = self._dn("ou", f"Kursa {self.n} på Ærø", BASE)
        self.ou = {name: self._dn("ou", name, self.base) for name in ("Økonomi", "Salg")}
        conn = server.admin()
        for dn in (self.base, *self.ou.values()):
            conn.add_s(dn, [("objectClass", [b"organizationalUnit"])])
        self.users = {
            "a1": ("Økonomi", ENABLED),
            "a2": ("Salg", DISABLED),
            "a3": ("Salg", ENABLED),
        }
        for key, (ou, flags) in self.users.items():
            conn.add_s(self.user_dn(key, ou), self._user(key, flags))

    def username(self, key: str) -> str:
        return f"k{self.n}{key}"

    def user_dn(self, key: str, ou: str) -> str:
        return self._dn("cn", self.username(key), self.ou[ou])

    def _user(self, key: str, flags: bytes):
        return [
            ("objectClass", [b"user"]),
            ("sAMAccountName", [self.username(key).encode()]),
            ("givenName", ["Søren".encode()]),
            ("sn", ["Ærbø".encode()]),
            ("mail", [f"{self.username(key)}@example.test".encode()]),
            ("description", [f"kursa-{self.n}".encode()]),
            ("userAccountControl", [flags]),
        ]

    @staticmethod
    def _dn(attribute: str, value: str, parent: str) -> str:
        return ldap.dn.dn2str([[(attribute, value, 1)]]) + "," + parent

    def guid(self, dn: str) -> str:
        [(_, values)] = [
            e for e in self.server.admin().search_s(dn, ldap.SCOPE_BASE, attrlist=["objectGUID"])
        ]
        return str(uuid.UUID(bytes_le=values["objectGUID"][0]))


def settings(server, tree: Tree, **extra) -> dict:
    return {
        "uri": server.uri,
        "bind_dn": ADMIN,
        "user_bases": [tree.base],
        "org_from": "ou",
        "org_base": tree.base,
        **extra,
    }


def make_source(customer, server, tree):
    source = add_ldap_source(
        customer,
        f"ad-{tree.n}",
        profile="ad",
        settings=settings(server, tree),
        password=ADMIN_PASSWORD,
        actor="test",
    )
    db.session.commit()
    return source


def sync(source, **options):
    return sync_source(db.session.get(SyncSource, source.id), actor="test", **options)


def person(username: str) -> Person:
    return db.session.scalar(select(Person).where(Person.username == username))


def test_ad_sync_keys_on_object_guid_and_disabled_accounts_are_inactive(app, customer, samba_ad):
    tree = Tree(samba_ad)
    source = make_source(customer, samba_ad, tree)

    run = sync(source)

    assert run.status == "applied", run.error
    assert run.counts["units"]["created"] == 2
    assert run.counts["persons"]["created"] == 3
    first = person(tree.username("a1"))
    assert first.anchor == tree.guid(tree.user_dn("a1", "Økonomi"))
    assert (first.first_name, first.last_name, first.unit.name) == ("Søren", "Ærbø", "Økonomi")
    assert person(tree.username("a2")).is_active is False
    assert person(tree.username("a3")).is_active is True
    salg = db.session.scalar(select(OrgUnit).where(OrgUnit.name == "Salg"))
    assert salg.anchor == tree.guid(tree.ou["Salg"])
    state = db.session.get(SyncSource, source.id).state
    assert int(state["last_change"]) > 0 and uuid.UUID(state["invocation_id"])


def test_ad_disabling_an_account_inactivates_the_person(app, customer, samba_ad):
    tree = Tree(samba_ad)
    source = make_source(customer, samba_ad, tree)
    sync(source)

    samba_ad.admin().modify_s(
        tree.user_dn("a3", "Salg"), [(ldap.MOD_REPLACE, "userAccountControl", [DISABLED])]
    )
    run = sync(source)

    assert run.status == "applied", run.error
    assert run.counts["persons"]["inactivated"] == 1
    assert person(tree.username("a3")).is_active is False


def test_ad_renamed_ou_is_an_update_and_its_persons_stay(app, customer, samba_ad):
    tree = Tree(samba_ad)
    source = make_source(customer, samba_ad, tree)
    sync(source)
    salg_id = db.session.scalar(select(OrgUnit.id).where(OrgUnit.name == "Salg"))

    samba_ad.admin().rename_s(tree.ou["Salg"], "OU=Salg og Søgning")
    run = sync(source)

    assert run.status == "applied", run.error
    assert run.counts["units"] == {"created": 0, "updated": 1, "moved": 0, "inactivated": 0}
    assert run.counts["persons"]["moved"] == 0
    renamed = db.session.get(OrgUnit, salg_id)
    assert renamed.name == "Salg og Søgning"
    assert person(tree.username("a3")).unit_id == salg_id


def test_ad_incremental_read_follows_usn_changed_on_the_same_dc(samba_ad):
    tree = Tree(samba_ad)
    effective = profiles.effective("ad", settings(samba_ad, tree))
    full = read_directory(effective, ADMIN_PASSWORD, source_name="ad", state={}, full=True)
    samba_ad.admin().modify_s(
        tree.user_dn("a1", "Økonomi"), [(ldap.MOD_REPLACE, "givenName", ["Åse".encode()])]
    )

    delta = read_directory(
        effective, ADMIN_PASSWORD, source_name="ad", state=full.state, full=False
    )
    other_dc = {**full.state, "invocation_id": str(uuid.uuid4())}
    restarted = read_directory(
        effective, ADMIN_PASSWORD, source_name="ad", state=other_dc, full=False
    )

    assert not full.data.fatal and len(full.data.persons) == 3
    assert delta.incremental
    assert [(p.username, p.first_name) for p in delta.data.persons] == [
        (tree.username("a1"), "Åse")
    ]
    assert int(delta.state["last_change"]) > int(full.state["last_change"])
    assert not restarted.incremental and len(restarted.data.persons) == 3


def test_ad_referral_entries_below_the_domain_root_are_skipped(samba_ad):
    tree = Tree(samba_ad)
    effective = profiles.effective(
        "ad",
        settings(
            samba_ad,
            tree,
            user_bases=[BASE],
            user_filter=f"(&(objectClass=user)(description=kursa-{tree.n}))",
            org_from="attribute",
            org_base="",
        ),
    )

    reading = read_directory(effective, ADMIN_PASSWORD, source_name="ad", full=True)

    assert not reading.data.fatal, reading.data.issues
    assert sorted(p.username for p in reading.data.persons) == [
        tree.username(k) for k in ("a1", "a2", "a3")
    ]
