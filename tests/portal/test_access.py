"""The branch rule: a role granted at a unit reaches its branch, and nothing outside answers
anything but 404, on every page and in every lookup."""

import re

import pytest
from sqlalchemy import select

from portal.accounts.models import Account, RoleGrant
from portal.core import access
from portal.core.audit import AuditEntry
from portal.core.db import db
from portal.core.errors import NotFound
from portal.courses.models import CalendarFeed, Signup
from portal.courses.operations import sign_up
from tests.conftest import csrf_token
from tests.courses import helpers

# The fixtures of the course tests: a customer with two branches, logins with roles.
acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as, make_activity = helpers.account_of, helpers.login_as, helpers.make_activity


def text_of(response) -> str:
    return response.get_data(as_text=True)


def names_listed(html: str) -> set[str]:
    return set(re.findall(r'<td class="lead"[^>]*><a [^>]*>([^<]+)</a>', html))


def test_hr_tree_starts_at_their_branch(login_as):
    client = login_as("hanne", "hr", "10")

    html = text_of(client.get("/"))

    assert "Sales North" in html and "Sales South" in html
    assert "Finance" not in html


def test_hr_persons_page_lists_only_their_branch(login_as):
    client = login_as("hanne", "hr", "10")

    html = text_of(client.get("/persons?status=all"))

    assert names_listed(html) == {"Berg, Anna", "Dahl, Bo", "Holm, Hanne"}


def test_person_of_another_branch_is_404_on_the_person_page(login_as, person):
    client = login_as("finn", "hr", "20")

    assert client.get(f"/persons/{person('dina').id}").status_code == 200
    assert client.get(f"/persons/{person('anna').id}").status_code == 404
    assert client.get("/persons/999999").status_code == 404


def test_tree_narrowed_to_a_unit_of_another_branch_is_404(login_as, unit):
    client = login_as("finn", "hr", "20")

    assert client.get(f"/?unit={unit('20').id}").status_code == 200
    assert client.get(f"/?unit={unit('11').id}").status_code == 404


def test_persons_filtered_by_a_unit_of_another_branch_finds_no_such_unit(login_as):
    client = login_as("finn", "hr", "20")

    html = text_of(client.get("/persons?unit=11"))

    assert "has no unit numbered 11" in html
    assert "Anna Berg" not in html


def test_sync_runs_are_seen_by_hr_at_the_root_only(login_as, acme):
    from sync.models import SyncRun

    run_id = db.session.scalar(select(SyncRun.id))
    branch_hr = login_as("hanne", "hr", "10")
    root_hr = login_as("finn", "hr", None)

    assert branch_hr.get(f"/sync/runs/{run_id}").status_code == 404
    assert f"/sync/runs/{run_id}" not in text_of(branch_hr.get("/sync/runs"))
    assert root_hr.get(f"/sync/runs/{run_id}").status_code == 200
    assert f"/sync/runs/{run_id}" in text_of(root_hr.get("/sync/runs"))


def test_employee_without_a_role_sees_no_directory(login_as, person):
    client = login_as("anna")

    assert names_listed(text_of(client.get("/persons?status=all"))) == set()
    assert client.get(f"/persons/{person('bo').id}").status_code == 404


def test_activity_and_signup_of_another_branch_are_not_found(account_of, make_activity, person):
    finance = make_activity("20", title="Budgets")
    sign_up(finance.id, person("dina"), actor="test")
    db.session.commit()
    signup = db.session.scalar(select(Signup))
    sales_admin = account_of("hanne", "course_admin", "10")
    finance_admin = account_of("finn", "course_admin", "20")

    with pytest.raises(NotFound):
        access.get_visible(sales_admin, type(finance), finance.id)
    with pytest.raises(NotFound):
        access.get_visible(sales_admin, Signup, signup.id)
    assert access.get_visible(finance_admin, Signup, signup.id) is signup


def test_employee_sees_published_activities_of_their_unit_and_ancestors(account_of, make_activity):
    company = make_activity(None, title="Company day")
    sales = make_activity("10", title="Selling")
    south = make_activity("12", title="South only")
    draft = make_activity("11", title="Draft", publish=False)
    anna = account_of("anna")

    for seen in (company, sales):
        assert access.get_visible(anna, type(seen), seen.id) is seen
    for hidden in (south, draft):
        with pytest.raises(NotFound):
            access.get_visible(anna, type(hidden), hidden.id)


