"""Moves in a real slapd: an OU moved to another parent (modrdn with newSuperior) is a move of
the unit with its branch, never a delete plus a create; a person moved out of the user base
is inactivated by a full run and left alone by an incremental one."""

import ldap
from sqlalchemy import func, select

from portal.core.db import db
from portal.directory.models import OrgUnit, Person
from sync.models import SyncChange
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

OUTSIDE = f"ou=Fratrådte,{SUFFIX}"  # beside the org base: outside the user base


def unit(name: str) -> OrgUnit:
    return db.session.scalar(select(OrgUnit).where(OrgUnit.name == name))


def person(username: str) -> Person:
    return db.session.scalar(select(Person).where(Person.username == username))


def persons_of(unit_id: int) -> set[int]:
    return set(db.session.scalars(select(Person.id).where(Person.unit_id == unit_id)))


def test_an_ou_moved_to_another_parent_is_a_move_of_its_branch(app, customer, slapd):
    source = make_source(customer, slapd)
    sync(source, full=True)
    workshop, smorum = unit("Værksted"), unit("Smørum")
    ids = {"Værksted": workshop.id, "Smørum": smorum.id}
    staff = {name: persons_of(unit_id) for name, unit_id in ids.items()}
    units_before = db.session.scalar(select(func.count(OrgUnit.id)))

    slapd.admin().rename_s(ou_dn("Drift og IT/Værksted"), "ou=Værksted", newsuperior=ou_dn("Salg"))
    run = sync(source, full=True)

    assert run.status == "applied", run.error
    assert run.counts["units"] == {"created": 0, "updated": 0, "moved": 1, "inactivated": 0}
    assert all(n == 0 for n in run.counts["persons"].values())
    changes = db.session.execute(
        select(SyncChange.entity, SyncChange.action, SyncChange.entity_id).where(
            SyncChange.run_id == run.id
        )
    ).all()
    assert changes == [("unit", "moved", ids["Værksted"])]
    db.session.expire_all()
    moved, below = unit("Værksted"), unit("Smørum")
    assert (moved.id, moved.parent.name) == (ids["Værksted"], "Salg")
    assert (below.id, below.parent_id) == (ids["Smørum"], ids["Værksted"])
    assert below.path.startswith(moved.path) and moved.path.startswith(unit("Salg").path)
    assert {name: persons_of(unit_id) for name, unit_id in ids.items()} == staff
    assert db.session.scalar(select(func.count(OrgUnit.id))) == units_before


def test_a_user_moved_out_of_the_user_base_is_inactivated_by_a_full_run_only(app, customer, slapd):
    source = make_source(customer, slapd)
    sync(source, full=True)
    conn = slapd.admin()
    conn.add_s(OUTSIDE, [("objectClass", [b"organizationalUnit"]), ("ou", ["Fratrådte".encode()])])
    conn.rename_s(user_dn("e00007", "Økonomi/Løn"), "uid=e00007", newsuperior=OUTSIDE)
    # a change to the moved entry, so an incremental run would see it if it looked outside
    conn.modify_s(f"uid=e00007,{OUTSIDE}", [(ldap.MOD_REPLACE, "mail", [b"gone@example.dk"])])

    delta = sync(source)
    after_delta = person("e00007")
    active_after_delta, email_after_delta = after_delta.is_active, after_delta.email
    full = sync(source, full=True)

    assert delta.status == "applied", delta.error
    assert all(n == 0 for n in delta.counts["persons"].values())
    assert active_after_delta is True and email_after_delta == "e00007@example.dk"
    assert full.status == "applied", full.error
    assert full.counts["persons"] == {
        "created": 0,
        "updated": 0,
        "moved": 0,
        "inactivated": 1,
        "reactivated": 0,
    }
    db.session.expire_all()
    assert person("e00007").is_active is False
    assert db.session.scalar(select(func.count()).where(Person.is_active.is_(True))) == (
        SAMPLE_USERS - 1
    )
