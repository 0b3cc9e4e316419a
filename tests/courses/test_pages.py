"""The course pages: catalogue, activity, sign up and cancel, my activities, the course admin's
list, new activity and attendance; and 404 for every object of another branch."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.core.db import db, utcnow
from portal.courses.models import Activity, Signup
from portal.courses.operations import cancel_activity, create_category, sign_up
from tests.conftest import csrf_token


def text_of(response) -> str:
    return response.get_data(as_text=True)


def titles(html: str) -> set[str]:
    return set(re.findall(r'<td class="lead"[^>]*><a [^>]*>([^<]+)</a>', html))


@pytest.fixture
def offers(make_activity):
    """The company's, Sales', South's, Finance's activities, and a draft of Sales North."""
    return {
        "company": make_activity(None, title="Company day"),
        "sales": make_activity("10", title="Selling", capacity=1),
        "south": make_activity("12", title="South only"),
        "finance": make_activity("20", title="Budgets"),
        "draft": make_activity("11", title="Draft", publish=False),
    }


def post(client, url: str, page: str, **data):
    return client.post(url, data={"csrf_token": csrf_token(client, page), **data})


def test_catalogue_shows_the_unit_and_its_ancestors_published(login_as, offers):
    anna = login_as("anna")  # Sales North

    html = text_of(anna.get("/courses/"))

    assert titles(html) == {"Company day", "Selling"}
    assert titles(text_of(anna.get("/courses/?q=sell"))) == {"Selling"}


def category_choices(html: str) -> set[str]:
    select_tag = html[html.index('<select id="category"') : html.index("</select>")]
    return set(re.findall(r"<option[^>]*>([^<]+)</option>", select_tag)) - {"All"}


def test_catalogue_filters_by_the_categories_of_its_own_activities_only(
    login_as, make_activity, unit
):
    owners = {"Safety": None, "Selling": "10", "Unused": "11", "Budgets": "20", "Drafts": "11"}
    made = {name: create_category(unit(n), name, actor="test") for name, n in owners.items()}
    db.session.flush()
    make_activity(None, title="Fire drill", category_id=made["Safety"].id)
    make_activity("10", title="Cold calls", category_id=made["Selling"].id)
    make_activity("20", title="Year end", category_id=made["Budgets"].id)  # Finance's
    make_activity("11", title="Soon", publish=False, category_id=made["Drafts"].id)
    anna = login_as("anna")  # Sales North

    html = text_of(anna.get("/courses/"))
    picked = text_of(anna.get(f"/courses/?category={made['Selling'].id}"))

    assert category_choices(html) == {"Safety", "Selling"}
    assert titles(picked) == {"Cold calls"}


@pytest.mark.parametrize("field", ["q", "location"])
@pytest.mark.parametrize("typed", ["%", "_", "s_lling"])
def test_catalogue_search_takes_like_wildcards_as_letters(login_as, offers, field, typed):
    offers["sales"].location = "Room 1"
    db.session.commit()
    anna = login_as("anna")

    html = text_of(anna.get("/courses/", query_string={field: typed}))

    assert titles(html) == set()


def test_sign_up_then_the_waiting_list_then_cancel_promotes(login_as, offers, person):
    anna, hanne = login_as("anna"), login_as("hanne")
    sales = offers["sales"].id
    page = f"/courses/activities/{sales}"

    first = post(
        anna,
        f"{page}/signup",
        page,
    )
    assert first.status_code == 302
    assert "the seat is yours" in text_of(anna.get(page))
    post(hanne, f"{page}/signup", page)
    assert "number 1 on the waiting list" in text_of(hanne.get(page))

    post(anna, f"{page}/cancel", page)

    statuses = {s.person_id: s.status for s in db.session.scalars(select(Signup)).all()}
    assert statuses == {person("anna").id: "cancelled", person("hanne").id: "registered"}
    assert "Cancel my signup" in text_of(hanne.get(page))


def test_my_activities_keeps_the_history(login_as, offers, person):
    sign_up(offers["company"].id, person("anna"), actor="test")
    sign_up(offers["sales"].id, person("anna"), actor="test")
    db.session.commit()
    anna = login_as("anna")
    post(anna, f"/courses/activities/{offers['sales'].id}/cancel", "/courses/mine")

    html = text_of(anna.get("/courses/mine"))

    assert titles(html) == {"Company day", "Selling"}
    assert "cancelled" in html


@pytest.mark.parametrize("name", ["south", "finance", "draft"])
def test_activity_of_another_branch_is_404_to_an_employee(login_as, offers, name):
    anna = login_as("anna")
    url = f"/courses/activities/{offers[name].id}"

    assert anna.get(url).status_code == 404
    assert post(anna, f"{url}/signup", "/courses/").status_code == 404


def test_signup_of_another_branch_is_404(login_as, offers, person):
    signup = sign_up(offers["finance"].id, person("dina"), actor="test")
    db.session.commit()
    url = f"/courses/signups/{signup.id}"

    assert login_as("finn", "course_admin", "20").get(url).status_code == 200
    assert login_as("dina").get(url).status_code == 200
    assert login_as("hanne", "course_admin", "10").get(url).status_code == 404
    assert login_as("anna").get(url).status_code == 404


def test_course_admin_lists_and_manages_only_their_branch(login_as, offers):
    hanne = login_as("hanne", "course_admin", "10")

    assert titles(text_of(hanne.get("/courses/manage"))) == {"Selling", "South only", "Draft"}
    assert hanne.get(f"/courses/activities/{offers['finance'].id}").status_code == 404
    assert hanne.get(f"/courses/activities/{offers['south'].id}").status_code == 200


def test_course_admin_records_attendance_in_their_branch_only(login_as, offers, person):
    signup = sign_up(offers["finance"].id, person("dina"), actor="test")
    offers["finance"].starts_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    url = f"/courses/signups/{signup.id}/attendance"
    page = f"/courses/activities/{offers['finance'].id}"

    other = login_as("hanne", "course_admin", "10")
    assert post(other, url, "/courses/manage", status="attended").status_code == 404
    finn = login_as("finn", "course_admin", "20")
    assert post(finn, url, page, status="attended").status_code == 302

    assert db.session.get(Signup, signup.id).status == "attended"


def test_attendance_waits_until_the_activity_has_started(login_as, offers, person):
    signup = sign_up(offers["finance"].id, person("dina"), actor="test")
    db.session.commit()
    page = f"/courses/activities/{offers['finance'].id}"
    finn = login_as("finn", "course_admin", "20")

    answer = post(finn, f"/courses/signups/{signup.id}/attendance", page, status="attended")

    assert answer.status_code == 302
    assert "Attendance can be recorded once the activity has started" in text_of(finn.get(page))
    assert db.session.get(Signup, signup.id).status == "registered"


def test_an_unknown_attendance_value_is_refused_in_plain_words(login_as, offers, person):
    signup = sign_up(offers["finance"].id, person("dina"), actor="test")
    offers["finance"].starts_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    page = f"/courses/activities/{offers['finance'].id}"
    finn = login_as("finn", "course_admin", "20")

    answer = post(finn, f"/courses/signups/{signup.id}/attendance", page, status="bogus")

    assert answer.status_code == 400
    assert "Attendance is one of: attended, no-show, completed." in text_of(answer)
    assert db.session.get(Signup, signup.id).status == "registered"


def test_course_admin_creates_an_activity_in_local_time(login_as, acme):
    hanne = login_as("hanne", "course_admin", "10")
    form = {
        "title": "Negotiation",
        "unit": "11",
        "start": "2099-03-29T09:00",
        "end": "2099-03-29T12:00",
        "capacity": "12",
        "publish": "y",
    }

    response = post(hanne, "/courses/manage/new", "/courses/manage/new", **form)

    assert response.status_code == 302
    created = db.session.scalar(select(Activity))
    assert (created.title, created.status, created.starts_at.hour) == (
        "Negotiation",
        "published",
        7,
    )
    refused = post(hanne, "/courses/manage/new", "/courses/manage/new", **{**form, "unit": "20"})
    assert "You manage no unit with that number" in text_of(refused)


def test_hr_signs_up_a_person_of_their_branch_only(login_as, offers, person):
    page = f"/courses/activities/{offers['company'].id}"
    hanne = login_as("hanne", "hr", "10")
    finn = login_as("finn", "hr", "20")

    assert post(hanne, f"{page}/signup", page, username="u111").status_code == 302
    assert post(finn, f"{page}/signup", page, username="u121").status_code == 200

    signed = db.session.scalars(select(Signup)).all()
    assert [(s.person_id, s.status, s.signed_up_by) for s in signed] == [
        (person("anna").id, "registered", "account:u101")
    ]


@pytest.mark.parametrize("username", ["u111", "nobody"])  # Anna of Sales; a username nobody has
def test_signing_up_someone_outside_the_branch_names_the_field_alike(login_as, offers, username):
    page = f"/courses/activities/{offers['company'].id}"
    finn = login_as("finn", "course_admin", "20")

    answer = post(finn, f"{page}/signup", page, username=username)

    assert answer.status_code == 200
    html = text_of(answer)
    assert '<p class="field-error" id="username-error">' in html
    assert "No person with that username in your branch." in html
    assert "Company day" in html  # the activity page again, with the typed value kept
    assert f'value="{username}"' in html
    assert db.session.scalar(select(Signup)) is None


def test_person_page_shows_their_courses_to_hr_of_their_branch(login_as, offers, person):
    sign_up(offers["company"].id, person("anna"), actor="test")
    db.session.commit()

    html = text_of(login_as("hanne", "hr", "10").get(f"/persons/{person('anna').id}"))

    assert "Courses" in html and "Company day" in html


def test_a_signed_up_person_still_sees_a_cancelled_activity(login_as, offers, person):
    sign_up(offers["sales"].id, person("anna"), actor="test")
    cancel_activity(offers["sales"].id, actor="test")
    db.session.commit()

    assert login_as("anna").get(f"/courses/activities/{offers['sales'].id}").status_code == 200
    assert login_as("hanne").get(f"/courses/activities/{offers['sales'].id}").status_code == 404
