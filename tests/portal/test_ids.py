"""Ids from outside (addresses, query strings, form fields) that no database column holds are
not found, or an error on the field: never a 500. PostgreSQL's `integer` ends at 2**31 - 1."""

import pytest
from sqlalchemy import func, select

from portal.core import access
from portal.core.db import db
from portal.core.errors import NotFound
from portal.core.ids import MAX_ID, IdConverter, parse_id
from portal.courses.models import ActivityTemplate, Category
from portal.directory.models import Person
from tests.conftest import csrf_token
from tests.courses import helpers

acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as = helpers.account_of, helpers.login_as
HUGE = "99999999999999999999"
JUST_PAST = str(MAX_ID + 1)  # a SQLite integer, but not a PostgreSQL one


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1),
        (" 42 ", 42),
        (str(MAX_ID), MAX_ID),
        (7, 7),
        (JUST_PAST, None),
        (HUGE, None),
        ("9" * 5000, None),  # int() itself refuses strings this long
        (MAX_ID + 1, None),
        ("0", None),
        ("-1", None),
        (-1, None),
        ("", None),
        (None, None),
        ("12abc", None),
        ("1.5", None),
        ("\u0661\u0662", None),  # Arabic-Indic digits: isdigit() says yes, an id they are not
        (True, None),
    ],
)
def test_parse_id_accepts_only_ids_a_row_can_have(value, expected):
    assert parse_id(value) == expected


def test_every_id_in_a_route_uses_the_id_converter(app):
    loose = [
        f"{rule.rule} ({name})"
        for rule in app.url_map.iter_rules()
        for name, converter in rule._converters.items()
        if name.endswith("_id") and not isinstance(converter, IdConverter)
    ]
    assert loose == []


@pytest.mark.parametrize("ident", [JUST_PAST, int(JUST_PAST), HUGE, "x"])
def test_get_visible_answers_not_found_for_an_id_no_row_can_have(admin, ident):
    with pytest.raises(NotFound):
        access.get_visible(admin, Person, ident)


@pytest.mark.parametrize(
    "url",
    [f"/persons/{JUST_PAST}", f"/sync/runs/{JUST_PAST}", f"/persons/{MAX_ID}", "/persons/0"],
)
def test_an_id_just_past_postgresqls_integer_is_a_plain_404(acme, admin_client, url):
    answer = admin_client.get(url)
    assert answer.status_code == 404
    assert "There is nothing here, or it is not yours to see." in answer.get_data(as_text=True)


@pytest.mark.parametrize(
    ("url", "status"),
    [
        (f"/courses/?category={HUGE}", 200),  # no such category: the filter finds nothing
        (f"/?unit={HUGE}", 404),
        (f"/persons?page={HUGE}", 200),  # past the end: the last page
        (f"/sync/runs?page={HUGE}", 200),
    ],
)
def test_a_huge_number_in_a_query_string_is_no_500(acme, admin_client, url, status):
    assert admin_client.get(url).status_code == status


@pytest.mark.parametrize(
    ("url", "field", "label"),
    [
        ("/courses/manage/categories", "parent", "Inside category"),
        ("/courses/manage/templates", "category", "Category"),
    ],
)
def test_a_huge_id_in_a_form_field_is_an_error_naming_the_field(login_as, url, field, label):
    course_admin = login_as("hanne", "course_admin", None)
    data = {"csrf_token": csrf_token(course_admin, url), "name": "X", "title": "X", field: HUGE}

    answer = course_admin.post(url, data=data)

    assert f"{label}: choose one from the list." in answer.get_data(as_text=True)
    for model in (Category, ActivityTemplate):
        assert db.session.scalar(select(func.count()).select_from(model)) == 0
