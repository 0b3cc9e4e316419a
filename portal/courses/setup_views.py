"""Course admins' setup pages: categories and templates of their branch (list and create).

Lists show what course admins and HR of the owner unit's branch see; creating needs the
course admin role at the owner unit (its branch), checked through portal.core.access.
"""

from decimal import Decimal

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import (
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
from portal.core.errors import UserError
from portal.core.ids import parse_id
from portal.courses.models import ActivityTemplate, Category
from portal.courses.operations import create_category, create_template
from portal.directory.models import Customer, OrgUnit

bp = Blueprint("course_setup", __name__, url_prefix="/courses/manage")


class CategoryForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired("Enter a name.")])
    unit = StringField("Owner unit number (empty: the whole customer)")
    parent = SelectField("Inside category", choices=[], validate_choice=False)


class TemplateForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired("Enter a title.")])
    unit = StringField("Owner unit number (empty: the whole customer)")
    category = SelectField("Category", choices=[], validate_choice=False)
    description = TextAreaField("Description")
    duration = IntegerField("Duration (minutes)", validators=[Optional(), NumberRange(min=1)])
    capacity = IntegerField("Seats", validators=[Optional(), NumberRange(min=1)])
    price = DecimalField("Price", places=2, validators=[Optional(), NumberRange(min=0)])
    location = StringField("Default location")


@bp.route("/categories", methods=["GET", "POST"])
@login_required
def categories():
    customer = _customer()
    form = CategoryForm()
    form.parent.choices = _category_choices(customer, "(top level)")
    if customer is not None and form.validate_on_submit():
        unit = _managed_unit(customer, form.unit)
        parent = _category(customer, form.parent)
        chosen = unit is not None and not form.parent.errors  # else the errors are shown
        if chosen and _done(
            lambda: create_category(unit, form.name.data, parent=parent, actor=_actor()),
            "The category is created.",
        ):
            return redirect(url_for("course_setup.categories", customer=customer.slug))
    rows = _visible(Category, customer).options(selectinload(Category.parent))
    return _page("courses/categories.html", customer, form, db.session.scalars(rows).all())


@bp.route("/templates", methods=["GET", "POST"])
@login_required
def templates():
    customer = _customer()
    form = TemplateForm()
    form.category.choices = _category_choices(customer, "(none)")
    if customer is not None and form.validate_on_submit():
        unit = _managed_unit(customer, form.unit)
        category = _category(customer, form.category)
        fields = {
            "description": form.description.data or "",
            "duration_minutes": form.duration.data,
            "capacity": form.capacity.data,
            "price": Decimal(form.price.data) if form.price.data is not None else None,
            "default_location": form.location.data or "",
            "category_id": category.id if category else None,
        }
        chosen = unit is not None and not form.category.errors  # else the errors are shown
        if chosen and _done(
            lambda: create_template(unit, form.title.data, actor=_actor(), **fields),
            "The template is created.",
        ):
            return redirect(url_for("course_setup.templates", customer=customer.slug))
    rows = _visible(ActivityTemplate, customer).options(selectinload(ActivityTemplate.category))
    return _page("courses/templates.html", customer, form, db.session.scalars(rows).all())


def _customer() -> Customer | None:
    access.require(
        current_user, access.COURSE_ROLES, "Only course admins and HR see the course setup."
    )
    return access.chosen_customer(
        current_user, request.args.get("customer"), roles=access.COURSE_ROLES
    )


def _visible(model, customer: Customer | None):
    """Categories or templates of the customer whose owner unit lies in the user's branches."""
    if customer is None:
        return select(model).where(model.id.is_(None))
    units = select(OrgUnit.id).where(
        access.visible_unit_condition(current_user, access.COURSE_ROLES)
    )
    return (
        select(model)
        .options(selectinload(model.owner_unit))
        .where(model.customer_id == customer.id, model.owner_unit_id.in_(units))
        .order_by(model.name if model is Category else model.title, model.id)
    )


def _category_choices(customer: Customer | None, empty: str) -> list[SelectChoice]:
    choices = [SelectChoice("", empty)]
    if customer is not None:
        choices += [
            SelectChoice(str(c.id), c.name)
            for c in db.session.scalars(_visible(Category, customer))
        ]
    return choices


def _category(customer: Customer, field) -> Category | None:
    """The category chosen in `field`: one the user sees (a forged id answers 404 like any
    other). A value that is no id at all (a word, a number too large) is an error on the field."""
    if not field.data:
        return None
    if parse_id(field.data) is None:
        field.errors = [f"{field.label.text}: choose one from the list."]
        return None
    category = access.get_visible(current_user, Category, field.data)
    if category.customer_id != customer.id:
        raise UserError("Choose a category of this customer.")
    return category


def _managed_unit(customer: Customer, field) -> OrgUnit | None:
    """The owner unit typed in `field`, if the user is course admin of its branch."""
    number = (field.data or "").strip()
    unit = customer.root_unit
    if number:
        unit = db.session.scalar(
            select(OrgUnit).where(OrgUnit.customer_id == customer.id, OrgUnit.number == number)
        )
    if unit is None or not access.scope_of(current_user).reaches(unit.path, access.COURSE_MANAGERS):
        field.errors = ["You manage no unit with that number."]
        return None
    return unit


def _done(create, message: str) -> bool:
    try:
        create()
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return False
    flash(message, "info")
    return True


def _page(template: str, customer, form, rows):
    customers = db.session.scalars(
        access.visible_customers(current_user, roles=access.COURSE_ROLES)
    ).all()
    return render_template(template, customer=customer, customers=customers, form=form, rows=rows)


def _actor() -> str:
    return current_user.actor
