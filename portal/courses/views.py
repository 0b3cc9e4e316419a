"""Course pages: the employee's catalogue, an activity, my activities, signing up and
cancelling; participants and attendance for course admins. Every lookup goes through
portal.core.access. The course admin's activity pages are in manage_views.py, on this
blueprint."""

from datetime import datetime, time

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from wtforms import (
    BooleanField,
    SelectChoice,
    SelectField,
    StringField,
)

from portal.core import access
from portal.core.db import db, utcnow
from portal.core.errors import NotFound, UserError
from portal.core.ids import parse_id
from portal.courses import setup_views
from portal.courses.exports import participants_csv, participants_xlsx
from portal.courses.models import (
    SEAT_HOLDING,
    Activity,
    Signup,
    SignupStatus,
)
from portal.courses.operations import (
    cancel_signup,
    record_attendance,
    sign_up,
)
from portal.courses.queries import (
    catalogue,
    catalogue_categories,
    my_signups,
    signups_in_order,
    with_free_seats,
)
from portal.courses.times import shown, zone_of
from portal.directory.models import Customer, Person
from portal.directory.queries import person_by_username
from portal.web import add_person_panel, paginate

bp = Blueprint("courses", __name__, url_prefix="/courses")
PER_PAGE = 25
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HISTORY_SHOWN = 50
NO_SUCH_PERSON = "No person with that username in your branch."


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
        SelectChoice(str(c.id), c.name) for c in db.session.scalars(catalogue_categories(me.unit))
    ]
    query = catalogue(
        me.unit,
        text=form.q.data or "",
        category_id=parse_id(form.category.data),
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
        taken=seats_taken([a.id for a in page.items]),
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


@bp.route("/activities/<id:activity_id>")
@login_required
def activity(activity_id: int):
    return _activity_page(access.get_visible(current_user, Activity, activity_id))


def _activity_page(activity: Activity, username_error: str | None = None):
    me = _me()
    manages = access.may_manage(current_user, activity)
    return render_template(
        "courses/activity.html",
        activity=activity,
        customer=db.session.get(Customer, activity.customer_id),
        taken=seats_taken([activity.id]).get(activity.id, 0),
        my_signup=_my_signup(me, activity),
        signups=signups_in_order(activity.id) if manages else [],
        manages=manages,
        signs_up_others=manages or bool(access.scope_of(current_user).grants),
        form=ActionForm(),
        attendance=AttendanceForm(),
        username_error=username_error,
    )


@bp.route("/activities/<id:activity_id>/signup", methods=["POST"])
@login_required
def signup(activity_id: int):
    activity = access.get_visible(current_user, Activity, activity_id)
    if request.form.get("username"):
        who = _person_for(request.form["username"])
        if who is None:
            return _activity_page(activity, username_error=NO_SUCH_PERSON)
    else:
        who = _me()
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


@bp.route("/activities/<id:activity_id>/cancel", methods=["POST"])
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


@bp.route("/activities/<id:activity_id>/participants.<any(csv, xlsx):kind>")
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


@bp.route("/signups/<id:signup_id>")
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


@bp.route("/signups/<id:signup_id>/attendance", methods=["POST"])
@login_required
def attendance(signup_id: int):
    signup = access.get_visible(current_user, Signup, signup_id)
    if not access.may_manage(current_user, signup.activity):
        raise NotFound(access.HIDDEN)
    form = AttendanceForm()
    if not form.validate_on_submit():
        raise UserError("Attendance is one of: attended, no-show, completed.")
    try:
        record_attendance(signup, form.status.data, actor=current_user.actor)
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash("Attendance recorded.", "info")
    return redirect(url_for("courses.activity", activity_id=signup.activity_id))


def _me() -> Person | None:
    """The person the logged-in account is, while active (see access.person_of)."""
    return access.person_of(current_user)


def _person_for(username: str) -> Person | None:
    """The person HR or a course admin signs up: one of their branch (None for anyone else,
    as for a username nobody has, so the answer tells nothing); sign_up then checks that the
    activity is offered to the person's unit."""
    person = person_by_username(username.strip())
    if person is None:
        return None
    me = _me()
    if (me is None or person.id != me.id) and not access.may_sign_up_others(current_user, person):
        return None
    return person


def seats_taken(activity_ids: list[int]) -> dict[int, int]:
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
