"""The roles page: HR grants and revokes roles within its own branch; navigation by role."""

import re

import pytest
from sqlalchemy import select

from portal.accounts.models import RoleGrant
from portal.core import access
from portal.core.audit import AuditEntry
from portal.core.db import db
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