def test_signup_is_seen_by_its_person_and_hr_of_their_branch(account_of, make_activity, person):
    company = make_activity(None)
    signup = sign_up(company.id, person("anna"), actor="test")
    db.session.commit()

    for who in (account_of("anna"), account_of("hanne", "hr", "10")):
        assert access.get_visible(who, Signup, signup.id) is signup
    for who in (account_of("bo"), account_of("finn", "hr", "20")):
        with pytest.raises(NotFound):
            access.get_visible(who, Signup, signup.id)


def test_platform_admin_reaches_everything(admin_client, person):
    assert admin_client.get(f"/persons/{person('anna').id}").status_code == 200
    assert admin_client.get(f"/persons/{person('dina').id}").status_code == 200


@pytest.fixture
def flask(app):
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=list(args), catch_exceptions=False)


def test_role_grant_command_makes_an_account_without_password(flask, person, unit):
    result = flask("role", "grant", "u101", "hr", "--unit", "10", "--customer", "acme")

    assert result.exit_code == 0, result.output
    account = db.session.scalar(select(Account).where(Account.person_id == person("hanne").id))
    assert account.username == "u101" and account.password_hash is None
    assert not account.is_platform_admin
    grant = db.session.scalar(select(RoleGrant))
    assert (grant.role, grant.unit_id, grant.person_id) == ("hr", unit("10").id, person("hanne").id)
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "role.granted"))

    again = flask("role", "grant", "u101", "hr", "--unit", "10", "--customer", "acme")
    assert again.exit_code == 0
    assert len(db.session.scalars(select(RoleGrant)).all()) == 1


@pytest.mark.parametrize(
    "args, reason",
    [
        (["nobody", "hr", "--unit", "10"], "No person"),
        (["u101", "hr", "--unit", "99"], "no unit numbered 99"),
        (["u101", "boss", "--unit", "10"], "Invalid value"),
    ],
)
def test_role_grant_command_refuses_with_the_reason(flask, acme, args, reason):
    result = flask("role", "grant", *args, "--customer", "acme")

    assert result.exit_code != 0
    assert reason in result.output
    assert db.session.scalar(select(RoleGrant)) is None


def test_an_inactivated_person_reaches_nothing_despite_their_grants(login_as, person):
    client = login_as("hanne", "hr", "10")
    assert "Sales North" in text_of(client.get("/"))

    person("hanne").is_active = False  # as a sync inactivates someone who left
    db.session.commit()

    html = text_of(client.get("/persons?status=all"))
    assert names_listed(html) == set()
    assert client.get(f"/persons/{person('anna').id}").status_code == 404


def test_an_inactivated_employee_sees_none_of_their_own_pages(login_as, make_activity, person):
    """scope_of's rule holds on the pages that act for "me" too: catalogue, my activities,
    the activity they signed up for, and the calendar feed page (which would renew a feed)."""
    activity = make_activity("11", title="Layoff briefing")
    sign_up(activity.id, person("anna"), actor="test")
    db.session.commit()
    anna = login_as("anna")
    assert "Layoff briefing" in text_of(anna.get("/courses/mine"))  # before

    person("anna").is_active = False  # as a sync inactivates someone who left
    db.session.commit()

    assert "not an active person" in text_of(anna.get("/courses/"))
    assert "Layoff briefing" not in text_of(anna.get("/courses/mine"))
    assert anna.get(f"/courses/activities/{activity.id}").status_code == 404
    token = csrf_token(anna, "/courses/calendar")
    renewed = text_of(anna.post("/courses/calendar", data={"csrf_token": token}))
    assert "not an active person" in renewed
    assert db.session.scalar(select(CalendarFeed)) is None


def test_the_person_page_breadcrumb_starts_at_the_viewers_branch(login_as, person, unit):
    """As the tree's: HR of Sales (10) sees Sales and Sales North above Anna, not the root."""
    hanne = login_as("hanne", "hr", "10")

    html = text_of(hanne.get(f"/persons/{person('anna').id}"))

    crumbs = re.search(r'<nav class="crumbs".*?</nav>', html, re.S).group(0)
    assert re.findall(r"unit=(\d+)", crumbs) == [str(unit("10").id), str(unit("11").id)]
