"""Categories and templates pages: course admins create within their branch; lists stop at it."""

from sqlalchemy import select

from portal.core.db import db
from portal.courses.models import ActivityTemplate, Category
from portal.courses.operations import create_category
from tests.conftest import csrf_token

CATEGORIES, TEMPLATES = "/courses/manage/categories", "/courses/manage/templates"


def post(client, url: str, **data):
    return client.post(url, data={"csrf_token": csrf_token(client, url), **data})


def test_course_admin_creates_a_category_tree_in_its_branch(login_as, unit):
    bo = login_as("bo", "course_admin", "10")

    assert post(bo, CATEGORIES, name="Safety", unit="10").status_code == 302
    safety = db.session.scalar(select(Category))
    assert (
        post(bo, CATEGORIES, name="First aid", unit="12", parent=str(safety.id)).status_code == 302
    )

    child = db.session.scalar(select(Category).where(Category.name == "First aid"))
    assert child.parent_id == safety.id and child.owner_unit_id == unit("12").id
    html = bo.get(CATEGORIES).get_data(as_text=True)
    assert "Safety" in html and "First aid" in html


def test_no_category_outside_the_branch(login_as, unit):
    create_category(unit("20"), "Finance only", actor="test")
    db.session.commit()
    bo = login_as("bo", "course_admin", "10")

    refused = post(bo, CATEGORIES, name="Sneaky", unit="20")
    forged = post(
        bo, CATEGORIES, name="Inside", unit="10", parent=str(db.session.scalar(select(Category.id)))
    )

    assert "You manage no unit with that number." in refused.get_data(as_text=True)
    assert forged.status_code == 404
    assert db.session.scalars(select(Category.name)).all() == ["Finance only"]
    assert "Finance only" not in bo.get(CATEGORIES).get_data(as_text=True)


def test_course_admin_creates_a_template(login_as, unit):
    bo = login_as("bo", "course_admin", "12")
    data = {"title": "Forklift", "unit": "12", "duration": "90", "capacity": "8"}

    assert post(bo, TEMPLATES, price="250.50", location="Yard", **data).status_code == 302

    template = db.session.scalar(select(ActivityTemplate))
    assert (template.title, template.duration_minutes, template.capacity) == ("Forklift", 90, 8)
    assert str(template.price) == "250.50" and template.owner_unit_id == unit("12").id
    assert "Forklift" in bo.get(TEMPLATES).get_data(as_text=True)
    assert "Forklift" not in login_as("finn", "course_admin", "20").get(TEMPLATES).get_data(
        as_text=True
    )


def test_setup_pages_are_403_for_employees(login_as):
    anna = login_as("anna")

    assert anna.get(CATEGORIES).status_code == 403
    assert anna.get(TEMPLATES).status_code == 403
