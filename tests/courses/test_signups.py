"""Signups: seats, the waiting list, promotions, refusals with their reasons, history."""

import logging
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from portal.core.audit import AuditEntry
from portal.core.db import db, utcnow
from portal.core.errors import Conflict, UserError
from portal.courses.models import OutboxMessage, Signup
from portal.courses.operations import (
    cancel_activity,
    cancel_signup,
    create_category,
    create_template,
    set_capacity,
    sign_up,
)
from portal.courses.queries import catalogue, signups_in_order
from portal.directory.models import Person
from tests.courses.helpers import PERSONS, UNITS

# Ten more persons in Sales North, to fill seats with.
STAFF = [[f"u3{n:02d}", f"Staff{n}", "Nord", "", f"S-{n}", "11"] for n in range(10)]


@pytest.fixture
def staff(acme, import_csv):
    import_csv(acme, UNITS, PERSONS + STAFF)
    return list(
        db.session.scalars(
            select(Person).where(Person.username.like("u3%")).order_by(Person.username)
        )
    )


def states(activity_id: int) -> list[tuple[str, str, int | None]]:
    return [(u, s.status, s.position) for s, u in signups_in_order(activity_id)]


def test_seats_fill_in_order_then_the_waiting_list(make_activity, staff):
    activity = make_activity("10", capacity=3)

    results = [sign_up(activity.id, p, actor="test") for p in staff[:6]]
    db.session.commit()

    assert [(s.status, s.position) for s in results] == [
        ("registered", None),
        ("registered", None),
        ("registered", None),
        ("waitlisted", 1),
        ("waitlisted", 2),
        ("waitlisted", 3),
    ]
    assert states(activity.id)[3:] == [
        ("u303", "waitlisted", 1),
        ("u304", "waitlisted", 2),
        ("u305", "waitlisted", 3),
    ]


def test_cancelling_a_seat_promotes_the_first_waiting_and_tells_them(make_activity, staff):
    activity = make_activity("10", capacity=2)
    for p in staff[:5]:
        sign_up(activity.id, p, actor="test")

    cancel_signup(activity.id, staff[0], actor="test")
    db.session.commit()

    assert states(activity.id) == [
        ("u301", "registered", None),
        ("u302", "registered", None),
        ("u303", "waitlisted", 1),
        ("u304", "waitlisted", 2),
        ("u300", "cancelled", None),
    ]
    told = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "signup.promoted")
    ).all()
    assert [m.person_id for m in told] == [staff[2].id]


def test_cancelling_a_waiting_place_moves_those_behind_forward(make_activity, staff):
    activity = make_activity("10", capacity=1)
    for p in staff[:4]:
        sign_up(activity.id, p, actor="test")

    cancel_signup(activity.id, staff[2], actor="test")

    assert states(activity.id)[:3] == [
        ("u300", "registered", None),
        ("u301", "waitlisted", 1),
        ("u303", "waitlisted", 2),
    ]


def test_raising_the_capacity_promotes_in_order(make_activity, staff):
    activity = make_activity("10", capacity=1)
    for p in staff[:4]:
        sign_up(activity.id, p, actor="test")

    set_capacity(activity.id, 3, actor="test")

    assert states(activity.id) == [
        ("u300", "registered", None),
        ("u301", "registered", None),
        ("u302", "registered", None),
        ("u303", "waitlisted", 1),
    ]
    with pytest.raises(Conflict, match="3 persons are registered"):
        set_capacity(activity.id, 2, actor="test")


def test_no_promotion_once_signup_has_closed(make_activity, staff):
    activity = make_activity("10", capacity=1)
    for p in staff[:2]:
        sign_up(activity.id, p, actor="test")
    activity.signup_deadline_at = utcnow() - timedelta(minutes=1)
    db.session.commit()

    cancel_signup(activity.id, staff[0], actor="test")

    assert states(activity.id)[0] == ("u301", "waitlisted", 1)


def test_signup_after_the_deadline_is_refused_with_the_time(make_activity, person):
    activity = make_activity("10", signup_deadline_at=utcnow() - timedelta(hours=1))

    with pytest.raises(UserError, match=r"Signup closed at \d{4}-\d\d-\d\d \d\d:\d\d CES?T"):
        sign_up(activity.id, person("anna"), actor="test")


def test_signup_before_opening_is_refused(make_activity, person):
    activity = make_activity("10", signup_opens_at=utcnow() + timedelta(days=1))

    with pytest.raises(UserError, match="Signup opens at"):
        sign_up(activity.id, person("anna"), actor="test")


def test_a_draft_takes_no_signups(make_activity, person):
    activity = make_activity("10", publish=False)

    with pytest.raises(UserError, match="draft"):
        sign_up(activity.id, person("anna"), actor="test")


