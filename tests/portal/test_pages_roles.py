"""The roles page: HR grants and revokes roles within its own branch; navigation by role."""

import re

import pytest
from sqlalchemy import select

from portal.accounts.models import RoleGrant
from portal.core import access
from portal.core.audit import AuditEntry
from portal.core.db import db
from portal.core.errors import Forbidden
from tests.conftest import csrf_token
from tests.courses import helpers

acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as = helpers.account_of, helpers.login_as


def grants() -> set[tuple[str, str, str]]:
    """(person id, role, unit id) of every grant."""
    db.session.expire_all()
    rows = db.session.scalars(select(RoleGrant)).all()
    return {(g.person_id, g.role, g.unit_id) for g in rows}


def grant(client, username: str, role: str, number: str = ""):
    data = {"username": username, "role": role, "unit": number}
    return client.post("/roles/", data={"csrf_token": csrf_token(client, "/roles/"), **data})


def links(client) -> set[str]:
    html = client.get("/courses/").get_data(as_text=True)
    nav = html[html.index('<nav aria-label="Main">') : html.index("</nav>")]
    return set(re.findall(r">([^<]+)</a>", nav))


def test_hr_grants_a_role_in_its_branch(login_as, person, unit):
    hanne = login_as("hanne", "hr", "10")

    response = grant(hanne, "u111", "course_admin", "11")

    assert response.status_code == 302
    assert (person("anna").id, "course_admin", unit("11").id) in grants()
    page = hanne.get("/roles/").get_data(as_text=True)
    assert "Anna Berg" in page and "Course admin" in page
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "role.granted"))


def test_hr_cannot_grant_outside_its_branch(login_as, person, unit):
    hanne = login_as("hanne", "hr", "10")
    before = grants()

    assert grant(hanne, "u111", "hr", "20").status_code == 404  # Finance: not her branch
    assert grant(hanne, "u111", "hr", "").status_code == 404  # the whole customer
    assert grant(hanne, "u201", "course_admin", "10").status_code == 404  # Dina of Finance
    assert grant(hanne, "nobody", "course_admin", "10").status_code == 404

    assert grants() == before


def test_hr_revokes_in_its_branch_and_gets_404_outside(login_as, person, unit):
    access.grant_role(person("anna"), "course_admin", unit("11"), actor="test")
    access.grant_role(person("finn"), "course_admin", unit("20"), actor="test")
    db.session.commit()
    ids = {g.unit_id: g.id for g in db.session.scalars(select(RoleGrant))}
    hanne = login_as("hanne", "hr", "10")
    token = csrf_token(hanne, "/roles/")

    outside = hanne.post(f"/roles/{ids[unit('20').id]}/revoke", data={"csrf_token": token})
    inside = hanne.post(f"/roles/{ids[unit('11').id]}/revoke", data={"csrf_token": token})

    assert outside.status_code == 404 and inside.status_code == 302
    remaining = {g[2] for g in grants()}
    assert unit("11").id not in remaining and unit("20").id in remaining
    assert "Finn" not in hanne.get("/roles/").get_data(as_text=True)


def test_hr_cannot_revoke_it_admin_and_is_not_offered_to(login_as, person, unit, caplog):
    access.grant_role(person("anna"), "it_admin", unit("11"), actor="test")
    access.grant_role(person("finn"), "course_admin", unit("11"), actor="test")
    db.session.commit()
    ids = {g.role: g.id for g in db.session.scalars(select(RoleGrant))}
    hanne = login_as("hanne", "hr", "10")
    page = hanne.get("/roles/").get_data(as_text=True)
    before = grants()

    refused = hanne.post(
        f"/roles/{ids['it_admin']}/revoke", data={"csrf_token": csrf_token(hanne, "/roles/")}
    )

    assert refused.status_code == 403
    assert "only platform admins revoke IT admin" in refused.get_data(as_text=True)
    assert grants() == before
    assert f"/roles/{ids['it_admin']}/revoke" not in page
    assert f"/roles/{ids['course_admin']}/revoke" in page
    assert any(
        r.levelname == "WARNING" and "revoking it_admin" in r.message for r in caplog.records
    )


