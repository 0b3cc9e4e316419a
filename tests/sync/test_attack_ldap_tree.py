"""Hostile or odd tree data inside the directory, read by a real slapd: OU names with DN
specials, repeated, long and deep, persons outside the org base, entries that change what
they are, units from an attribute. Each case applies cleanly, names the entry in the run
report while the rest applies, or fails the whole run plainly and changes nothing."""

from sync.models import RunStatus
from tests.servers.slapd import ORG_BASE, SUFFIX
from tests.sync.attack_helpers import issues_of, people
from tests.sync.attack_helpers import tree as units
from tests.sync.ldap_data_helpers import (  # noqa: F401 - directory_fixture
    OK,
    STAFF,
    applied,
    directory_fixture,
    errors,
    one_issue,
    ou,
    ou_dn,
    person,
    point,
    same_dn,
)
from tests.sync.ldap_helpers import openldap_source, sync

# -- OU names ------------------------------------------------------------------------------

ODD_OUS = (
    "Drift, Nord",
    "Salg+Service",
    'Citat "A"',
    "Back\\slash",
    "#Hash",
    " Spaces ",
    "Æblerød",
)


def test_ou_names_with_dn_specials_become_units_of_that_name(customer, directory):
    entries = [ou(name) for name in ODD_OUS]
    entries += [person(f"p{n}", name) for n, name in enumerate(ODD_OUS)]
    source = openldap_source(customer, directory(*entries))

    run = sync(source, full=True)

    applied(run)
    assert not errors(run)
    by_number = units(customer)
    stored = people(customer)
    for n, name in enumerate(ODD_OUS):
        assert by_number[name].name == name
        assert stored[f"p{n}"].unit_id == by_number[name].id


def test_an_ou_name_used_at_several_depths_gets_its_path(customer, directory):
    entries = [ou("Salg"), ou("Drift"), ou("Salg/IT"), ou("Drift/IT"), ou("Drift/IT/IT")]
    entries += [person("a", "Salg/IT"), person("b", "Drift/IT"), person("c", "Drift/IT/IT")]
    source = openldap_source(customer, directory(*entries))

    run = sync(source, full=True)

    applied(run)
    by_number = units(customer)
    stored = people(customer)
    assert stored["a"].unit_id == by_number["Salg/IT"].id
    assert stored["b"].unit_id == by_number["Drift/IT"].id
    assert stored["c"].unit_id == by_number["Drift/IT/IT"].id


def test_a_path_that_equals_another_ous_name_is_named_not_a_failed_run(customer, directory):
    # "Salg/IT" is both the path of IT below Salg (IT is used twice) and an OU's own name.
    slashed = (
        f"ou=Salg/IT,{ORG_BASE}",
        {"objectClass": [b"organizationalUnit"], "ou": [b"Salg/IT"]},
    )
    entries = [ou("Salg"), ou("Salg/IT"), ou("Drift"), ou("Drift/IT"), slashed]
    entries += [person("a", "Salg/IT"), person("b", "Drift/IT"), person("ok1", "Salg")]
    source = openldap_source(customer, directory(*entries))

    run = sync(source, full=True)

    applied(run)
    assert [i for i in errors(run) if i.value == "Salg/IT"]
    stored = people(customer)
    assert {"b", "ok1"} <= set(stored)


def test_two_long_ou_names_alike_in_their_first_64_characters_are_named(customer, directory):
    alike = ["Afdeling " + "x" * 60 + " Nord", "Afdeling " + "x" * 60 + " Syd"]
    entries = [ou(alike[0]), ou(alike[1]), STAFF, OK]
    entries += [person("n", alike[0]), person("s", alike[1])]
    source = openldap_source(customer, directory(*entries))

    run = sync(source, full=True)

    applied(run)
    assert "unexpected error" not in (run.error or "")
    named = [i for i in errors(run) if i.file and "Afdeling" in i.file]
    assert named, [(i.file, i.message) for i in issues_of(run.id)]
    assert "ok1" in people(customer)
    numbers = [u.number for u in units(customer).values()]
    assert len(numbers) == len(set(numbers))


def test_an_ou_name_longer_than_a_unit_name_is_named(customer, directory):
    huge = "O" * 201
    source = openldap_source(customer, directory(ou(huge), person("h", huge), STAFF, OK))

    run = sync(source, full=True)

    applied(run)
    assert one_issue(run, ou_dn(huge))
    assert set(people(customer)) == {"ok1"}


def _chain(levels: int) -> list:
    path = "/".join(f"L{n}" for n in range(levels))
    return [ou("/".join(path.split("/")[: n + 1])) for n in range(levels)] + [person("deep", path)]


def test_an_ou_tree_at_the_depth_limit_applies(customer, directory):
    source = openldap_source(customer, directory(*_chain(300)))

    run = sync(source, full=True)

    applied(run)
    assert people(customer)["deep"].unit_id == units(customer)["L299"].id


def test_an_ou_tree_deeper_than_the_limit_fails_plainly_and_changes_nothing(customer, directory):
    source = openldap_source(customer, directory(*_chain(301)))

    run = sync(source, full=True)

    assert run.status == RunStatus.FAILED.value
    assert "300 levels" in run.error and "Nothing was changed" in run.error
    assert not people(customer) and not units(customer)


