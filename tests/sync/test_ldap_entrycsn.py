"""OpenLDAP incremental runs keyed on entryCSN (operational on mdb, no syncprov needed), with
modifyTimestamp as the fallback where a server has no entryCSN."""

import ldap
from sqlalchemy import select

from portal.core.db import db
from portal.directory.models import Person
from sync.models import SyncSource
from sync.sources.ldap import profiles
from sync.sources.ldap.operations import sync_source
from sync.sources.ldap.reader import read_directory
from tests.servers.slapd import (  # noqa: F401 - fixtures
    LOADED_AT,
    LOADED_CSN,
    ORG_BASE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    sample_ldif_fixture,
    slapd_fixture,
    user_dn,
)
from tests.sync.ldap_helpers import openldap_source

AFTER_LOAD = "20260101000000.000000Z#000000#000#000000"  # as if the last run saw the load
FAR_FUTURE = "29991231000000Z"


def make_source(customer, server):
    return openldap_source(customer, server, name="hq")


def read(source, state: dict):
    stored = db.session.get(SyncSource, source.id)
    return read_directory(
        profiles.effective("openldap", stored.settings),
        SERVICE_PASSWORD,
        source_name=stored.name,
        state=state,
        full=False,
    )


def test_a_full_run_keeps_the_highest_entry_csn(app, customer, slapd):
    source = make_source(customer, slapd)

    run = sync_source(source, actor="test")

    assert run.status == "applied", run.error
    state = db.session.get(SyncSource, source.id).state
    assert state["last_csn"] == LOADED_CSN.decode()
    assert state["last_change"] == LOADED_AT.decode()


def test_a_delta_run_reads_only_entries_changed_after_the_entry_csn(app, customer, slapd):
    source = make_source(customer, slapd)
    admin = slapd.admin()
    admin.modify_s(user_dn("e00006", "Økonomi/Løn"), [(ldap.MOD_REPLACE, "mail", [b"a@x.dk"])])
    admin.modify_s(user_dn("e00009", "Økonomi/Løn"), [(ldap.MOD_REPLACE, "sn", [b"Kjaer"])])

    # modifyTimestamp alone would find nothing after FAR_FUTURE: entryCSN decides
    reading = read(source, {"last_change": FAR_FUTURE, "last_csn": AFTER_LOAD})

    assert reading.incremental
    assert sorted(p.username for p in reading.data.persons) == ["e00006", "e00009"]
    assert reading.state["last_csn"] > AFTER_LOAD


def test_without_a_stored_entry_csn_the_delta_uses_modify_timestamp(app, customer, slapd):
    source = make_source(customer, slapd)
    admin = slapd.admin()
    admin.modify_s(user_dn("e00006", "Økonomi/Løn"), [(ldap.MOD_REPLACE, "mail", [b"a@x.dk"])])

    reading = read(source, {"last_change": "20260101000000Z"})  # a state from before entryCSN

    assert [p.username for p in reading.data.persons] == ["e00006"]
    assert "last_csn" in reading.state  # from now on entryCSN is the mark


def test_incremental_runs_end_to_end_apply_only_the_change(app, customer, slapd):
    source = make_source(customer, slapd)
    assert sync_source(source, actor="test", full=True).is_full
    state = dict(db.session.get(SyncSource, source.id).state)
    # as if the full run had been long after the load (LOADED_CSN is in 2025)
    db.session.get(SyncSource, source.id).state = {**state, "last_csn": AFTER_LOAD}
    db.session.commit()
    admin = slapd.admin()
    admin.modify_s(user_dn("e00006", "Økonomi/Løn"), [(ldap.MOD_REPLACE, "mail", [b"b@x.dk"])])

    run = sync_source(db.session.get(SyncSource, source.id), actor="test")

    assert run.status == "applied", run.error
    assert not run.is_full  # the scheduler's full job is still owed (schedule.last_run_at)
    assert run.counts["persons"]["updated"] == 1 and run.counts["persons"]["created"] == 0
    person = db.session.scalar(select(Person).where(Person.username == "e00006"))
    assert person.email == "b@x.dk"
