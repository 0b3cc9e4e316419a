"""A unit remembers the source that created it, and a full run of one source inactivates only
its own empty units: another source's (or a file import's) units are not its to judge."""

from sqlalchemy import select

from portal.core.db import db
from portal.directory.models import OrgUnit
from sync.models import SyncSource
from sync.sources.ldap.operations import sync_source
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    sample_ldif_fixture,
    slapd_fixture,
)
from tests.sync.ldap_helpers import openldap_source

EMPTY_OU = f"ou=Tomt,{ORG_BASE}"


def unit(name: str) -> OrgUnit:
    return db.session.scalar(select(OrgUnit).where(OrgUnit.name == name))


def ldap_source(customer, server):
    return openldap_source(customer, server, name="hq")


def full_run(source):
    run = sync_source(db.session.get(SyncSource, source.id), actor="test", full=True)
    assert run.status == "applied", run.error
    return run


def test_units_record_their_source_and_a_full_run_leaves_other_sources_units(
    app, customer, import_csv, slapd
):
    files = import_csv(
        customer,
        [["90", "Arkiv", "", "department"], ["91", "Stab", "", "department"]],
        [["u900", "Anna", "Berg", "anna@acme.test", "E-1", "91"]],
    )
    assert files.status == "applied", files.error
    slapd.admin().add_s(EMPTY_OU, [("objectClass", [b"organizationalUnit"]), ("ou", [b"Tomt"])])
    source = ldap_source(customer, slapd)

    full_run(source)

    assert unit("Arkiv").source == "files" and unit("Arkiv").is_active  # empty, but not hq's
    assert unit("Tomt").source == "ldap:hq" and unit("Tomt").is_active

    slapd.admin().delete_s(EMPTY_OU)
    run = full_run(source)

    assert unit("Tomt").is_active is False  # its own empty unit left the source: inactivated
    assert unit("Arkiv").is_active and unit("Stab").is_active
    assert run.counts["units"]["inactivated"] == 1


def test_units_from_before_sources_were_recorded_are_still_inactivated(
    app, customer, import_csv, slapd
):
    import_csv(customer, [["90", "Arkiv", "", "department"]], [["u900", "A", "B", "", "", "90"]])
    import_csv(customer, [["90", "Arkiv", "", "department"], ["91", "Stab", "", "department"]],
               [["u900", "A", "B", "", "", "91"]])  # fmt: skip
    legacy = unit("Arkiv")
    legacy.source = None  # as the migration leaves units made before it
    db.session.commit()

    run = import_csv(
        customer, [["91", "Stab", "", "department"]], [["u900", "A", "B", "", "", "91"]]
    )

    assert run.counts["units"]["inactivated"] == 1
    assert unit("Arkiv").is_active is False


def test_a_file_import_leaves_an_ldap_sources_units(app, customer, import_csv, slapd):
    slapd.admin().add_s(EMPTY_OU, [("objectClass", [b"organizationalUnit"]), ("ou", [b"Tomt"])])
    full_run(ldap_source(customer, slapd))

    run = import_csv(
        customer, [["91", "Stab", "", "department"]], [["u900", "A", "B", "", "", "91"]]
    )

    assert run.status == "applied", run.error
    assert unit("Tomt").is_active  # the file does not know the LDAP source's units
    assert run.counts["units"]["inactivated"] == 0
