"""Hostile or odd person data inside the directory, read by a real slapd: missing, repeated,
long, control, non-UTF-8 and formula values and clashing usernames. Each case applies
cleanly, or names the entry (DN, attribute, value) in the run report while the rest applies."""

import ldap
import ldap.dn
import pytest

from sync.models import RunStatus
from sync.report import report_rows
from tests.sync.attack_helpers import people
from tests.sync.attack_helpers import tree as units
from tests.sync.ldap_data_helpers import (  # noqa: F401 - directory_fixture
    OK,
    STAFF,
    applied,
    directory_fixture,
    one_issue,
    person,
    skipped_beside_ok1,
)
from tests.sync.ldap_helpers import openldap_source, sync

# -- missing and odd person values ---------------------------------------------------------


def test_a_person_without_a_uid_is_named_and_the_rest_applies(customer, directory):
    nameless = person(None, "Stab", cn="Nameless One")
    issue = skipped_beside_ok1(customer, directory, nameless)
    assert issue.column == "uid"


def test_a_person_without_a_surname_is_named_and_the_rest_applies(customer, directory):
    # inetOrgPerson needs sn; an extensible object lets the entry exist without one.
    no_sn = person("nosn", "Stab", sn=None, objectClass=["account", "extensibleObject"])
    either = "(|(objectClass=inetOrgPerson)(objectClass=account))"
    issue = skipped_beside_ok1(customer, directory, no_sn, user_filter=either)
    assert (issue.column, issue.message) == ("sn", "The last name is empty.")


def test_a_whitespace_only_given_name_is_an_empty_first_name(customer, directory):
    blank = person("blank", "Stab", givenName="   ")
    issue = skipped_beside_ok1(customer, directory, blank)
    assert issue.column == "givenName"


def test_values_are_stripped_of_surrounding_spaces(customer, directory):
    padded = person("padded", "Stab", givenName="  Åse  ", mail=" padded@example.dk ")
    source = openldap_source(customer, directory(STAFF, padded))

    applied(sync(source, full=True))

    stored = people(customer)["padded"]
    assert (stored.first_name, stored.email) == ("Åse", "padded@example.dk")


def test_several_values_the_first_stored_wins_and_a_second_run_changes_nothing(customer, directory):
    many = person(
        "first",
        "Stab",
        uid=["first", "second"],
        givenName=["Åse", "Bente"],
        sn=["Ås", "Berg"],
        mail=["first@example.dk", "second@example.dk"],
    )
    source = openldap_source(customer, directory(STAFF, many))

    applied(sync(source, full=True))
    again = sync(source, full=True)

    stored = people(customer)
    assert set(stored) == {"first"}
    p = stored["first"]
    assert (p.first_name, p.last_name, p.email) == ("Åse", "Ås", "first@example.dk")
    applied(again)
    assert all(n == 0 for entity in again.counts.values() for n in entity.values())


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("givenName", "Å" * 101),
        ("sn", "s" * 101),
        ("mail", "a" * 250 + "@example.dk"),
        ("employeeNumber", "9" * 65),
        ("uid", "u" * 151),
    ],
)
def test_a_value_longer_than_its_column_is_named_and_the_rest_applies(
    customer, directory, attribute, value
):
    long = person("long", "Stab", **{attribute: value})
    issue = skipped_beside_ok1(customer, directory, long)
    assert issue.column == attribute  # the report names the directory's attribute
    assert issue.value == value[:200]


def test_a_control_character_in_a_name_is_named_and_the_rest_applies(customer, directory):
    bell = person("bell", "Stab", givenName="Å\x07se")
    issue = skipped_beside_ok1(customer, directory, bell)
    assert issue.column == "givenName"


def test_a_value_that_is_not_utf8_is_named_not_stored_mangled(customer, directory):
    # audio is an octet string: slapd keeps any bytes, which a mapping may point at.
    garbled = person("garbled", "Stab", audio=b"\xff\xfe7")
    server = directory(STAFF, OK, garbled)
    source = openldap_source(customer, server, attributes={"employee_number": "audio"})

    run = sync(source, full=True)

    applied(run)
    issue = one_issue(run, garbled[0])
    assert issue.column == "audio"
    assert "UTF-8" in issue.message
    stored = people(customer)
    assert "\ufffd" not in (stored.get("garbled") and stored["garbled"].employee_number or "")
    assert "ok1" in stored