def test_platform_admin_revokes_it_admin(admin_client, acme, person, unit):
    access.grant_role(person("anna"), "it_admin", unit("11"), actor="test")
    db.session.commit()
    grant_id = db.session.scalar(select(RoleGrant.id))

    token = csrf_token(admin_client, "/roles/?customer=acme")
    assert (
        admin_client.post(f"/roles/{grant_id}/revoke", data={"csrf_token": token}).status_code
        == 302
    )
    assert grants() == set()


@pytest.mark.parametrize("role", [None, "course_admin", "it_admin"])
def test_roles_page_is_403_without_hr(login_as, role):
    assert login_as("anna", role, "11" if role else None).get("/roles/").status_code == 403


def test_navigation_shows_only_links_with_something_behind_them(login_as):
    anna = login_as("anna")
    assert links(anna) == {"Courses"}
    assert '<a class="brand" href="/courses/">' in anna.get("/courses/mine").get_data(as_text=True)
    bo = login_as("bo", "course_admin", "12")  # starts on the activities, not the tree
    assert links(bo) == {"Persons", "Courses", "Manage courses"}
    assert '<a class="brand" href="/courses/manage">' in bo.get("/courses/").get_data(as_text=True)
    assert links(login_as("hanne", "hr", "10")) == {"Organisation", "Persons", "Courses", "Roles"}
    assert "Sync runs" in links(login_as("dina", "hr", None))  # HR of the whole customer


def test_platform_admin_grants_anywhere_and_sees_every_link(admin_client, acme, person, unit):
    assert grant(admin_client, "u201", "it_admin", "20").status_code == 302

    assert (person("dina").id, "it_admin", unit("20").id) in grants()
    assert {"Organisation", "Sync runs", "Roles", "Manage courses"} <= links(admin_client)


def role_choices(client) -> list[str]:
    html = client.get("/roles/").get_data(as_text=True)
    select_tag = html[html.index('<select id="role"') : html.index("</select>")]
    return re.findall(r'<option[^>]*value="([^"]+)"', select_tag)


@pytest.mark.parametrize(("role", "number"), [("course_admin", "11"), ("hr", "10")])
def test_hr_cannot_grant_a_role_to_itself(login_as, person, unit, role, number, caplog):
    hanne = login_as("hanne", "hr", "10")
    before = grants()

    refused = grant(hanne, "u101", role, number)

    assert refused.status_code == 403
    assert "Nobody grants a role to themselves" in refused.get_data(as_text=True)
    assert grants() == before
    assert any(r.levelname == "WARNING" and "its own person" in r.message for r in caplog.records)


def test_hr_cannot_grant_it_admin_and_is_not_offered_it(login_as, person):
    hanne = login_as("hanne", "hr", None)  # HR of the whole customer
    before = grants()

    refused = grant(hanne, "u111", "it_admin", "11")  # a forged choice

    assert "Not a valid choice" in refused.get_data(as_text=True)
    assert grants() == before
    assert role_choices(hanne) == ["hr", "course_admin"]


def test_grant_role_holds_the_granter_to_its_roles_whoever_calls_it(account_of, person, unit):
    hanne = account_of("hanne", "hr", None)

    with pytest.raises(Forbidden, match="only platform admins grant IT admin"):
        access.grant_role(person("anna"), "it_admin", unit("11"), actor="test", granter=hanne)
    with pytest.raises(Forbidden, match="themselves"):
        access.grant_role(person("hanne"), "course_admin", unit("11"), actor="test", granter=hanne)


def test_platform_admin_is_offered_and_grants_it_admin(admin_client, acme, person, unit):
    assert role_choices(admin_client) == ["hr", "it_admin", "course_admin"]
    assert grant(admin_client, "u121", "it_admin", "").status_code == 302
    assert (person("bo").id, "it_admin", unit(None).id) in grants()


def test_the_role_command_grants_it_admin_to_anyone(app, acme, person, unit):
    runner = app.test_cli_runner()
    args = ["role", "grant", "u101", "it_admin", "--customer", "acme"]

    result = runner.invoke(args=args, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert (person("hanne").id, "it_admin", unit(None).id) in grants()
