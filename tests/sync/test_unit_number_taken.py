"""An OU renamed onto a number another unit has is a named issue in the report, not a failed
run (unit numbers are unique within a customer)."""

import ldap
from sqlalchemy import select

from portal.core.db import db
from portal.directory.models import OrgUnit
from sync.report import run_summary
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
    # the column is the OU attribute that gives the unit its number
    assert taken["column"] == "ou" and taken["value"] == "Revision"
    assert "the unit Revision (Revision) has it already" in taken["message"]
    db.session.expire_all()
    kept = db.session.get(OrgUnit, before.id)
    assert (kept.number, kept.name, kept.is_active) == ("Ledelse", "Ledelse", True)
    assert unit("Revision").source == "files"
    assert ldap.dn.is_dn(taken["file"])


def test_two_ous_swapping_names_are_named_and_the_run_applies(app, customer, slapd):
    source = ldap_source(customer, slapd)
    full_run(source)
    admin = slapd.admin()
    admin.rename_s(f"ou=Ledelse,{ORG_BASE}", "ou=Midlertidig")
    admin.rename_s(f"ou=Salg,{ORG_BASE}", "ou=Ledelse")
    admin.rename_s(f"ou=Midlertidig,{ORG_BASE}", "ou=Salg")

    run = full_run(source)

    messages = [i["message"] for i in run_summary(run)["issues"]]
    assert any("cannot take the number Ledelse" in m for m in messages)
    assert any("cannot take the number Salg" in m for m in messages)
    assert unit("Ledelse").name == "Ledelse" and unit("Salg").name == "Salg"  # left as they were


def test_a_rename_onto_a_number_given_up_in_the_same_run_follows_next_run(app, customer, slapd):
    source = ldap_source(customer, slapd)
    full_run(source)
    ledelse = unit("Ledelse").id
    admin = slapd.admin()
    admin.rename_s(f"ou=Salg,{ORG_BASE}", "ou=Marked")  # Salg gives its number up...
    admin.rename_s(f"ou=Ledelse,{ORG_BASE}", "ou=Salg")  # ...and Ledelse takes it

    first = full_run(source)
    second = full_run(source)

    [waiting] = [i for i in run_summary(first)["issues"] if "yet" in i["message"]]
    assert "has it until it takes its new number Marked" in waiting["message"]
    assert unit("Marked") is not None
    db.session.expire_all()
    assert db.session.get(OrgUnit, ledelse).number == "Salg"
    assert not [i for i in run_summary(second)["issues"] if "cannot take" in i["message"]]


def test_persons_of_a_refused_new_ou_name_the_ou_by_its_dn_not_its_id(
    app, customer, import_csv, slapd
):
    files = import_csv(
        customer,
        [["Ledelse", "Ledelse", "", "department"]],
        [["u900", "Anna", "Berg", "anna@acme.test", "E-1", "Ledelse"]],
    )
    assert files.status == "applied", files.error
    ou = f"ou=Ledelse,{ORG_BASE}"

    run = full_run(ldap_source(customer, slapd))

    issues = run_summary(run)["issues"]
    refused = [i for i in issues if i["file"] != ou and i["value"] == ou]
    assert len(refused) == 160  # the OU's persons, each once
    assert all(i["column"] == "dn" and ldap.dn.is_dn(i["file"]) for i in refused)
    assert refused[0]["message"] == (
        f"The unit {ou} was rejected (see its own issue), so the person is skipped and left "
        "as they are."
    )
    assert len(issues) == 161
