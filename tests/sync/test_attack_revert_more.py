"""Reverts after later runs changed the same persons, units and values; reverts of
directory sources' renames (persons matched by anchor); and a revert that must reactivate a
unit and move its persons back in one go."""

from sync.revert import revert_run
from tests.sync.attack_helpers import (
    LDAP_STAFF,
    STAFF,
    UNITS,
    issues_of,
    ldap_data,
    people,
    tree,
)

# --- Revert after later runs -----------------------------------------------------------------


def test_a_revert_does_not_reactivate_a_person_into_a_unit_inactivated_since(
    make_customer, import_csv
):
    """Run 2 inactivates u9, whose unit 30 is then empty; run 3 inactivates unit 30. Reverting
    run 2 must not leave an active person in an inactive unit (the rule a revert's moves and
    the plan's unit inactivation keep)."""
    customer = make_customer("acme")
    staff = [*STAFF[:9], ["u9", "FirstJ", "Tester", "", "009", "30"]]
    import_csv(customer, UNITS, staff)
    leaving = import_csv(customer, UNITS, staff[:9])  # u9 inactivated
    import_csv(customer, UNITS[:2], staff[:9])  # unit 30 now empty: inactivated
    assert not tree(customer)["30"].is_active

    revert = revert_run(leaving.id, actor="test")

    assert revert.status == "applied", revert.error
    nine = people(customer)["u9"]
    assert not (nine.is_active and not nine.unit.is_active)


def test_a_revert_does_not_move_a_unit_back_under_a_parent_inactivated_since(
    make_customer, import_csv
):
    """Run 2 moves unit C (with its persons) from A to B; run 3 inactivates the now empty A.
    Reverting run 2 must not hang an active unit with active persons under an inactive one."""
    customer = make_customer("acme")
    staff = [[f"u{n}", f"First{chr(65 + n)}", "Tester", "", "", "C"] for n in range(3)]
    import_csv(customer, [["A", "A", "", ""], ["B", "B", "", ""], ["C", "C", "A", ""]], staff)
    moved = import_csv(
        customer, [["A", "A", "", ""], ["B", "B", "", ""], ["C", "C", "B", ""]], staff
    )
    import_csv(customer, [["B", "B", "", ""], ["C", "C", "B", ""]], staff)
    assert not tree(customer)["A"].is_active

    revert = revert_run(moved.id, actor="test")

    assert revert.status == "applied", revert.error
    units = tree(customer)
    assert units["C"].is_active
    assert units["C"].parent.is_active, "an active unit with active persons under an inactive one"


def test_a_revert_keeps_an_inactivation_a_later_run_made_again(make_customer, import_csv):
    """Run 2 inactivates u9, run 3 brings u9 back, run 4 (the newest source) inactivates u9
    again. Reverting run 2 must not reactivate u9: the value was changed again since, and the
    docs say such a value is kept."""
    customer = make_customer("acme")
    import_csv(customer, UNITS, STAFF)
    old = import_csv(customer, UNITS, STAFF[:9])
    import_csv(customer, UNITS, STAFF)
    import_csv(customer, UNITS, STAFF[:9])
    assert not people(customer)["u9"].is_active

    revert_run(old.id, actor="test")

    assert not people(customer)["u9"].is_active


def test_a_revert_keeps_a_name_a_later_run_set_back_again(make_customer, import_csv):
    """The same for a field: Tester -> Berg (run 2) -> Holm (run 3) -> Berg (run 4, newest).
    Reverting run 2 must keep the newest source's Berg, not put Tester back."""
    customer = make_customer("acme")
    import_csv(customer, UNITS, STAFF)

    def with_last(name):
        return [["u0", "FirstA", name, "", "000", "20"], *STAFF[1:]]

    old = import_csv(customer, UNITS, with_last("Berg"))
    import_csv(customer, UNITS, with_last("Holm"))
    import_csv(customer, UNITS, with_last("Berg"))

    revert_run(old.id, actor="test")

    assert people(customer)["u0"].last_name == "Berg"


# --- Directory sources with anchors (what an LDAP run hands the engine) ---------------------


