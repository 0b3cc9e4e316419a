"""State changes of courses: activities, signups, the waiting list and its promotions.

Seats are counted and taken under a lock on the activity's row in the database, so two
processes (or gunicorn nodes) can never both take the last seat: `SELECT ... FOR UPDATE` on
PostgreSQL; on SQLite an UPDATE of the row as the transaction's first statement, which takes
the database's write lock (and waits for it, busy_timeout) before anything is read.
"""

import logging
from datetime import datetime

from sqlalchemy import func, select, update

from portal.core import audit
from portal.core.db import db, utcnow
from portal.core.errors import Conflict, NotFound, UserError
from portal.courses.models import (
    SEAT_HOLDING,
    Activity,
    ActivityStatus,
    ActivityTemplate,
    Category,
    OutboxMessage,
    Signup,
    SignupStatus,
)
from portal.courses.queries import audience_unit_ids
from portal.courses.times import shown, zone_of
from portal.directory.models import Customer, OrgUnit, Person

logger = logging.getLogger(__name__)


def create_activity(
    unit: OrgUnit,
    *,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    capacity: int | None = None,
    template: ActivityTemplate | None = None,
    publish: bool = False,
    actor: str,
    **fields,
) -> Activity:
    """An activity owned by `unit`; what is not given comes from `template`."""
    if template is not None:
        fields.setdefault("description", template.description)
        fields.setdefault("location", template.default_location)
        fields.setdefault("price", template.price)
        fields.setdefault("category_id", template.category_id)
        capacity = capacity if capacity is not None else template.capacity
        title = title or template.title
    if not (title or "").strip():
        raise UserError("The activity needs a title.")
    if capacity is None or capacity < 1:
        raise UserError("The capacity must be at least 1.")
    if ends_at <= starts_at:
        raise UserError("The activity must end after it starts.")

    activity = Activity(
        customer_id=unit.customer_id,
        owner_unit_id=unit.id,
        template_id=template.id if template else None,
        title=title.strip(),
        starts_at=starts_at,
        ends_at=ends_at,
        capacity=capacity,
        status=(ActivityStatus.PUBLISHED if publish else ActivityStatus.DRAFT).value,
        **fields,
    )
    db.session.add(activity)
    db.session.flush()
    audit.record(actor, "activity.created", "activity", activity.id, status=activity.status)
    logger.info("activity %s created by %s (%s)", activity.id, actor, activity.status)
    return activity


def create_category(
    unit: OrgUnit, name: str, *, actor: str, parent: Category | None = None
) -> Category:
    """A category owned by `unit`, under `parent` (of the same customer) when given."""
    if not name.strip():
        raise UserError("The category needs a name.")
    if parent is not None and parent.customer_id != unit.customer_id:
        raise UserError("A category's parent must belong to the same customer.")
    category = Category(
        customer_id=unit.customer_id,
        owner_unit_id=unit.id,
        parent_id=parent.id if parent else None,
        name=name.strip(),
    )
    db.session.add(category)
    db.session.flush()
    audit.record(actor, "category.created", "category", category.id, unit=unit.id)
    logger.info("category %s created by %s", category.id, actor)
    return category


def create_template(unit: OrgUnit, title: str, *, actor: str, **fields) -> ActivityTemplate:
    """A template owned by `unit`: title, description, duration, capacity, price, location."""
    if not title.strip():
        raise UserError("The template needs a title.")
    if (fields.get("capacity") or 1) < 1:
        raise UserError("The capacity must be at least 1.")
    template = ActivityTemplate(
        customer_id=unit.customer_id, owner_unit_id=unit.id, title=title.strip(), **fields
    )
    db.session.add(template)
    db.session.flush()
    audit.record(actor, "template.created", "activity_template", template.id, unit=unit.id)
    logger.info("activity template %s created by %s", template.id, actor)
    return template


