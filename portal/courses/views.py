"""Course pages: the employee's catalogue, an activity, my activities; the course admin's list,
new activity, participants and attendance. Every lookup goes through portal.core.access."""

from datetime import datetime, time, timedelta
from decimal import Decimal

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import func, select
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
from portal.core.db import db, utcnow
from portal.core.errors import NotFound, UserError
from portal.courses import setup_views
from portal.courses.exports import participants_csv, participants_xlsx
from portal.courses.models import (
    SEAT_HOLDING,
    Activity,
    ActivityTemplate,
    Category,
    Signup,
    SignupStatus,
)
from portal.courses.operations import (
    cancel_activity,
    cancel_signup,
    complete_activity,
    create_activity,
    publish_activity,
    record_attendance,
    sign_up,
    update_activity,
)
from portal.courses.queries import (
    catalogue,
    my_signups,
    person_by_username,
    signups_in_order,
    with_free_seats,
)
from portal.courses.times import parse_local, shown, zone_of
from portal.directory.models import Customer, OrgUnit, Person
from portal.web import add_person_panel, paginate

bp = Blueprint("courses", __name__, url_prefix="/courses")
PER_PAGE = 25
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HISTORY_SHOWN = 50


class ActionForm(FlaskForm):
    """A button that changes something: it carries only the CSRF token."""


class CatalogueForm(FlaskForm):
    """Read through GET, so it carries no CSRF token: it changes nothing."""

    class Meta:
        csrf = False

    q = StringField("Search")
    category = SelectField("Category", choices=[], validate_choice=False)
    location = StringField("Location")
    date = StringField("From date")
    free = BooleanField("Free seats only")


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


STATUS_ACTIONS = {
    "publish": (publish_activity, "The activity is published."),
    "cancel": (cancel_activity, "The activity is cancelled; everyone signed up is told."),
    "complete": (complete_activity, "The activity is marked completed."),
}


class AttendanceForm(FlaskForm):
    status = SelectField(
        "Attendance",
        choices=[
            SelectChoice("attended", "Attended"),
            SelectChoice("no_show", "No-show"),
            SelectChoice("completed", "Completed"),
        ],
    )


@bp.app_template_filter("zoned")
def zoned(value: datetime | None, customer: Customer | None = None) -> str:
    return shown(value, zone_of(customer))


@bp.route("/")
@login_required
def catalogue_page():
    me = _me()
    form = CatalogueForm(formdata=request.args)
    if me is None:
        return render_template("courses/catalogue.html", me=None, form=form, page=None)
    form.category.choices = [SelectChoice("", "All")] + [
        SelectChoice(str(c.id), c.name)
        for c in db.session.scalars(
            select(Category).where(Category.customer_id == me.customer_id).order_by(Category.name)
        )
    ]
    query = catalogue(
        me.unit,
        text=form.q.data or "",
        category_id=int(form.category.data) if (form.category.data or "").isdigit() else None,
        location=form.location.data or "",
        starts_from=_day_start(form.date.data, me.customer) or utcnow(),
    )
    if form.free.data:
        query = with_free_seats(query)
    page = paginate(query, PER_PAGE)
    return render_template(
        "courses/catalogue.html",
        me=me,
        form=form,
        page=page,
        taken=_seats_taken([a.id for a in page.items]),
        mine=_my_statuses(me, [a.id for a in page.items]),
    )


@bp.route("/mine")
@login_required
def mine():
    me = _me()
    rows = []
    if me is not None:
        rows = db.session.scalars(my_signups(me).options(selectinload(Signup.activity))).all()
    return render_template("courses/mine.html", me=me, rows=rows, form=ActionForm())


@bp.route("/activities/<int:activity_id>")
@login_required
def activity(activity_id: int):
    activity = access.get_visible(current_user, Activity, activity_id)
    me = _me()
    manages = access.may_manage(current_user, activity)
    return render_template(
        "courses/activity.html",
        activity=activity,
        customer=db.session.get(Customer, activity.customer_id),
        taken=_seats_taken([activity.id]).get(activity.id, 0),
        my_signup=_my_signup(me, activity),
        signups=signups_in_order(activity.id) if manages else [],
        manages=manages,
        signs_up_others=manages or bool(access.scope_of(current_user).grants),
        form=ActionForm(),
        attendance=AttendanceForm(),
    )


@bp.route("/activities/<int:activity_id>/signup", methods=["POST"])
@login_required
def signup(activity_id: int):
    activity = access.get_visible(current_user, Activity, activity_id)
    who = _person_for(activity) if request.form.get("username") else _me()
    if who is None or not ActionForm().validate_on_submit():
        raise UserError("Only staff can sign up; reload the page and try again.")
    try:
        result = sign_up(activity.id, who, actor=current_user.actor)
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(_signup_message(result), "info")
    return redirect(url_for("courses.activity", activity_id=activity.id))


@bp.route("/activities/<int:activity_id>/cancel", methods=["POST"])
@login_required
def cancel(activity_id: int):
    activity = access.get_visible(current_user, Activity, activity_id)
    me = _me()
    if me is None or not ActionForm().validate_on_submit():
        raise UserError("Only staff can cancel a signup; reload the page and try again.")
    try:
        cancel_signup(activity.id, me, actor=current_user.actor)
        db.session.commit()
        flash("Your signup is cancelled.", "info")
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    if request.form.get("back") == "mine":
        return redirect(url_for("courses.mine"))
    return redirect(url_for("courses.activity", activity_id=activity.id))


