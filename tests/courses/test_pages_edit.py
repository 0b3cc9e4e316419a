"""The course admin's new activity from a template and the edit page: details, capacity (with
promotions from the waiting list), publish, cancel, complete; 404 outside the branch."""

from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.core.db import db
from portal.courses.models import Activity, OutboxMessage, Signup
from portal.courses.operations import create_template, sign_up
from portal.courses.times import zone_of
from tests.conftest import csrf_token

NEW = "/courses/manage/new"


def text_of(response) -> str:
    return response.get_data(as_text=True)


def post(client, url: str, page: str, **data):
    return client.post(url, data={"csrf_token": csrf_token(client, page), **data})


@pytest.fixture
def templates(unit):
    made = {
        "sales": create_template(
            unit("10"),
            "Forklift",
            actor="test",
            description="Safe driving",
            duration_minutes=90,
            capacity=6,
            price=Decimal("250.00"),
            default_location="Hall B",
        ),
        "finance": create_template(unit("20"), "Ledgers", actor="test", capacity=4),
    }
    db.session.commit()
    return made


def edit_form(activity: Activity, **changes) -> dict:
    zone = zone_of(None)
    form = {
        "title": activity.title,
        "description": activity.description,
        "start": activity.starts_at.astimezone(zone).strftime("%Y-%m-%dT%H:%M"),
        "end": activity.ends_at.astimezone(zone).strftime("%Y-%m-%dT%H:%M"),
        "location": activity.location,
        "capacity": str(activity.capacity),
        "min_participants": "0",
        "instructor": "",
    }
    return {**form, **changes}


def edit_url(activity: Activity) -> str:
    return f"/courses/manage/activities/{activity.id}/edit"


def test_new_activity_from_a_template_is_prefilled_and_keeps_the_link(login_as, templates):
    hanne = login_as("hanne", "course_admin", "10")
    template = templates["sales"]

    page = text_of(hanne.get(f"{NEW}?template={template.id}"))
    assert 'value="Forklift"' in page and 'value="Hall B"' in page and 'value="6"' in page
    assert "Safe driving" in page and 'value="250.00"' in page
    response = post(
        hanne,
        NEW,
        NEW,
        template=str(template.id),
        title="Forklift",
        unit="11",
        start="2099-05-04T09:00",
        end="",
    )

    assert response.status_code == 302, text_of(response)
    created = db.session.scalar(select(Activity))
    assert created.template_id == template.id
    assert (created.capacity, created.location, created.description, created.price) == (
        6,
        "Hall B",
        "Safe driving",
        Decimal("250.00"),
    )
    assert (created.ends_at - created.starts_at).total_seconds() == 90 * 60


def test_template_of_another_branch_is_404(login_as, templates):
    hanne = login_as("hanne", "course_admin", "10")
    other = templates["finance"]

    assert hanne.get(f"{NEW}?template={other.id}").status_code == 404
    form = {"template": str(other.id), "title": "X", "unit": "11", "start": "2099-05-04T09:00"}
    assert post(hanne, NEW, NEW, **form).status_code == 404
    assert db.session.scalar(select(Activity)) is None
    assert f'value="{other.id}"' not in text_of(hanne.get(NEW))


def test_edit_changes_the_details(login_as, make_activity):
    activity = make_activity("11", title="Old title")
    hanne = login_as("hanne", "course_admin", "10")
    url = edit_url(activity)

    assert 'value="Old title"' in text_of(hanne.get(url))
    form = edit_form(activity, title="New title", location="Room 4", instructor="Ida", price="99")
    response = post(hanne, url, url, **{**form, "min_participants": "3"})

    assert response.status_code == 302, text_of(response)
    saved = db.session.get(Activity, activity.id)
    assert (saved.title, saved.location, saved.instructor, saved.price) == (
        "New title",
        "Room 4",
        "Ida",
        Decimal("99.00"),
    )
    assert saved.min_participants == 3


def test_raising_capacity_on_the_page_promotes_the_first_waiting(login_as, make_activity, person):
    activity = make_activity("10", capacity=1)
    for name in ("anna", "bo", "hanne"):
        sign_up(activity.id, person(name), actor="test")
    db.session.commit()
    admin = login_as("hanne", "course_admin", "10")
    url = edit_url(activity)

    assert post(admin, url, url, **edit_form(activity, capacity="2")).status_code == 302

    statuses = {
        s.person_id: (s.status, s.position) for s in db.session.scalars(select(Signup)).all()
    }
    assert statuses == {
        person("anna").id: ("registered", None),
        person("bo").id: ("registered", None),
        person("hanne").id: ("waitlisted", 1),
    }
    told = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "signup.promoted"))
    assert [m.person_id for m in told] == [person("bo").id]