def test_one_signup_per_person_and_activity(make_activity, person):
    activity = make_activity("10")
    sign_up(activity.id, person("anna"), actor="test")

    with pytest.raises(Conflict, match="signed up already"):
        sign_up(activity.id, person("anna"), actor="test")
    db.session.add(
        Signup(
            activity_id=activity.id,
            person_id=person("anna").id,
            status="registered",
            signed_up_by="x",
        )
    )
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_a_cancelled_person_may_sign_up_again_at_the_end(make_activity, staff):
    activity = make_activity("10", capacity=1)
    for p in staff[:3]:
        sign_up(activity.id, p, actor="test")
    cancel_signup(activity.id, staff[1], actor="test")

    again = sign_up(activity.id, staff[1], actor="test")

    assert (again.status, again.position) == ("waitlisted", 2)


def test_an_inactive_person_cannot_sign_up(make_activity, person):
    activity = make_activity("10")
    anna = person("anna")
    anna.is_active = False

    with pytest.raises(UserError, match="inactive"):
        sign_up(activity.id, anna, actor="test")


def test_a_person_of_another_branch_cannot_sign_up(make_activity, person):
    activity = make_activity("11")

    with pytest.raises(UserError, match="not offered"):
        sign_up(activity.id, person("bo"), actor="test")


def test_history_stays_when_a_sync_inactivates_the_person(make_activity, person, acme, import_csv):
    activity = make_activity("10")
    signup = sign_up(activity.id, person("anna"), actor="test")
    db.session.commit()

    run = import_csv(acme, UNITS, [row for row in PERSONS if row[0] != "u111"])

    assert run.status == "applied"
    assert person("anna").is_active is False
    assert db.session.get(Signup, signup.id).status == "registered"
    assert states(activity.id) == [("u111", "registered", None)]


def test_signup_writes_audit_outbox_and_one_log_line(make_activity, person, caplog):
    activity = make_activity("10")
    caplog.set_level(logging.INFO, logger="portal.courses.operations")
    caplog.clear()  # only what signing up logs

    signup = sign_up(activity.id, person("anna"), actor="account:u101")

    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "signup.registered"))
    assert (entry.actor, entry.object_id) == ("account:u101", str(signup.id))
    assert db.session.scalar(select(OutboxMessage.kind)) == "signup.registered"
    lines = [r.getMessage() for r in caplog.records if r.name == "portal.courses.operations"]
    assert lines == [f"signup {signup.id} on activity {activity.id} by account:u101: registered"]
    assert "Anna" not in lines[0] and "u111" not in lines[0]


def test_catalogue_is_the_unit_and_its_ancestors_published(make_activity, person):
    company = make_activity(None, title="Company day")
    sales = make_activity("10", title="Selling")
    make_activity("12", title="South only")
    make_activity("20", title="Budgets")
    make_activity("11", title="Draft", publish=False)

    shown = db.session.scalars(catalogue(person("anna").unit)).all()

    assert {a.title for a in shown} == {company.title, sales.title}
    assert db.session.scalars(catalogue(person("anna").unit, text="sell")).all() == [sales]
    total = db.session.scalar(
        select(func.count()).select_from(catalogue(person("dina").unit).subquery())
    )
    assert total == 2  # the company day and Budgets


def test_the_organiser_cancelling_tells_everyone_signed_up(make_activity, staff):
    activity = make_activity("10", capacity=1)
    for p in staff[:3]:
        sign_up(activity.id, p, actor="test")
    cancel_signup(activity.id, staff[2], actor="test")

    cancel_activity(activity.id, actor="test", reason="The trainer is ill.")

    told = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "activity.cancelled")
    ).all()
    assert sorted(m.person_id for m in told) == [staff[0].id, staff[1].id]
    assert told[0].payload == {"reason": "The trainer is ill."}
    assert [s for _, s, _ in states(activity.id)] == ["registered", "waitlisted", "cancelled"]
    with pytest.raises(UserError, match="cancelled"):
        sign_up(activity.id, staff[3], actor="test")


def test_categories_and_templates_are_owned_by_a_unit(unit, acme):
    safety = create_category(unit("10"), "Safety", actor="test")
    first_aid = create_category(unit("10"), "First aid", parent=safety, actor="test")
    template = create_template(
        unit("10"),
        "First aid basics",
        capacity=12,
        duration_minutes=180,
        actor="test",
        category_id=first_aid.id,
        default_location="Hall B",
    )

    assert (first_aid.parent_id, first_aid.owner_unit_id) == (safety.id, unit("10").id)
    assert (template.category.name, template.capacity) == ("First aid", 12)
    with pytest.raises(UserError, match="needs a name"):
        create_category(unit("10"), "  ", actor="test")