def publish_activity(activity_id: int, *, actor: str) -> Activity:
    activity = lock_activity(activity_id)
    if activity.status != ActivityStatus.DRAFT:
        raise Conflict(f"The activity is {activity.status}; only a draft can be published.")
    activity.status = ActivityStatus.PUBLISHED.value
    db.session.flush()
    audit.record(actor, "activity.published", "activity", activity.id)
    logger.info("activity %s published by %s", activity.id, actor)
    return activity


def cancel_activity(activity_id: int, *, actor: str, reason: str = "") -> Activity:
    """The organiser cancels: every registered and waiting person is told; signups stay, so
    the history shows what was planned."""
    activity = lock_activity(activity_id)
    if activity.status in (ActivityStatus.CANCELLED, ActivityStatus.COMPLETED):
        raise Conflict(f"The activity is {activity.status} already.")
    activity.status = ActivityStatus.CANCELLED.value
    told = db.session.scalars(
        select(Signup).where(
            Signup.activity_id == activity.id,
            Signup.status.in_((SignupStatus.REGISTERED, SignupStatus.WAITLISTED)),
        )
    ).all()
    for signup in told:
        _notify("activity.cancelled", signup, reason=reason)
    db.session.flush()
    audit.record(actor, "activity.cancelled", "activity", activity.id, told=len(told))
    logger.info("activity %s cancelled by %s; %s persons told", activity.id, actor, len(told))
    return activity


def complete_activity(activity_id: int, *, actor: str) -> Activity:
    """Mark a published activity as held."""
    activity = lock_activity(activity_id)
    if activity.status != ActivityStatus.PUBLISHED:
        raise Conflict(f"The activity is {activity.status}; only a published one can complete.")
    activity.status = ActivityStatus.COMPLETED.value
    db.session.flush()
    audit.record(actor, "activity.completed", "activity", activity.id)
    logger.info("activity %s completed by %s", activity.id, actor)
    return activity


EDITABLE = frozenset(
    {
        "title",
        "description",
        "starts_at",
        "ends_at",
        "location",
        "min_participants",
        "signup_opens_at",
        "signup_deadline_at",
        "cancellation_deadline_at",
        "price",
        "instructor",
    }
)


def update_activity(
    activity_id: int, *, actor: str, capacity: int | None = None, **fields
) -> Activity:
    """Change an activity's details. A new capacity goes through set_capacity: raising it
    promotes from the waiting list, going below the registered count is refused."""
    unknown = set(fields) - EDITABLE
    if unknown:
        raise ValueError(f"Not editable: {sorted(unknown)}")
    activity = lock_activity(activity_id)
    if activity.status in (ActivityStatus.CANCELLED, ActivityStatus.COMPLETED):
        raise Conflict(f"The activity is {activity.status}: it cannot be changed.")
    if "title" in fields:
        fields["title"] = (fields["title"] or "").strip()
        if not fields["title"]:
            raise UserError("The activity needs a title.")
    if fields.get("starts_at", activity.starts_at) >= fields.get("ends_at", activity.ends_at):
        raise UserError("The activity must end after it starts.")
    if (fields.get("min_participants") or 0) < 0:
        raise UserError("The minimum number of participants cannot be negative.")

    changed = sorted(k for k, v in fields.items() if getattr(activity, k) != v)
    for key in changed:
        setattr(activity, key, fields[key])
    db.session.flush()
    if changed:
        audit.record(actor, "activity.updated", "activity", activity.id, fields=changed)
        logger.info("activity %s updated by %s: %s", activity.id, actor, ", ".join(changed))
    if capacity is not None and capacity != activity.capacity:
        set_capacity(activity.id, capacity, actor=actor)
    return activity


