"""Directory source pages for IT admins: list, add an LDAP source, test it, preview, sync now.

A source reads a whole customer's directory with a service account, so only IT admins granted
at the customer's root (and platform admins) see these pages; everyone else gets a 404.
"""

import logging

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import PasswordField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import InputRequired

from portal.accounts.models import Role
from portal.core import access
from portal.core.db import db
from portal.core.errors import NotFound, UserError
from sync.models import RunStatus, SyncRun, SyncSource
from sync.sources.ldap import operations
from sync.sources.ldap.profiles import ORG_FROM

logger = logging.getLogger(__name__)
bp = Blueprint("sources", __name__, url_prefix="/sync/sources")
# A source holds a service account's password and reads the whole customer: IT at its root.
IT = {"roles": frozenset({Role.IT_ADMIN}), "whole": True}


class SourceForm(FlaskForm):
    """The fields of `flask directory source add-ldap`; empty optional ones take the profile's
    defaults."""

    name = StringField("Name", [InputRequired("Give the source a name, e.g. hq-ad.")])
    profile = SelectField(
        "Profile",
        choices=[SelectChoice("ad", "Active Directory"), SelectChoice("openldap", "OpenLDAP")],
    )
    uri = StringField("URI", [InputRequired("Give the server's URI, e.g. ldaps://dc1:636.")])
    bind_dn = StringField("Bind DN", [InputRequired("Give the DN Kursa binds with.")])
    password = PasswordField("Bind password", [InputRequired("Give the bind password.")])
    user_bases = TextAreaField(
        "User base DNs (one a line)", [InputRequired("Give at least one user base DN.")]
    )
    user_filter = StringField("User filter (empty: the profile's)")
    org_from = SelectField(
        "Org tree from", choices=[SelectChoice(o, o) for o in ORG_FROM], default="ou"
    )
    org_base = StringField("Org base DN (for an OU tree)")
    inactive_filter = StringField("Inactive filter (OpenLDAP)")
    schedule = StringField("Schedule (cron)", default=operations.DEFAULT_SCHEDULE)

    def settings(self) -> dict:
        """The source's settings as the CLI builds them: only what was filled in."""
        settings = {
            "uri": self.uri.data.strip(),
            "bind_dn": self.bind_dn.data.strip(),
            "user_bases": [b.strip() for b in self.user_bases.data.splitlines() if b.strip()],
            "org_from": self.org_from.data,
        }
        for key in ("user_filter", "org_base", "inactive_filter"):
            if value := (getattr(self, key).data or "").strip():
                settings[key] = value
        return settings


class ActionForm(FlaskForm):
    """A button that acts on a source: it carries only the CSRF token."""


@bp.route("")
@login_required
def sources():
    customer = _customer(request.args.get("customer"))
    listed = list(
        db.session.scalars(
            select(SyncSource)
            .where(SyncSource.customer_id == customer.id)
            .order_by(SyncSource.name)
        )
    )
    return render_template(
        "sync/sources.html",
        customer=customer,
        customers=db.session.scalars(access.visible_customers(current_user, **IT)).all(),
        sources=[(s, operations.describe(s)) for s in listed],
        last_runs=last_runs(customer.id, [s.name for s in listed]),
        form=ActionForm(),
    )


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new():
    customer = _customer(request.args.get("customer"))
    form = SourceForm()
    if not form.validate_on_submit():
        return render_template("sync/source_new.html", form=form, customer=customer)

    try:
        source = operations.add_ldap_source(
            customer,
            form.name.data.strip(),
            profile=form.profile.data,
            settings=form.settings(),
            password=form.password.data,
            schedule=form.schedule.data.strip() or operations.DEFAULT_SCHEDULE,
            actor=current_user.actor,
        )
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return render_template("sync/source_new.html", form=form, customer=customer)
    flash(f"Source {source.name} is added. Test the connection, then preview a run.", "info")
    return redirect(url_for("sources.sources", customer=customer.slug))


@bp.route("/<int:source_id>/test", methods=["POST"])
@login_required
def test(source_id: int):
    source = _source(source_id)  # CSRFProtect has checked the token of every POST

    result = operations.check_source(source)
    flash(result.message, "info" if result.ok else "error")
    return redirect(url_for("sources.sources", customer=source.customer.slug))


@bp.route("/<int:source_id>/preview", methods=["POST"])
@login_required
def preview(source_id: int):
    return _sync(_source(source_id), dry_run=True)


@bp.route("/<int:source_id>/sync", methods=["POST"])
@login_required
def sync_now(source_id: int):
    return _sync(_source(source_id), dry_run=False)


def last_runs(customer_id: int, names: list[str]) -> dict[str, SyncRun]:
    """source name -> its newest run: one query for the list."""
    if not names:
        return {}
    newest = (
        select(func.max(SyncRun.id))
        .where(
            SyncRun.customer_id == customer_id,
            SyncRun.source_kind == "ldap",
            SyncRun.source_name.in_(names),
        )
        .group_by(SyncRun.source_name)
    )
    runs = db.session.scalars(select(SyncRun).where(SyncRun.id.in_(newest)))
    return {run.source_name: run for run in runs}


def _sync(source: SyncSource, *, dry_run: bool):
    slug = source.customer.slug

    try:
        run = operations.sync_source(source, actor=current_user.actor, dry_run=dry_run)
    except UserError as exc:  # another run of this source is going on
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("sources.sources", customer=slug))
    category = "error" if run.status == RunStatus.FAILED else "info"
    flash(_started(run), category)
    return redirect(url_for("sync.run", run_id=run.id))


def _started(run: SyncRun) -> str:
    if run.status == RunStatus.DRY_RUN:
        return f"Run #{run.id} is a preview of source {run.source_name}: nothing has changed yet."
    return f"Run #{run.id} of source {run.source_name} is {run.status.replace('_', ' ')}."


def _customer(slug: str | None):
    customer = access.chosen_customer(current_user, slug, **IT)
    if customer is None:
        raise NotFound(access.HIDDEN)
    return customer


def _source(source_id: int) -> SyncSource:
    source = db.session.get(SyncSource, source_id)
    scope = access.scope_of(current_user)
    if source is None or not scope.reaches_customer(source.customer_id, IT["roles"], whole=True):
        raise NotFound(access.HIDDEN)
    return source
