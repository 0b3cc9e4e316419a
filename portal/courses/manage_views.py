"""Course admins' activity pages: the list they manage, a new activity (from a template or
not), editing, and publish / cancel / complete.

The routes live on the courses blueprint (`courses.manage`, `courses.edit_activity`, ...), so
addresses and endpoint names are the same as the employee pages'; app.py imports this module
before it registers the blueprint. Everything outside the user's branch answers 404.
"""

from datetime import datetime, timedelta
from decimal import Decimal

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import (
    BooleanField,
    DecimalField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, NumberRange, Optional

from portal.core import access
from portal.core.db import db
from portal.core.errors import NotFound, UserError
from portal.courses.models import Activity, ActivityTemplate
from portal.courses.operations import (
    cancel_activity,
    complete_activity,
    create_activity,
    publish_activity,
    update_activity,
)
from portal.courses.times import parse_local, zone_of
from portal.courses.views import PER_PAGE, ActionForm, bp, seats_taken
from portal.directory.models import Customer, OrgUnit
from portal.web import paginate


class ActivityForm(FlaskForm):
    template = SelectField("From template", choices=[], validate_choice=False)
    unit = StringField("Owner unit number", validators=[DataRequired()])
    title = StringField("Title", validators=[DataRequired()])
    description = TextAreaField("Description")
    start = StringField("Starts", validators=[DataRequired()])
    end = StringField("Ends (empty: start plus the template's duration)")
    location = StringField("Location")
    capacity = IntegerField("Seats", validators=[Optional(), NumberRange(min=1)])
    price = DecimalField("Price", places=2, validators=[Optional(), NumberRange(min=0)])
    publish = BooleanField("Publish now (else a draft)")


class EditActivityForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired()])
    description = TextAreaField("Description")
    start = StringField("Starts", validators=[DataRequired()])
    end = StringField("Ends", validators=[DataRequired()])
    location = StringField("Location")
    capacity = IntegerField("Seats", validators=[DataRequired(), NumberRange(min=1)])
    min_participants = IntegerField(
        "Minimum participants", validators=[Optional(), NumberRange(min=0)]
    )
    signup_opens = StringField("Signup opens (empty: now)")
    signup_deadline = StringField("Signup deadline (empty: the start)")
    cancellation_deadline = StringField("Cancellation deadline (empty: none)")
    price = DecimalField("Price", places=2, validators=[Optional(), NumberRange(min=0)])
    instructor = StringField("Instructor")


NOT_MANAGER = "Only course admins manage activities."
MAX_REASON = 500  # characters of the cancellation reason that reach the participants' mail
STATUS_ACTIONS = {
    "publish": (publish_activity, "The activity is published."),
    "cancel": (cancel_activity, "The activity is cancelled; everyone signed up is told."),
    "complete": (complete_activity, "The activity is marked completed."),
}


@bp.route("/manage")
@login_required
def manage():
    access.require(current_user, access.COURSE_MANAGERS, NOT_MANAGER)
    query = (
        select(Activity)
        .options(selectinload(Activity.owner_unit))
        .where(access.visible_activity_condition(current_user, access.COURSE_MANAGERS))
        .order_by(Activity.starts_at.desc(), Activity.id.desc())
    )
    page = paginate(query, PER_PAGE)
    return render_template(
        "courses/manage.html", page=page, taken=seats_taken([a.id for a in page.items])
    )


@bp.route("/manage/new", methods=["GET", "POST"])
@login_required
def new_activity():
    access.require(current_user, access.COURSE_MANAGERS, NOT_MANAGER)
    form = ActivityForm()
    form.template.choices = [SelectChoice("", "(none)")] + [
        SelectChoice(str(t.id), t.title) for t in db.session.scalars(_managed_templates())
    ]
    picked = _picked_template(request.values.get("template"))
    if request.method == "GET" and picked is not None:
        _prefill(form, picked)
    if not form.validate_on_submit():
        return render_template("courses/new.html", form=form, picked=picked)
    customer = access.chosen_customer(current_user, request.form.get("customer"))
    unit = None
    if customer is not None:
        unit = db.session.scalar(
            select(OrgUnit).where(
                OrgUnit.customer_id == customer.id, OrgUnit.number == form.unit.data.strip()
            )
        )
    if unit is None or not access.scope_of(current_user).reaches(unit.path, access.COURSE_MANAGERS):
        form.unit.errors = ["You manage no unit with that number."]
        return render_template("courses/new.html", form=form, picked=picked)
    try:
        if picked is not None and picked.customer_id != unit.customer_id:
            raise UserError("Choose a template of the owner unit's customer.")
        zone = zone_of(customer)
        starts_at = parse_local(form.start.data, zone)
        created = create_activity(
            unit,
            title=form.title.data,
            starts_at=starts_at,
            ends_at=_ends_at(form.end.data, starts_at, picked, zone),
            capacity=form.capacity.data,
            template=picked,
            publish=form.publish.data,
            actor=current_user.actor,
            **_given(
                description=form.description.data,
                location=form.location.data,
                price=Decimal(form.price.data) if form.price.data is not None else None,
            ),
        )
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return render_template("courses/new.html", form=form, picked=picked)
    flash("The activity is created.", "info")
    return redirect(url_for("courses.activity", activity_id=created.id))


