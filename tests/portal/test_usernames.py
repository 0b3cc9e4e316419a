"""The username rules: an id, never the person's name, initials or a CPR number."""

import pytest

from portal.directory.usernames import is_cpr_number, username_problem, with_prefix


@pytest.mark.parametrize(
    ("username", "refused"),
    [
        ("u10042", False),
        ("ab12", False),
        ("annaberg", True),  # run together
        ("Anna.Berg", True),  # with a dot
        ("berganna", True),  # last name first
        ("anna", True),  # first name alone
        ("berg", True),
        ("AB", True),  # initials
        ("ab", True),
        ("amb", True),  # all initials incl. middle name
        ("010190-1234", True),  # CPR with dash
        ("0101901234", True),  # ten digits forming a real date
        ("3102901234", False),  # 31 February is no date
        ("2902001234", True),  # 29 Feb 2000 existed
        ("12345", False),
        ("anna berg", True),  # a space is not allowed anyway
    ],
)
def test_username_rules(username, refused):
    problem = username_problem(username, "Anna Marie", "Berg")
    assert (problem is not None) == refused, problem


def test_prefix_is_ignored_when_checking_the_rules():
    assert username_problem("ACME_annaberg", "Anna", "Berg", "ACME_") is not None
    assert username_problem("ACME_0101901234", "Anna", "Berg", "ACME_") is not None
    assert username_problem("ACME_u1", "Anna", "Berg", "ACME_") is None
    assert username_problem("ACME_", "Anna", "Berg", "ACME_") is not None


def test_prefix_is_added_once_and_never_doubled():
    assert with_prefix("u1", "ACME_") == "ACME_u1"
    assert with_prefix("ACME_u1", "ACME_") == "ACME_u1"
    assert with_prefix("acme_u1", "ACME_") == "acme_u1"
    assert with_prefix("u1", "") == "u1"


@pytest.mark.parametrize("value", ["010190-1234", "0101901234", "311299-0000"])
def test_cpr_numbers(value):
    assert is_cpr_number(value)


@pytest.mark.parametrize("value", ["010190-123", "320190-1234", "01019012345", "abcdefghij"])
def test_not_cpr_numbers(value):
    assert not is_cpr_number(value)


@pytest.mark.parametrize("username", ["soren", "soeren", "sørenærø", "soerenaeroe", "sa"])
def test_danish_letters_typed_plainly_are_still_the_name(username):
    assert username_problem(username, "Søren", "Ærø") is not None


def test_accented_names_typed_plainly_are_still_the_name():
    assert username_problem("jose", "José", "Ruiz") is not None
    assert username_problem("u1042", "José", "Ruiz") is None
