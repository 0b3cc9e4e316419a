"""Directory source pages for IT admins: list, add an LDAP source, test it, preview, sync now.

A source reads a whole customer's directory with a service account, so only IT admins granted
at the customer's root (and platform admins) see these pages; everyone else gets a 404.
"""

import logging

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import func, select

from portal.accounts.models import Role
from portal.core import access
from portal.core.db import db
from portal.core.errors import FieldRefusals, FieldRefused, NotFound, UserError
from sync import queue
from sync.models import RequestStatus, SyncRequest, SyncRun, SyncSource
from sync.source_forms import SourceForm
from sync.sources.ldap import operations
from sync.sources.ldap.profiles import PROFILES

logger = logging.getLogger(__name__)
bp = Blueprint("sources", __name__, url_prefix="/sync/sources")
# A source holds a service account's password and reads the whole customer: IT at its root.
IT = {"roles": frozenset({Role.IT_ADMIN}), "whole": True}
ACTION_WORDS = {"test": "The connection test", "preview": "A preview", "sync": "A run"}
REFRESH_SECONDS = 3


class ActionForm(FlaskForm):
    """A button that acts on a source: it carries only the CSRF token."""


@bp.context_processor
def _declared() -> dict:
    return {"declared_in_config": declared_in_config}


def declared_in_config(source: SyncSource) -> bool:
    """Whether the config file the portal runs with declares this source ([ldap_sources.x]).

    Read from the file, not recorded on the source: a table removed from the file no longer
    overwrites the source, and then the page must stop saying it does.
    """
    table = current_app.config["KURSA"].get("ldap_sources", {}).get(source.name)
    return table is not None and table.get("customer") == source.customer.slug


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
        pending=pending_requests([s.id for s in listed]),
        form=ActionForm(),
    )


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new():
    customer = _customer(request.args.get("customer"))
    form = SourceForm()
    if request.method == "GET":
        profile = request.args.get("profile")
        form.fill(profile if profile in PROFILES else "ad")
        return _form_page(form, customer, None)
    form.keep_password()  # a re-rendered add form keeps what the admin typed
    if not form.validate_on_submit():
        _show_other_errors(form, _new_source_errors)
        return _form_page(form, customer, None)

    schedule, delta_schedule = _schedules(form)
    try:
        source = operations.add_ldap_source(
            customer,
            form.name.data.strip(),
            profile=form.profile.data,
            settings=form.settings(),
            password=form.password.data,
            schedule=schedule,
            delta_schedule=delta_schedule,
            actor=current_user.actor,
        )
        db.session.commit()
    except UserError as exc:
        return _refused(form, customer, None, exc)
    _warn_unchecked(source)
    flash(f"Source {source.name} is added. Test the connection, then preview a run.", "info")
    return redirect(url_for("sources.sources", customer=customer.slug))


@bp.route("/<id:source_id>/edit", methods=["GET", "POST"])
@login_required
def edit(source_id: int):
    source = _source(source_id)
    customer = source.customer
    form = SourceForm()
    if request.method == "GET":
        form.fill(source.profile, source.settings)
        form.schedule.data = source.schedule
        form.delta_schedule.data = source.delta_schedule or ""
    form.name.validators = []  # the name stays (see operations.update_ldap_source)
    if not form.validate_on_submit():
        _show_other_errors(form, _changed_source_errors)
        return _form_page(form, customer, source)

    schedule, delta_schedule = _schedules(form)
    try:
        operations.update_ldap_source(
            source,
            profile=form.profile.data,
            settings=form.settings(),
            password=form.password.data or None,
            schedule=schedule,
            delta_schedule=delta_schedule,
            actor=current_user.actor,
        )
        db.session.commit()
    except UserError as exc:
        return _refused(form, customer, source, exc)
    _warn_unchecked(source)
    flash(f"Source {source.name} is saved.", "info")
    return redirect(url_for("sources.sources", customer=customer.slug))


@bp.route("/<id:source_id>/enabled", methods=["POST"])
@login_required
def set_enabled(source_id: int):
    source = _source(source_id)
    enable = request.form.get("enabled") == "1"

    operations.set_enabled(source, enable, actor=current_user.actor)
    db.session.commit()
    state = "enabled: its schedule runs again" if enable else "disabled: it runs no more"
    flash(f"Source {source.name} is {state}.", "info")
    return redirect(url_for("sources.sources", customer=source.customer.slug))


@bp.route("/<id:source_id>/delete", methods=["POST"])
@login_required
def delete(source_id: int):
    source = _source(source_id)
    name, slug = source.name, source.customer.slug
    was_enabled = source.is_enabled

    outcome = operations.delete_source(source, actor=current_user.actor)
    db.session.commit()
    if outcome == "deleted":
        flash(f"Source {name} is deleted.", "info")
    elif not was_enabled:  # the list offers no Delete then; an old page may still post
        flash(f"Source {name} has runs, so it stays, disabled, with its run history.", "info")
    else:
        flash(
            f"Source {name} has runs (or one is going on), so it is disabled instead of "
            "deleted: its run history stays, and the persons it created keep their label.",
            "info",
        )
    return redirect(url_for("sources.sources", customer=slug))


