"""An OU renamed onto a number another unit has is a named issue in the report, not a failed
run (unit numbers are unique within a customer)."""

import ldap
from sqlalchemy import select

from portal.core.db import db
from portal.directory.models import OrgUnit
from sync.runs import run_summary
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    sample_ldif_fixture,
    slapd_fixture,
)
from tests.sync.test_unit_sources import full_run, ldap_source


def unit(number: str) -> OrgUnit:
    return db.session.scalar(select(OrgUnit).where(OrgUnit.number == number))


def test_an_ou_renamed_onto_another_units_number_is_a_named_issue(app, customer, import_csv, slapd):
    files = import_csv(
        customer,
        [["Revision", "Revision", "", "department"]],
        [["u900", "Anna", "Berg", "anna@acme.test", "E-1", "Revision"]],
    )
    assert files.status == "applied", files.error
    source = ldap_source(customer, slapd)
    full_run(source)
    before = unit("Ledelse")
    slapd.admin().rename_s(f"ou=Ledelse,{ORG_BASE}", "ou=Revision")

    run = full_run(source)

    issues = run_summary(run)["issues"]
    [taken] = [i for i in issues if "cannot take the number Revision" in i["message"]]
    assert taken["file"] == f"ou=Revision,{ORG_BASE}"
    assert taken["column"] == "number" and taken["value"] == "Revision"
    assert "the unit Revision (Revision) has it already" in taken["message"]
    db.session.expire_all()
    kept = db.session.get(OrgUnit, before.id)
    assert (kept.number, kept.name, kept.is_active) == ("Ledelse", "Ledelse", True)
    assert unit("Revision").source == "files"
    assert ldap.dn.is_dn(taken["file"])