def test_bidi_and_formula_values_are_kept_as_text_and_quoted_in_the_report(customer, directory):
    odd = person("odd", "Stab", givenName='=HYPERLINK("http://x")', sn="Ås\u202eevil")
    source = openldap_source(customer, directory(STAFF, odd))

    run = sync(source, full=True)

    applied(run)
    stored = people(customer)["odd"]
    assert (stored.first_name, stored.last_name) == ('=HYPERLINK("http://x")', "Ås\u202eevil")
    cells = [cell for row in report_rows(run) for cell in row]
    assert not any(cell.startswith("=") for cell in cells)


# -- usernames -----------------------------------------------------------------------------


def test_usernames_differing_only_in_case_name_both_entries(customer, directory):
    upper, lower = person("Jens", "Stab", cn="Jens A"), person("jens", "Stab", cn="Jens B")
    source = openldap_source(customer, directory(STAFF, OK, upper, lower))

    run = sync(source, full=True)

    applied(run)
    for dn in (upper[0], lower[0]):
        issue = one_issue(run, dn)
        assert issue.column == "uid"
        assert "None" not in issue.message
        assert "Jens A" in issue.message and "Jens B" in issue.message  # both entries named
    assert set(people(customer)) == {"ok1"}


def test_a_file_imported_person_is_taken_over_and_later_inactivated_by_the_source(
    customer, directory, import_csv
):
    files = import_csv(
        customer, [["90", "Arkiv", "", "department"]], [["ok1", "A", "B", "", "", "90"]]
    )
    assert files.status == RunStatus.APPLIED.value
    server = directory(STAFF, OK, person("other", "Stab"))
    source = openldap_source(customer, server)

    applied(sync(source, full=True))
    taken = people(customer)["ok1"]
    assert taken.source == "ldap:hq-ldap" and taken.anchor
    assert taken.unit_id == units(customer)["Stab"].id
    server.admin().delete_s(OK[0])
    gone = sync(source, full=True)

    applied(gone)
    assert not people(customer)["ok1"].is_active


def test_the_customers_prefix_is_added_to_directory_usernames(make_customer, directory):
    customer = make_customer(slug="pfx", prefix="pfx-")
    source = openldap_source(customer, directory(STAFF, OK))

    applied(sync(source, full=True))

    assert set(people(customer)) == {"pfx-ok1"}


def test_a_rename_onto_a_username_in_another_case_leaves_both_persons_as_they_are(
    customer, directory
):
    anna, jens = person("anna", "Stab"), person("jens", "Stab")
    server = directory(STAFF, OK, anna, jens)
    source = openldap_source(customer, server)
    applied(sync(source, full=True))

    server.admin().modify_s(anna[0], [(ldap.MOD_REPLACE, "uid", [b"Jens"])])
    run = sync(source, full=True)

    applied(run)
    assert one_issue(run, anna[0]).column == "uid"
    assert one_issue(run, jens[0]).column == "uid"
    stored = people(customer)
    assert stored["anna"].is_active and stored["jens"].is_active
    assert run.counts["persons"]["inactivated"] == 0


def test_a_person_whose_value_stops_being_utf8_is_left_as_they_are(customer, directory):
    server = directory(STAFF, OK, person("garbled", "Stab", audio=b"42"))
    source = openldap_source(customer, server, attributes={"employee_number": "audio"})
    applied(sync(source, full=True))

    dn = person("garbled", "Stab")[0]
    server.admin().modify_s(
        dn, [(ldap.MOD_REPLACE, "audio", [b"\xff"]), (ldap.MOD_REPLACE, "sn", [b"Ny"])]
    )
    run = sync(source, full=True)

    applied(run)
    assert one_issue(run, dn).value == "\\xff"
    stored = people(customer)["garbled"]
    assert (stored.is_active, stored.employee_number, stored.last_name) == (True, "42", "Ås")
    assert run.counts["persons"]["inactivated"] == 0


def test_a_department_value_that_is_not_utf8_is_named_in_attribute_mode(customer, directory):
    garbled = person("garbled", "Stab", audio=b"\xc3(")
    server = directory(STAFF, person("ok1", "Stab", audio=b"10"), garbled)
    settings = {"org_from": "attribute", "attributes": {"unit_number": "audio"}}
    source = openldap_source(customer, server, **settings)

    run = sync(source, full=True)

    applied(run)
    assert one_issue(run, garbled[0]).column == "audio"
    assert set(people(customer)) == {"ok1"} and set(units(customer)) == {"10"}


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("mail", "not-an-address"),
        ("uid", "jens hansen"),
        ("uid", "010190-1234"),  # looks like a CPR number
    ],
)
def test_a_value_kursa_refuses_is_named_and_the_rest_applies(customer, directory, attribute, value):
    odd = person("odd", "Stab", **{attribute: value})
    issue = skipped_beside_ok1(customer, directory, odd)
    assert issue.column == attribute