def _form_page(form: SourceForm, customer, source: SyncSource | None):
    return render_template("sync/source_form.html", form=form, customer=customer, source=source)


def _refused(form: SourceForm, customer, source: SyncSource | None, exc: UserError):
    """Show each refused setting under its field (or on top when no field names it)."""
    db.session.rollback()
    unshown = form.show_errors(exc) if isinstance(exc, FieldRefused) else [exc]
    for error in unshown:
        flash(str(error), "error")
    return _form_page(form, customer, source)


def _show_other_errors(form: SourceForm, find_errors) -> None:
    """When the form itself refused a field (an empty URI), still show what the operations'
    checks find in the other fields, so that one submit names every error."""
    if form.profile.data not in PROFILES:
        return
    errors = [e for e in find_errors(form) if not form.has_error(e.field)]
    if errors:
        for unshown in form.show_errors(FieldRefusals(errors)):
            flash(str(unshown), "error")


def _new_source_errors(form: SourceForm) -> list[FieldRefused]:
    return operations.new_source_errors(
        (form.name.data or "").strip(),
        form.profile.data,
        form.settings(),
        form.password.data,
        *_schedules(form),
    )


def _changed_source_errors(form: SourceForm) -> list[FieldRefused]:
    return operations.setting_errors(form.profile.data, form.settings()) + (
        operations.schedule_errors(*_schedules(form))
    )


def _schedules(form: SourceForm) -> tuple[str, str | None]:
    """The full and incremental schedules as given (empty: the default, and none)."""
    schedule = (form.schedule.data or "").strip() or operations.DEFAULT_SCHEDULE
    return schedule, (form.delta_schedule.data or "").strip() or None


def _warn_unchecked(source: SyncSource) -> None:
    if source.settings.get("verify_certificates") is False:
        flash(
            f"Source {source.name} does not check the server's certificate: anyone between "
            "Kursa and the directory can read the bind password. Give a CA file instead.",
            "error",
        )


@bp.route("/<id:source_id>/test", methods=["POST"])
@login_required
def test(source_id: int):
    return _request(_source(source_id), "test")  # CSRFProtect has checked every POST's token


@bp.route("/<id:source_id>/preview", methods=["POST"])
@login_required
def preview(source_id: int):
    return _request(_source(source_id), "preview", full=_full_asked())


@bp.route("/<id:source_id>/sync", methods=["POST"])
@login_required
def sync_now(source_id: int):
    return _request(_source(source_id), "sync", full=_full_asked())


@bp.route("/requests/<id:request_id>")
@login_required
def request_page(request_id: int):
    """A queued request: waiting, running, or its outcome with the run's report."""
    sync_request = db.session.get(SyncRequest, request_id)
    if sync_request is None:
        raise NotFound(access.HIDDEN)
    source = _source(sync_request.source_id)
    page = render_template(
        "sync/source_request.html",
        sync_request=sync_request,
        untaken=queue.is_untaken(sync_request),
        source=source,
        customer=source.customer,
    )
    # The Refresh header reloads the page until the request is done (base.html has no
    # block in <head> for a meta refresh, and no script is needed for this).
    headers = {} if sync_request.is_finished else {"Refresh": str(REFRESH_SECONDS)}
    return page, 200, headers


def pending_requests(source_ids: list[int]) -> dict[int, list[SyncRequest]]:
    """source id -> its queued or running requests, oldest first: one query for the list."""
    if not source_ids:
        return {}
    waiting = db.session.scalars(
        select(SyncRequest)
        .where(
            SyncRequest.source_id.in_(source_ids),
            SyncRequest.status.in_([RequestStatus.QUEUED, RequestStatus.RUNNING]),
        )
        .order_by(SyncRequest.id)
    )
    found: dict[int, list[SyncRequest]] = {}
    for sync_request in waiting:
        found.setdefault(sync_request.source_id, []).append(sync_request)
    return found


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


def _request(source: SyncSource, action: str, *, full: bool = False):
    """Queue the action for the scheduler process: a run may outlast any web request."""
    if not source.is_enabled:  # the list shows no buttons then; an old page may still post
        flash(f"Source {source.name} is disabled; enable it before testing or running it.", "error")
        return redirect(url_for("sources.sources", customer=source.customer.slug))
    sync_request, is_new = queue.queue_request(source, action, actor=current_user.actor, full=full)
    db.session.commit()
    words = ACTION_WORDS[action]
    if full:
        words = words.replace("A ", "A full ", 1)
    queued = f"{words} of source {source.name} is queued."
    already = f"{words} of source {source.name} is already queued: this is that request."
    # A second click reuses the waiting request: say so, once. A double click whose first
    # message is still unshown (both posts before the page) adds none.
    pending = {message for _, message in session.get("_flashes", [])}
    if is_new:
        flash(queued, "info")
    elif not pending & {queued, already}:
        flash(already, "info")
    return redirect(url_for("sources.request_page", request_id=sync_request.id))


def _full_asked() -> bool:
    """The page's "Full run" box: ticked by default; unticked, a run is incremental once the
    source has an applied full run (as the schedule's incremental runs are)."""
    return request.form.get("full") == "1"


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