@bp.route("/manage/activities/<id:activity_id>/edit", methods=["GET", "POST"])
@login_required
def edit_activity(activity_id: int):
    """Course admins of the activity's branch change it (404 for everyone else)."""
    activity = _managed(activity_id)
    customer = db.session.get(Customer, activity.customer_id)
    zone = zone_of(customer)
    form = EditActivityForm(obj=None if request.method == "POST" else activity)
    if request.method == "GET":
        _fill_times(form, activity, zone)
    page = {"activity": activity, "customer": customer, "form": form, "actions": ActionForm()}
    if not form.validate_on_submit():
        return render_template("courses/edit.html", **page)
    try:
        update_activity(
            activity.id,
            actor=current_user.actor,
            capacity=form.capacity.data,
            title=form.title.data,
            description=form.description.data or "",
            starts_at=parse_local(form.start.data, zone),
            ends_at=parse_local(form.end.data, zone),
            location=form.location.data or "",
            min_participants=form.min_participants.data or 0,
            signup_opens_at=_optional_time(form.signup_opens.data, zone),
            signup_deadline_at=_optional_time(form.signup_deadline.data, zone),
            cancellation_deadline_at=_optional_time(form.cancellation_deadline.data, zone),
            price=Decimal(form.price.data) if form.price.data is not None else None,
            instructor=form.instructor.data or "",
        )
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return render_template("courses/edit.html", **page)
    flash("The activity is saved.", "info")
    return redirect(url_for("courses.activity", activity_id=activity.id))


@bp.route("/manage/activities/<id:activity_id>/status", methods=["POST"])
@login_required
def activity_status(activity_id: int):
    """Publish, cancel (everyone signed up is told) or mark completed."""
    activity = _managed(activity_id)
    action = STATUS_ACTIONS.get(request.form.get("action", ""))
    if action is None or not ActionForm().validate_on_submit():
        raise UserError("Choose publish, cancel or complete; reload the page and try again.")
    operation, message = action
    extra = {}
    if operation is cancel_activity:
        extra["reason"] = request.form.get("reason", "").strip()[:MAX_REASON]
    try:
        operation(activity.id, actor=current_user.actor, **extra)
        db.session.commit()
        flash(message, "info")
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("courses.edit_activity", activity_id=activity.id))


def _managed(activity_id: int) -> Activity:
    activity = access.get_visible(current_user, Activity, activity_id)
    if not access.may_manage(current_user, activity):
        raise NotFound(access.HIDDEN)
    return activity


def _managed_templates():
    """Templates owned in the branches the user is course admin of."""
    units = select(OrgUnit.id).where(
        access.visible_unit_condition(current_user, access.COURSE_MANAGERS)
    )
    return (
        select(ActivityTemplate)
        .where(ActivityTemplate.owner_unit_id.in_(units))
        .order_by(ActivityTemplate.title, ActivityTemplate.id)
    )


def _picked_template(value: str | None) -> ActivityTemplate | None:
    """The chosen template: one of the user's managed branches (else 404, like any object)."""
    if not value:
        return None
    template = access.get_visible(current_user, ActivityTemplate, value)
    if not access.may_manage(current_user, template):
        raise NotFound(access.HIDDEN)
    return template


def _prefill(form: ActivityForm, template: ActivityTemplate) -> None:
    form.template.data = str(template.id)
    form.title.data = form.title.data or template.title
    form.description.data = form.description.data or template.description
    form.capacity.data = form.capacity.data or template.capacity
    form.price.data = form.price.data if form.price.data is not None else template.price
    form.location.data = form.location.data or template.default_location


def _ends_at(text: str | None, starts_at: datetime, template, zone) -> datetime:
    if (text or "").strip():
        return parse_local(text, zone)
    if template is not None and template.duration_minutes:
        return starts_at + timedelta(minutes=template.duration_minutes)
    raise UserError("Enter when the activity ends (or pick a template with a duration).")


def _given(**fields) -> dict:
    """The fields typed in; the others come from the template."""
    return {k: v for k, v in fields.items() if v not in (None, "")}


def _fill_times(form: EditActivityForm, activity: Activity, zone) -> None:
    for field, value in (
        (form.start, activity.starts_at),
        (form.end, activity.ends_at),
        (form.signup_opens, activity.signup_opens_at),
        (form.signup_deadline, activity.signup_deadline_at),
        (form.cancellation_deadline, activity.cancellation_deadline_at),
    ):
        field.data = value.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if value else ""


def _optional_time(text: str | None, zone) -> datetime | None:
    return parse_local(text, zone) if (text or "").strip() else None
