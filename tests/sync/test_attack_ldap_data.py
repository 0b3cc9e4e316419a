"""Hostile or odd data inside the directory, read by a real slapd: each case applies cleanly,
or names the entry (DN, attribute, value) in the run report while the rest applies, or fails
the whole run with a plain message and changes nothing."""

import ldap
import ldap.dn
import pytest
from sqlalchemy.orm.attributes import flag_modified

from portal.core.db import db
from sync.models import RunStatus, SyncSource
from sync.report import report_rows
from tests.servers.slapd import ORG_BASE, SUFFIX, SlapdServer, to_ldif
from tests.sync.attack_helpers import issues_of, people
from tests.sync.attack_helpers import tree as units
from tests.sync.ldap_helpers import openldap_source, sync

# -- a small directory per test --------------------------------------------------------------


def ou_dn(path: str, base: str = ORG_BASE) -> str:
    """'Salg/Nord' -> 'ou=Nord,ou=Salg,<base>', escaped as a DN requires."""
    rdns = [[("ou", part, 1)] for part in reversed(path.split("/"))]
    return ldap.dn.dn2str(rdns) + "," + base


def ou(path: str, base: str = ORG_BASE, **extra) -> tuple[str, dict]:
    values = {"objectClass": [b"organizationalUnit"], "ou": [path.split("/")[-1].encode()]}
    return ou_dn(path, base), values | _encoded(extra)


def person(uid: str | None, path: str, /, base: str = ORG_BASE, **attrs) -> tuple[str, dict]:
    """An inetOrgPerson in the OU at `path` ('' for `base` itself); `attrs` override the values
    (a list for several values, None to leave one out)."""
    rdn = f"cn={ldap.dn.escape_dn_chars(attrs.pop('cn', uid or 'x'))}"
    values = {
        "objectClass": ["inetOrgPerson"],
        "cn": [uid or "x"],
        "uid": [uid] if uid else None,
        "givenName": ["Åse"],
        "sn": ["Ås"],
        "mail": [f"{uid}@example.dk"] if uid else None,
    }
    values.update({k: v if v is None or isinstance(v, list) else [v] for k, v in attrs.items()})
    parent = ou_dn(path, base) if path else base
    return f"{rdn},{parent}", _encoded({k: v for k, v in values.items() if v is not None})


def _encoded(values: dict) -> dict:
    return {
        k: [
            v if isinstance(v, bytes) else str(v).encode()
            for v in (vs if isinstance(vs, list) else [vs])
        ]
        for k, vs in values.items()
    }


BASE = (ORG_BASE, {"objectClass": [b"organizationalUnit"], "ou": ["Organisation på Ærø".encode()]})


@pytest.fixture
def directory():
    """directory(*entries) -> a started slapd holding the org base and the entries."""
    servers = []

    def start(*entries) -> SlapdServer:
        server = SlapdServer(to_ldif([BASE, *entries])).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def point(source, server) -> None:
    """Let `source` read `server` from now on (as a directory restored elsewhere would)."""
    source = db.session.get(SyncSource, source.id)
    source.settings = {**source.settings, "uri": server.uri}
    flag_modified(source, "settings")
    db.session.commit()


def errors(run) -> list:
    return [i for i in issues_of(run.id) if i.severity == "error"]


def applied(run) -> None:
    assert run.status == RunStatus.APPLIED.value, (
        run.error,
        [i.message for i in issues_of(run.id)],
    )


def same_dn(one: str | None, other: str) -> bool:
    try:
        return bool(one) and ldap.dn.str2dn(one.lower()) == ldap.dn.str2dn(other.lower())
    except ldap.DECODING_ERROR:
        return False


def one_issue(run, dn: str):
    found = [i for i in errors(run) if same_dn(i.file, dn)]
    assert len(found) == 1, [(i.file, i.column, i.value, i.message) for i in errors(run)]
    return found[0]


# Fixed entryUUIDs, so that a second server holding them is the same directory restored.
STAFF = ou("Stab", entryUUID="0b9f0c7e-1111-4c1a-9d7e-00000000000a")
OK = person("ok1", "Stab", entryUUID="0b9f0c7e-1111-4c1a-9d7e-00000000000b")


def skipped_beside_ok1(customer, directory, entry, **settings):
    """Sync STAFF, OK and `entry` fully: the run applies, only ok1 is stored, and the one
    error naming `entry` is returned."""
    source = openldap_source(customer, directory(STAFF, OK, entry), **settings)
    run = sync(source, full=True)
    applied(run)
    assert set(people(customer)) == {"ok1"}
    return one_issue(run, entry[0])


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
