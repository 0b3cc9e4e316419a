"""HR and IT pages of the directory: the tree, persons, a person."""

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy.orm import selectinload
from wtforms import SelectChoice, SelectField, StringField

from portal.core import access
from portal.core.db import db
from portal.core.errors import NotFound
from portal.core.ids import parse_id
from portal.directory.models import OrgUnit, Person
from portal.directory.queries import search_persons
from portal.directory.tree import ancestors, unit_by_number, unit_tree
from portal.web import home_endpoint, paginate, person_panels

bp = Blueprint("directory", __name__)
PER_PAGE = 50
STATUSES = {"active": True, "inactive": False, "all": None}


class PersonSearchForm(FlaskForm):
    """Read through GET, so it carries no CSRF token: it changes nothing."""

    class Meta:
        csrf = False

    q = StringField("Name, username or number")
    unit = StringField("Unit number")
    status = SelectField(
        "Status",
        choices=[
            SelectChoice("active", "Active"),
            SelectChoice("inactive", "Inactive"),
            SelectChoice("all", "All"),
        ],
        default="active",
    )


@bp.route("/")
@login_required
def tree():
    """The organisation: the start page of HR and IT; everyone else starts elsewhere (`/` is
    where a login ends, so it leads each account to its own start page)."""
    home = home_endpoint(access.scope_of(current_user))
    if home != "directory.tree":
        return redirect(url_for(home))
    customer = access.chosen_customer(current_user, request.args.get("customer"))
    customers = db.session.scalars(access.visible_customers(current_user)).all()
    if customer is None:
        return render_template("directory/tree.html", customer=None, customers=customers)

    tops, nodes = unit_tree(customer)
    focus = _focus(request.args.get("unit"), nodes)
    unit = access.get_visible(current_user, OrgUnit, focus.id) if focus else None
    trail = access.visible_only(current_user, ancestors(unit)) if unit else []
    reach = access.branch_tops(current_user, customer.id)
    if reach is not None:  # a role below the root: the tree starts at its branches
        tops = [nodes[unit_id] for unit_id in reach if unit_id in nodes]
    return render_template(
        "directory/tree.html",
        customer=customer,
        customers=customers,
        tops=[focus] if focus else tops,
        trail=trail,
        open_depth=(focus.depth if focus else min((t.depth for t in tops), default=0)) + 2,
    )


@bp.route("/persons")
@login_required
def persons():
    access.require(
        current_user, access.DIRECTORY_ROLES, "Only HR, IT and course admins see persons."
    )
    customer = access.chosen_customer(current_user, request.args.get("customer"))
    customers = db.session.scalars(access.visible_customers(current_user)).all()
    form = PersonSearchForm(formdata=request.args)
    form.validate()
    if customer is None:
        return render_template("directory/persons.html", form=form, customer=None, page=None)

    unit = None
    if form.unit.data:
        unit = unit_by_number(customer, form.unit.data)
        if unit is not None and not access.visible_only(current_user, [unit]):
            unit = None  # outside the branch: answered like a unit that does not exist
        if unit is None:
            form.unit.errors = [f"{customer.name} has no unit numbered {form.unit.data}."]
    query = search_persons(
        customer, form.q.data or "", unit=unit, active=STATUSES.get(form.status.data, True)
    ).where(access.visible_person_condition(current_user))
    page = None
    if not form.unit.errors:
        page = paginate(query.options(selectinload(Person.unit)), PER_PAGE)
    return render_template(
        "directory/persons.html",
        form=form,
        customer=customer,
        customers=customers,
        unit=unit,
        page=page,
    )


@bp.route("/persons/<id:person_id>")
@login_required
def person(person_id: int):
    person = access.get_visible(current_user, Person, person_id)
    return render_template(
        "directory/person.html",
        person=person,
        trail=access.visible_only(current_user, ancestors(person.unit)),  # from the branch top
        panels=person_panels(person),
    )


def _focus(unit_id: str | None, nodes: dict):
    """The node the tree is narrowed to (?unit=<id>), or None for the whole tree."""
    if not unit_id:
        return None
    node = nodes.get(parse_id(unit_id))
    if node is None:
        raise NotFound("That unit is not in this customer's tree.")
    return node