def lock_activity(activity_id: int) -> Activity:
    """The activity, locked until the transaction ends (see the module's docstring)."""
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(
            update(Activity).where(Activity.id == activity_id).values(updated_at=utcnow())
        )
    activity = db.session.scalar(
        select(Activity)
        .where(Activity.id == activity_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if activity is None:
        raise NotFound(f"There is no activity {activity_id}.")
    return activity


def sign_up(activity_id: int, person: Person, *, actor: str) -> Signup:
    """Register `person`, or put them at the end of the waiting list when every seat is taken.

    Refused (UserError, with the reason) when the activity is not published, signup is not
    open, the person is inactive, outside the activity's audience or signed up already.
    """
    audience = audience_unit_ids(person.unit)  # read before the lock: less time holding it
    activity = lock_activity(activity_id)
    _check_may_sign_up(activity, person, audience)
    signup = db.session.scalar(
        select(Signup).where(Signup.activity_id == activity.id, Signup.person_id == person.id)
    )
    if signup is not None and signup.status != SignupStatus.CANCELLED:
        raise Conflict(f"{person.username} is signed up already ({signup.status}).")

    taken, last = _seats_and_last_position(activity.id)
    if taken < activity.capacity:
        status, position = SignupStatus.REGISTERED, None
    else:
        status, position = SignupStatus.WAITLISTED, last + 1
    if signup is None:
        signup = Signup(activity_id=activity.id, person_id=person.id)
        db.session.add(signup)
    signup.status, signup.position, signup.signed_up_by = status.value, position, actor
    db.session.flush()

    _notify(f"signup.{status.value}", signup, position=position)
    audit.record(actor, f"signup.{status.value}", "signup", signup.id, activity=activity.id)
    logger.info("signup %s on activity %s by %s: %s", signup.id, activity.id, actor, status)
    return signup


def cancel_signup(activity_id: int, person: Person, *, actor: str) -> Signup:
    """Cancel `person`'s signup; a freed seat goes to the first on the waiting list."""
    activity = lock_activity(activity_id)
    signup = db.session.scalar(
        select(Signup).where(Signup.activity_id == activity.id, Signup.person_id == person.id)
    )
    if signup is None or signup.status not in (SignupStatus.REGISTERED, SignupStatus.WAITLISTED):
        raise UserError(f"{person.username} has no signup to cancel on this activity.")
    deadline = activity.cancellation_deadline_at
    if deadline is not None and utcnow() > deadline:
        raise UserError(f"Cancelling closed at {_shown(activity, deadline)}.")

    was, position = signup.status, signup.position
    signup.status, signup.position = SignupStatus.CANCELLED.value, None
    db.session.flush()
    if was == SignupStatus.WAITLISTED:
        _close_gap(activity.id, position)
    else:
        promote_waiting(activity, actor=actor)

    audit.record(actor, "signup.cancelled", "signup", signup.id, activity=activity.id, was=was)
    logger.info("signup %s on activity %s cancelled by %s", signup.id, activity.id, actor)
    return signup


def set_capacity(activity_id: int, capacity: int, *, actor: str) -> Activity:
    """Change the number of seats; raising it promotes from the waiting list."""
    activity = lock_activity(activity_id)
    if capacity < 1:
        raise UserError("The capacity must be at least 1.")
    taken = seats_taken(activity.id)
    if capacity < taken:
        raise Conflict(f"{taken} persons are registered: the capacity cannot go below that.")

    before, activity.capacity = activity.capacity, capacity
    db.session.flush()
    promote_waiting(activity, actor=actor)
    audit.record(actor, "activity.capacity_set", "activity", activity.id, before=before)
    logger.info("activity %s capacity %s -> %s by %s", activity.id, before, capacity, actor)
    return activity


def promote_waiting(activity: Activity, *, actor: str) -> list[Signup]:
    """Fill free seats from the waiting list, first come first served, while signup is open.

    The caller holds the activity's lock. Each promoted person is told through the outbox.
    """
    if activity.status != ActivityStatus.PUBLISHED or utcnow() > activity.signup_deadline():
        return []
    free = activity.capacity - seats_taken(activity.id)
    if free <= 0:
        return []
    promoted = list(
        db.session.scalars(
            select(Signup)
            .where(Signup.activity_id == activity.id, Signup.status == SignupStatus.WAITLISTED)
            .order_by(Signup.position, Signup.id)
            .limit(free)
        )
    )
    for signup in promoted:
        signup.status, signup.position = SignupStatus.REGISTERED.value, None
    db.session.flush()
    if promoted:
        db.session.execute(
            update(Signup)
            .where(Signup.activity_id == activity.id, Signup.status == SignupStatus.WAITLISTED)
            .values(position=Signup.position - len(promoted))
        )
    for signup in promoted:
        _notify("signup.promoted", signup)
        audit.record(actor, "signup.promoted", "signup", signup.id, activity=activity.id)
        logger.info(
            "signup %s on activity %s promoted from the waiting list", signup.id, activity.id
        )
    return promoted


def seats_taken(activity_id: int) -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(Signup)
        .where(Signup.activity_id == activity_id, Signup.status.in_(SEAT_HOLDING))
    )


def _seats_and_last_position(activity_id: int) -> tuple[int, int]:
    """Seats taken, and the last waiting position (0 when nobody waits): one query."""
    seat = Signup.status.in_(SEAT_HOLDING)
    waiting = Signup.status == SignupStatus.WAITLISTED
    taken, last = db.session.execute(
        select(
            func.count().filter(seat),
            func.max(Signup.position).filter(waiting),
        ).where(Signup.activity_id == activity_id)
    ).one()
    return taken, last or 0


def _close_gap(activity_id: int, position: int | None) -> None:
    """Move everyone behind a cancelled waiting position one step forward."""
    if position is None:
        return
    db.session.execute(
        update(Signup)
        .where(
            Signup.activity_id == activity_id,
            Signup.status == SignupStatus.WAITLISTED,
            Signup.position > position,
        )
        .values(position=Signup.position - 1)
    )


def _check_may_sign_up(activity: Activity, person: Person, audience: list[int]) -> None:
    now = utcnow()
    if not person.is_active:
        raise UserError(f"{person.username} is inactive and cannot sign up.")
    if activity.status != ActivityStatus.PUBLISHED:
        raise UserError(f"The activity is {activity.status}: it takes no signups.")
    if activity.signup_opens_at is not None and now < activity.signup_opens_at:
        raise UserError(f"Signup opens at {_shown(activity, activity.signup_opens_at)}.")
    if now > activity.signup_deadline():
        raise UserError(f"Signup closed at {_shown(activity, activity.signup_deadline())}.")
    if person.customer_id != activity.customer_id or activity.owner_unit_id not in audience:
        raise UserError(f"The activity is not offered to {person.username}'s unit.")


def _shown(activity: Activity, value: datetime) -> str:
    """`value` in the activity's customer's zone, for a message."""
    return shown(value, zone_of(db.session.get(Customer, activity.customer_id)))


def _notify(kind: str, signup: Signup, **payload) -> None:
    db.session.add(
        OutboxMessage(
            kind=kind, person_id=signup.person_id, activity_id=signup.activity_id, payload=payload
        )
    )


ATTENDANCE = (SignupStatus.ATTENDED, SignupStatus.NO_SHOW, SignupStatus.COMPLETED)


def record_attendance(signup: Signup, status: str, *, actor: str) -> Signup:
    """Mark a registered person as attended, no-show or completed (the seat stays theirs), once
    the activity has started: before, nobody has attended or failed to."""
    if status not in {s.value for s in ATTENDANCE}:
        raise UserError("Attendance is one of: attended, no_show, completed.")
    if signup.status not in SEAT_HOLDING:
        raise UserError(f"Only registered persons have attendance; this signup is {signup.status}.")
    activity = signup.activity
    if utcnow() < activity.starts_at:
        raise UserError(
            "Attendance can be recorded once the activity has started, "
            f"at {_shown(activity, activity.starts_at)}."
        )

    before, signup.status = signup.status, status
    db.session.flush()
    audit.record(actor, "signup.attendance", "signup", signup.id, before=before, after=status)
    logger.info("signup %s attendance %s -> %s by %s", signup.id, before, status, actor)
    return signup