def test_a_person_outside_the_org_base_is_named_once_and_one_directly_at_it_is_at_the_root(
    customer, directory
):
    elsewhere = (f"ou=Andet,{SUFFIX}", {"objectClass": [b"organizationalUnit"], "ou": [b"Andet"]})
    outside = person("outside", "", base=elsewhere[0])
    at_base = person("atbase", "")
    source = openldap_source(
        customer, directory(STAFF, OK, elsewhere, outside, at_base), user_bases=[SUFFIX]
    )

    run = sync(source, full=True)

    applied(run)
    issue = one_issue(run, outside[0])
    assert "lies in no OU below the org base" in issue.message and issue.column == "dn"
    assert not [i for i in issues_of(run.id) if i.file and same_dn(i.file, at_base[0])]
    notices = [i.message for i in issues_of(run.id) if i.severity == "notice"]
    assert not [m for m in notices if "not inside any OU" in m], notices
    stored = people(customer)
    assert set(stored) == {"ok1", "atbase"}
    assert stored["atbase"].unit_id == customer.root_unit_id


# -- entries that change what they are ------------------------------------------------------

UUID_A = "0b9f0c7e-1111-4c1a-9d7e-000000000001"


def test_a_person_whose_entry_uuid_comes_back_as_an_ou(customer, directory):
    was_person = person("p1", "Stab", entryUUID=UUID_A)
    source = openldap_source(customer, directory(STAFF, OK, was_person))
    applied(sync(source, full=True))

    point(source, directory(STAFF, OK, ou("Ny", entryUUID=UUID_A)))
    run = sync(source, full=True)

    applied(run)
    assert not people(customer)["p1"].is_active
    assert units(customer)["Ny"].anchor == UUID_A


def test_an_entry_uuid_reused_by_another_person_is_a_rename(customer, directory):
    source = openldap_source(
        customer, directory(STAFF, OK, person("old", "Stab", entryUUID=UUID_A))
    )
    applied(sync(source, full=True))
    old_id = people(customer)["old"].id

    point(source, directory(STAFF, OK, person("new", "Stab", entryUUID=UUID_A)))
    run = sync(source, full=True)

    applied(run)
    stored = people(customer)
    assert set(stored) == {"ok1", "new"} and stored["new"].id == old_id
    assert run.counts["persons"]["updated"] == 1


def test_a_person_moved_while_both_ous_are_renamed(customer, directory):
    server = directory(ou("Løn"), ou("Bogføring"), person("m", "Løn"), person("ok1", "Bogføring"))
    source = openldap_source(customer, server)
    applied(sync(source, full=True))
    ids = {n: u.id for n, u in units(customer).items()}

    conn = server.admin()
    conn.rename_s(ou_dn("Løn"), "ou=Lønning")
    conn.rename_s(ou_dn("Bogføring"), "ou=Regnskab")
    conn.rename_s(f"cn=m,{ou_dn('Lønning')}", "cn=m", ou_dn("Regnskab"))
    run = sync(source, full=True)

    applied(run)
    by_number = units(customer)
    assert by_number["Lønning"].id == ids["Løn"] and by_number["Regnskab"].id == ids["Bogføring"]
    assert people(customer)["m"].unit_id == ids["Bogføring"]
    assert run.counts["persons"]["moved"] == 1


# -- units from an attribute ---------------------------------------------------------------


def test_attribute_units_with_empty_or_odd_department_values(customer, directory):
    entries = [
        STAFF,
        person("a", "Stab", departmentNumber="10", ou="Salg"),
        person("b", "Stab", departmentNumber="   ", ou="Tom"),
        person("c", "Stab"),
        person("d", "Stab", departmentNumber="9" * 65, ou="Lang"),
        person("e", "Stab", departmentNumber="20"),
        person("f", "Stab", departmentNumber="10", ou=" "),
    ]
    source = openldap_source(customer, directory(*entries), org_from="attribute")

    run = sync(source, full=True)

    applied(run)
    by_number = units(customer)
    assert set(by_number) == {"10", "20"}
    assert by_number["10"].name == "Salg" and by_number["20"].name == "20"
    assert set(people(customer)) == {"a", "e", "f"}
    for uid in ("b", "c", "d"):
        assert one_issue(run, person(uid, "Stab")[0])


def test_an_entry_that_is_both_an_ou_and_a_person(customer, directory):
    both = person("both", "Stab", objectClass=["inetOrgPerson", "extensibleObject"], ou="Both")
    inside = person("inside", "", base=both[0])
    ous = "(|(objectClass=organizationalUnit)(objectClass=extensibleObject))"
    source = openldap_source(customer, directory(STAFF, both, inside), ou_filter=ous)

    run = sync(source, full=True)

    applied(run)
    stored, by_number = people(customer), units(customer)
    assert by_number["both"].parent_id == by_number["Stab"].id
    assert stored["both"].unit_id == by_number["Stab"].id
    assert stored["inside"].unit_id == by_number["both"].id


def test_an_ou_below_a_container_gets_the_nearest_ou_above_as_parent(customer, directory):
    box = (f"cn=Box,{ou_dn('Stab')}", {"objectClass": [b"organizationalRole"], "cn": [b"Box"]})
    sub = ou("Sub", base=box[0])
    source = openldap_source(customer, directory(STAFF, box, sub, person("s", "Sub", base=box[0])))

    run = sync(source, full=True)

    applied(run)
    by_number = units(customer)
    assert by_number["Sub"].parent_id == by_number["Stab"].id
    assert people(customer)["s"].unit_id == by_number["Sub"].id