def test_lowering_capacity_below_the_registered_is_refused(login_as, make_activity, person):
    activity = make_activity("10", capacity=3)
    sign_up(activity.id, person("anna"), actor="test")
    sign_up(activity.id, person("bo"), actor="test")
    db.session.commit()
    admin = login_as("hanne", "course_admin", "10")
    url = edit_url(activity)

    response = post(admin, url, url, **edit_form(activity, capacity="1", title="Changed"))

    assert "2 persons are registered: the capacity cannot go below that." in text_of(response)
    saved = db.session.get(Activity, activity.id)
    db.session.refresh(saved)
    assert (saved.capacity, saved.title) == (3, "First aid")


def status_of(activity_id: int) -> str:
    saved = db.session.get(Activity, activity_id)
    db.session.refresh(saved)
    return saved.status


def test_publish_then_complete(login_as, make_activity):
    activity = make_activity("10", publish=False)
    admin = login_as("hanne", "course_admin", "10")
    url = f"/courses/manage/activities/{activity.id}/status"

    assert post(admin, url, edit_url(activity), action="publish").status_code == 302
    assert status_of(activity.id) == "published"
    assert post(admin, url, edit_url(activity), action="complete").status_code == 302
    assert status_of(activity.id) == "completed"
    post(admin, url, edit_url(activity), action="publish")
    assert status_of(activity.id) == "completed"
    assert "only a draft can be published" in text_of(admin.get(edit_url(activity)))


def test_cancel_tells_everyone_through_the_outbox(login_as, make_activity, person):
    activity = make_activity("10", capacity=1)
    sign_up(activity.id, person("anna"), actor="test")
    sign_up(activity.id, person("bo"), actor="test")
    db.session.commit()
    admin = login_as("hanne", "course_admin", "10")
    url = f"/courses/manage/activities/{activity.id}/status"

    assert "Reason, told to everyone" in text_of(admin.get(edit_url(activity)))
    reason = "The trainer is ill"
    response = post(admin, url, edit_url(activity), action="cancel", reason=f"  {reason} ")
    assert response.status_code == 302

    assert status_of(activity.id) == "cancelled"
    told = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "activity.cancelled")
    ).all()
    assert sorted(m.person_id for m in told) == sorted([person("anna").id, person("bo").id])
    assert {m.payload["reason"] for m in told} == {reason}


def test_the_manage_list_links_each_open_activity_to_its_edit_page(login_as, make_activity):
    activity = make_activity("10", publish=False)
    admin = login_as("hanne", "course_admin", "10")

    assert f'href="{edit_url(activity)}"' in text_of(admin.get("/courses/manage"))


def test_edit_and_status_of_another_branch_are_404(login_as, make_activity):
    finance = make_activity("20", title="Budgets")
    url = edit_url(finance)
    status = f"/courses/manage/activities/{finance.id}/status"
    dina = login_as("dina")  # an employee of Finance: sees the activity, may not edit it
    other = login_as("hanne", "course_admin", "10")

    assert dina.get(f"/courses/activities/{finance.id}").status_code == 200
    assert dina.get(url).status_code == 404
    assert other.get(url).status_code == 404
    assert post(other, url, "/courses/manage", **edit_form(finance)).status_code == 404
    assert post(other, status, "/courses/manage", action="cancel").status_code == 404
    assert login_as("bo", "hr", "20").get(url).status_code == 404
    assert status_of(finance.id) == "published"
    assert login_as("finn", "course_admin", "20").get(url).status_code == 200


def test_a_cancelled_activity_cannot_be_edited(login_as, make_activity):
    activity = make_activity("10")
    admin = login_as("hanne", "course_admin", "10")
    post(
        admin,
        f"/courses/manage/activities/{activity.id}/status",
        edit_url(activity),
        action="cancel",
    )
    url = edit_url(activity)

    assert "it cannot be changed" in text_of(admin.get(url))
    response = post(admin, url, "/courses/manage", **edit_form(activity, title="Revived"))

    assert "The activity is cancelled: it cannot be changed." in text_of(response)
    assert status_of(activity.id) == "cancelled"
