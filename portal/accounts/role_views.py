"""The roles page: HR (and platform admins) grant and revoke roles within their own branch.

HR grants HR and course admin; only platform admins grant IT admin, and nobody grants a role
to themselves (access.grant_role holds the rule; the role list offers only what may be granted).

`flask role grant` does the same from the command line. Every lookup goes through
portal.core.access: a unit, grant or person outside the branch answers 404, as if it did not
exist.
"""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired

from portal.accounts.models import Role, RoleGrant
from portal.core import access
from portal.core.db import db
from portal.core.errors import Forbidden, UserError
from portal.directory.models import Customer, OrgUnit, Person
from portal.directory.queries import person_by_username

bp = Blueprint("roles", __name__, url_prefix="/roles")
ROLE_NAMES = {Role.HR: "HR", Role.IT_ADMIN: "IT admin", Role.COURSE_ADMIN: "Course admin"}


class GrantForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired("Enter a username.")])
    role = SelectField("Role", choices=[])  # what the user may grant (access.grantable_roles)
    unit = StringField("Unit number (empty: the whole customer)")


class ActionForm(FlaskForm):
    """A button that changes something: it carries only the CSRF token."""


@bp.route("/", methods=["GET", "POST"])
@login_required
def roles():
    customer = _customer()
    form, status = GrantForm(), 200
    form.role.choices = [
        SelectChoice(role.value, ROLE_NAMES[role]) for role in access.grantable_roles(current_user)
    ]
    if customer is not None and form.validate_on_submit():
        status = _grant(customer, form)
        if status == 200:
            return redirect(url_for("roles.roles", customer=customer.slug))
    return (
        render_template(
            "accounts/roles.html",
            customer=customer,
            customers=db.session.scalars(
                access.visible_customers(current_user, roles=access.ROLE_GRANTERS)
            ).all(),
            grants=_grants(customer) if customer is not None else [],
            form=form,
            action=ActionForm(),
            names=ROLE_NAMES,
            revocable=access.grantable_roles(current_user),
        ),
        status,
    )


@bp.route("/<id:grant_id>/revoke", methods=["POST"])
@login_required
def revoke(grant_id: int):
    grant = access.get_visible(current_user, RoleGrant, grant_id)
    if not ActionForm().validate_on_submit():
        raise UserError("The form had expired. Reload the page and try again.")
    customer_id = db.session.get(OrgUnit, grant.unit_id).customer_id
    access.revoke_role(grant, actor=current_user.actor, revoker=current_user)
    db.session.commit()
    flash("The role is revoked.", "info")
    return redirect(url_for("roles.roles", customer=db.session.get(Customer, customer_id).slug))


def _customer() -> Customer | None:
    if not access.holding(access.ROLE_GRANTERS)(access.scope_of(current_user)):
        raise Forbidden("Only HR and platform admins grant roles.")
    return access.chosen_customer(
        current_user, request.args.get("customer"), roles=access.ROLE_GRANTERS
    )


def _grant(customer: Customer, form: GrantForm) -> int:
    """Grant what the form asks; the HTTP status of the answer (200 when granted)."""
    scope = access.scope_of(current_user)
    number = (form.unit.data or "").strip()
    unit = customer.root_unit
    if number:
        unit = db.session.scalar(
            select(OrgUnit).where(OrgUnit.customer_id == customer.id, OrgUnit.number == number)
        )
    if unit is None or not scope.reaches(unit.path, access.ROLE_GRANTERS):
        form.unit.errors = ["There is no unit with that number in your branch."]
        return 404
    person = person_by_username(form.username.data)
    if (
        person is None
        or person.customer_id != customer.id
        or not scope.reaches(person.unit.path, access.ROLE_GRANTERS)
    ):
        form.username.errors = ["There is no person with that username in your branch."]
        return 404
    try:
        access.grant_role(
            person, form.role.data, unit, actor=current_user.actor, granter=current_user
        )
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        form.username.errors = [str(exc)]
        return exc.status_code
    flash(f"{person.username} is {ROLE_NAMES[form.role.data]} of {unit.name}.", "info")
    return 200


def _grants(customer: Customer) -> list:
    """(grant, username, full name, unit) in the branches the user grants in."""
    scope = access.scope_of(current_user)
    return db.session.execute(
        select(RoleGrant, Person, OrgUnit)
        .join(Person, RoleGrant.person_id == Person.id)
        .join(OrgUnit, RoleGrant.unit_id == OrgUnit.id)
        .where(
            OrgUnit.customer_id == customer.id,
            scope.path_condition(OrgUnit.path, access.ROLE_GRANTERS),
        )
        .order_by(OrgUnit.path, RoleGrant.role, Person.username)
    ).all()
