"""The demo and example files are deterministic, fictional, and import without an issue."""

from pathlib import Path

import pytest

from portal.directory.usernames import username_problem
from sync.demo import EXAMPLE_UNITS, USERNAME_PREFIX, write_demo_files, write_example_files
from sync.sources.files import FileInput, read_files

EXAMPLES = Path(__file__).parents[2] / "docs" / "examples"


def _read(org: Path, persons: Path):
    return read_files(FileInput.from_path(org), FileInput.from_path(persons))


def test_same_seed_gives_the_same_bytes(tmp_path):
    first = write_demo_files(tmp_path / "a")
    again = write_demo_files(tmp_path / "b")
    other = write_demo_files(tmp_path / "c", seed=8)

    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert first[1].read_bytes() != other[1].read_bytes()


def test_demo_has_500_persons_in_36_units_four_levels_deep(tmp_path):
    data = _read(*write_demo_files(tmp_path))

    assert (data.issues, data.fatal) == ([], False)
    assert (len(data.units), len(data.persons)) == (36, 500)
    parents = {u.key: u.parent_key for u in data.units}

    def depth(key):
        return 1 if parents[key] is None else 1 + depth(parents[key])

    # Below the customer's own root: division -> department or location -> team.
    assert max(depth(key) for key in parents) == 3
    assert {u.kind for u in data.units} == {"division", "location", "department"}
    assert {p.unit_ref for p in data.persons} == set(parents)


def test_demo_usernames_are_unique_ids_never_names(tmp_path):
    persons = _read(*write_demo_files(tmp_path)).persons

    assert len({p.username.casefold() for p in persons}) == len(persons)
    assert len({p.email for p in persons}) == len(persons)
    for p in persons:
        assert p.username.startswith(USERNAME_PREFIX)
        assert username_problem(p.username, p.first_name, p.last_name, USERNAME_PREFIX) is None
        assert p.email.endswith("@example.test")
        assert len(p.employee_number) == 6


def test_employee_numbers_keep_their_leading_zeros(tmp_path):
    persons = _read(*write_demo_files(tmp_path)).persons

    assert any(p.employee_number.startswith("00") for p in persons)


@pytest.mark.parametrize("name", ["organisation.csv", "persons.csv"])
def test_committed_examples_match_the_generator(tmp_path, name):
    write_example_files(tmp_path)

    assert (EXAMPLES / name).read_bytes() == (tmp_path / name).read_bytes()


@pytest.mark.parametrize("ext", ["csv", "xlsx"])
def test_examples_read_alike_from_csv_and_xlsx(ext):
    data = _read(EXAMPLES / f"organisation.{ext}", EXAMPLES / f"persons.{ext}")

    assert (data.issues, data.fatal) == ([], False)
    assert (len(data.units), len(data.persons)) == (len(EXAMPLE_UNITS), 25)
    from_csv = _read(EXAMPLES / "organisation.csv", EXAMPLES / "persons.csv")
    assert [(p.username, p.employee_number, p.unit_ref) for p in data.persons] == [
        (p.username, p.employee_number, p.unit_ref) for p in from_csv.persons
    ]
