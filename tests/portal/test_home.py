"""Each kind of account starts on its own page, and a page that holds nothing for an account
refuses it in plain words rather than reading as if the portal were empty."""

import pytest

from tests.conftest import ADMIN_PASSWORD, csrf_token
from tests.courses import helpers

acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as, make_activity = helpers.account_of, helpers.login_as, helpers.make_activity

NO_CUSTOMERS = "There are no customers yet"


def text_of(response) -> str:
    return response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("role", "number", "home"),
    [
        (None, None, "/courses/"),
        ("course_admin", "10", "/courses/manage"),
    ],
)
def test_start_page_of_an_account_without_the_organisation(login_as, role, number, home):
    client = login_as("anna", role, number)

    answer = client.get("/")

    assert answer.status_code == 302
    assert answer.headers["Location"] == home
    assert client.get(home).status_code == 200


@pytest.mark.parametrize(("role", "number"), [("hr", "10"), ("it_admin", None)])
def test_hr_and_it_start_on_the_organisation(login_as, role, number):
    html = text_of(login_as("hanne", role, number).get("/"))

    assert "Sales North" in html
    assert NO_CUSTOMERS not in html


def test_an_employee_lands_on_the_catalogue_after_an_sso_login(login_as, make_activity):
    make_activity(None, title="Company day")
    anna = login_as("anna")  # the session an SSO login leaves; it then redirects to "/"

    html = text_of(anna.get("/", follow_redirects=True))

    assert "Company day" in html
    assert NO_CUSTOMERS not in html and "Organisation" not in html


def test_a_platform_admin_logs_in_to_the_organisation(client, admin):
    token = csrf_token(client, "/login")
    answer = client.post(
        "/login", data={"username": admin.username, "password": ADMIN_PASSWORD, "csrf_token": token}
    )

    assert answer.headers["Location"] == "/"
    assert "flask customer create" in text_of(client.get("/"))  # no customer yet: told how


@pytest.mark.parametrize(
    ("role", "number", "path"),
    [
        (None, None, "/persons"),
        (None, None, "/sync/upload"),
        (None, None, "/sync/runs"),
        (None, None, "/courses/manage"),
        (None, None, "/courses/manage/new"),
        ("course_admin", "10", "/sync/upload"),
        ("course_admin", "10", "/sync/runs"),
        ("hr", "10", "/sync/runs"),  # a run concerns the whole customer, not a branch
        ("hr", "10", "/courses/manage"),
    ],
)
def test_a_page_with_nothing_for_the_account_is_refused(login_as, role, number, path):
    answer = login_as("anna", role, number).get(path)

    assert answer.status_code == 403
    html = text_of(answer)
    assert "Only " in html
    assert NO_CUSTOMERS not in html and "No runs yet" not in html


def test_navigation_shows_only_pages_with_something_behind(login_as):
    def links(client) -> set[str]:
        html = text_of(client.get("/courses/"))
        nav = html[html.index("<nav") : html.index("</nav>")]
        return {label for label in LABELS if f">{label}</a>" in nav}

    assert links(login_as("anna")) == {"Courses"}
    admin = login_as("bo", "course_admin", "12")
    assert links(admin) == {"Persons", "Courses", "Manage courses"}
    assert links(login_as("hanne", "hr", None)) >= {"Organisation", "Sync runs", "Import files"}


LABELS = ("Organisation", "Persons", "Sync runs", "Import files", "Courses", "Manage courses")


def test_manage_page_offers_a_new_activity_to_a_course_admin(login_as):
    html = text_of(login_as("hanne", "course_admin", "10").get("/courses/manage"))

    assert 'href="/courses/manage/new"' in html


def test_the_error_page_leads_a_visitor_to_the_login(client, app):
    html = text_of(client.get("/sso/acme/nothing/login"))

    assert 'href="/login"' in html
    assert "organisation" not in html


@pytest.mark.parametrize(
    ("role", "number", "home", "label"),
    [
        (None, None, "/courses/", "Back to the courses"),
        ("course_admin", "10", "/courses/manage", "Back to your activities"),
        ("hr", "10", "/", "Back to the organisation"),
    ],
)
def test_the_error_page_leads_back_to_the_accounts_start(login_as, role, number, home, label):
    answer = login_as("anna", role, number).get("/sso/acme/nothing/login")

    assert answer.status_code == 404
    assert f'<a href="{home}">{label}</a>' in text_of(answer)