@bp.route("/activities/<int:activity_id>/participants.<any(csv, xlsx):kind>")
@login_required
def participants(activity_id: int, kind: str):
    """The participant list for course admins of the activity's branch (404 for others)."""
    activity = access.get_visible(current_user, Activity, activity_id)
    if not access.may_manage(current_user, activity):
        raise NotFound(access.HIDDEN)
    if kind == "csv":
        body, mimetype = participants_csv(activity), "text/csv"
    else:
        body, mimetype = participants_xlsx(activity), XLSX
    name = f"participants-{activity.id}.{kind}"
    return Response(
        body, mimetype=mimetype, headers={"Content-Disposition": f"attachment; filename={name}"}
    )


@bp.route("/signups/<int:signup_id>")
@login_required
def signup_page(signup_id: int):
    signup = access.get_visible(current_user, Signup, signup_id)
    return render_template(
        "courses/signup.html",
        signup=signup,
        customer=db.session.get(Customer, signup.activity.customer_id),
        manages=access.may_manage(current_user, signup.activity),
        attendance=AttendanceForm(),
    )


@bp.route("/signups/<int:signup_id>/attendance", methods=["POST"])
@login_required
def attendance(signup_id: int):
    signup = access.get_visible(current_user, Signup, signup_id)
    if not access.may_manage(current_user, signup.activity):
        raise NotFound(access.HIDDEN)
    form = AttendanceForm()
    if form.validate_on_submit():
        record_attendance(signup, form.status.data, actor=current_user.actor)
        db.session.commit()
        flash("Attendance recorded.", "info")
    return redirect(url_for("courses.activity", activity_id=signup.activity_id))


@bp.route("/manage")
@login_required
def manage():
    query = (
        select(Activity)
        .options(selectinload(Activity.owner_unit))
        .where(access.visible_activity_condition(current_user, access.COURSE_MANAGERS))
        .order_by(Activity.starts_at.desc(), Activity.id.desc())
    )
    page = paginate(query, PER_PAGE)
    return render_template(
        "courses/manage.html", page=page, taken=_seats_taken([a.id for a in page.items])
    )


@bp.route("/manage/new", methods=["GET", "POST"])
@login_required
def new_activity():
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


@bp.route("/manage/activities/<int:activity_id>/edit", methods=["GET", "POST"])
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


@bp.route("/manage/activities/<int:activity_id>/status", methods=["POST"])
@login_required
def activity_status(activity_id: int):
    """Publish, cancel (everyone signed up is told) or mark completed."""
    activity = _managed(activity_id)
    action = STATUS_ACTIONS.get(request.form.get("action", ""))
    if action is None or not ActionForm().validate_on_submit():
        raise UserError("Choose publish, cancel or complete; reload the page and try again.")
    operation, message = action
    try:
        operation(activity.id, actor=current_user.actor)
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


def _me() -> Person | None:
    """The person the logged-in account is (platform admins usually are nobody)."""
    person_id = getattr(current_user, "person_id", None)
    return db.session.get(Person, person_id) if person_id else None


def _person_for(activity: Activity) -> Person:
    """The person HR or a course admin signs up: one of their branch, for an activity they
    see; sign_up then checks that it is offered to the person's unit."""
    person = person_by_username(request.form["username"])
    if person is None:
        raise NotFound("There is no person with that username, or it is not yours to see.")
    person = access.get_visible(current_user, Person, person.id)
    if person.id != current_user.person_id and not access.may_sign_up_others(current_user, person):
        raise NotFound(access.HIDDEN)
    return person


def _seats_taken(activity_ids: list[int]) -> dict[int, int]:
    if not activity_ids:
        return {}
    rows = db.session.execute(
        select(Signup.activity_id, func.count())
        .where(Signup.activity_id.in_(activity_ids), Signup.status.in_(SEAT_HOLDING))
        .group_by(Signup.activity_id)
    )
    return dict(rows.all())


def _my_statuses(me: Person, activity_ids: list[int]) -> dict[int, str]:
    if not activity_ids:
        return {}
    rows = db.session.execute(
        select(Signup.activity_id, Signup.status).where(
            Signup.person_id == me.id,
            Signup.activity_id.in_(activity_ids),
            Signup.status != SignupStatus.CANCELLED,
        )
    )
    return dict(rows.all())


def _my_signup(me: Person | None, activity: Activity) -> Signup | None:
    if me is None:
        return None
    return db.session.scalar(
        select(Signup).where(Signup.activity_id == activity.id, Signup.person_id == me.id)
    )


def _signup_message(signup: Signup) -> str:
    if signup.status == SignupStatus.WAITLISTED:
        return f"All seats are taken: number {signup.position} on the waiting list."
    return "Signed up: the seat is yours."


def _day_start(text: str | None, customer: Customer) -> datetime | None:
    """Midnight of a typed date (YYYY-MM-DD) in the customer's zone, as UTC."""
    if not text:
        return None
    try:
        day = datetime.fromisoformat(text.strip()).date()
    except ValueError:
        return None
    return datetime.combine(day, time(), tzinfo=zone_of(customer))


def person_courses(person) -> Markup | None:
    """The person page's section: the person's signups, newest activity first, history too."""
    rows = db.session.scalars(
        my_signups(person).options(selectinload(Signup.activity)).limit(HISTORY_SHOWN)
    ).all()
    if not rows:
        return None
    return Markup(render_template("courses/person_panel.html", rows=rows, person=person))


def _attach(state) -> None:
    add_person_panel(state.app, person_courses)
    state.app.register_blueprint(setup_views.bp)  # categories and templates


bp.record_once(_attach)