def test_two_directory_persons_swapping_usernames_are_named_and_kept(make_customer):
    from sync.runs import run_source

    customer = make_customer("acme")
    assert run_source(customer, ldap_data(LDAP_STAFF), actor="test").status == "applied"
    swapped = [("p-a", "b2", "Ann", "g-sales"), ("p-b", "a1", "Bob", "g-sales"), LDAP_STAFF[2]]

    run = run_source(customer, ldap_data(swapped), actor="test")

    assert run.status == "applied", run.error
    found = people(customer)
    assert (found["a1"].first_name, found["b2"].first_name) == ("Ann", "Bob")
    assert all(p.is_active for p in found.values())
    assert sorted(i.value for i in issues_of(run.id)) == ["a1", "b2"]


def test_a_directory_rename_onto_another_customers_username_is_a_rejected_row(make_customer):
    """Usernames are unique across Kursa. A new person with another customer's username is a
    rejected row; a person renamed onto one must be too, not fail the whole run on the
    database's unique index."""
    from sync.runs import FileInput, import_files, run_source
    from tests.conftest import ORG_HEADER, PERSON_HEADER, csv_bytes

    other = make_customer("other")
    import_files(
        other,
        FileInput("org.csv", csv_bytes([ORG_HEADER, ["1", "One", "", ""]])),
        FileInput("persons.csv", csv_bytes([PERSON_HEADER, ["z9", "Zed", "Other", "", "", "1"]])),
        actor="test",
    )
    customer = make_customer("acme")
    assert run_source(customer, ldap_data(LDAP_STAFF), actor="test").status == "applied"
    renamed = [("p-a", "z9", "Ann", "g-sales"), ("p-b", "b2", "Bobby", "g-sales"), LDAP_STAFF[2]]

    run = run_source(customer, ldap_data(renamed), actor="test")

    assert run.status == "applied", run.error
    found = people(customer)
    assert found["a1"].is_active and found["b2"].first_name == "Bobby"
    assert [i.value for i in issues_of(run.id)] == ["z9"]


def test_reverting_a_directory_rename_whose_old_username_was_taken_since_still_reverts(
    make_customer, import_csv
):
    """Run 2 renames a1 -> a9; a file import then gives a1 to a new person. Reverting run 2
    must keep a9 (the value is taken: it was changed since, in effect) and undo the rest,
    not fail the whole revert on the unique index."""
    from sync.runs import run_source

    customer = make_customer("acme")
    run_source(customer, ldap_data(LDAP_STAFF), actor="test")
    renamed = [("p-a", "a9", "Ann", "g-sales"), ("p-b", "b2", "Bobby", "g-sales"), LDAP_STAFF[2]]
    run = run_source(customer, ldap_data(renamed), actor="test")
    assert run.status == "applied" and run.counts["persons"]["updated"] == 2
    taken = import_csv(customer, [["S", "S", "", ""]], [["a1", "Newt", "Else", "", "", "S"]])
    assert taken.status == "applied" and "a1" in people(customer)

    revert = revert_run(run.id, actor="test")

    assert revert.status == "applied", revert.error
    found = people(customer)
    assert found["b2"].first_name == "Bob"  # the rest of the run is undone
    assert found["a9"].first_name == "Ann" and found["a1"].first_name == "Newt"


# --- More revert cases ----------------------------------------------------------------------------


def test_reverting_a_run_that_emptied_and_inactivated_a_unit_puts_its_persons_back(
    make_customer, import_csv
):
    """Run 2 moves u9 out of unit 30 and inactivates 30 (now empty). Reverting run 2 must
    reactivate 30 and move u9 back into it: the revert handles persons before units, and must
    not refuse u9's move because 30 is inactive until the same revert reactivates it."""
    customer = make_customer("acme")
    staff = [*STAFF[:9], ["u9", "FirstJ", "Tester", "", "009", "30"]]
    import_csv(customer, UNITS, staff)
    run = import_csv(customer, UNITS[:2], STAFF)  # u9 -> 20, then 30 is empty: inactivated
    assert run.counts["persons"]["moved"] == 1 and run.counts["units"]["inactivated"] == 1

    revert = revert_run(run.id, actor="test")

    assert revert.status == "applied"
    units, nine = tree(customer), people(customer)["u9"]
    assert units["30"].is_active
    assert nine.unit.number == "30", [i.message for i in issues_of(revert.id)]
