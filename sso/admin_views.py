"""Identity provider pages for IT admins: list, add SAML or OIDC, edit, delete.

A provider decides who may log in as anyone in the whole customer, so only IT admins granted at
the customer's root (and platform admins) see these pages; everyone else gets a 404. Adding
goes through sso.operations, the same checks `flask sso add-saml` / `add-oidc` make.
"""

import logging

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from sqlalchemy import select
from wtforms import (
    BooleanField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired

from portal.accounts.models import Role
from portal.core import access
from portal.core.db import db, utcnow
from portal.core.errors import NotFound, UserError
from sso import operations, queries
from sso.models import IdentityProvider, MatchRule, ProviderKind

logger = logging.getLogger(__name__)
bp = Blueprint("sso_admin", __name__, url_prefix="/sso/admin")
IT = {"roles": frozenset({Role.IT_ADMIN}), "whole": True}
SAML_MATCHES = [SelectChoice(r.value, r.value.replace("_", " ")) for r in MatchRule]
OIDC_MATCHES = [c for c in SAML_MATCHES if c.value != MatchRule.NAMEID]
DOMAINS_HINT = "One a line, e.g. example.com; a typed work email with it leads here."
LABEL_HINT = "What your staff see, e.g. Acme account; empty: the name."


class SamlForm(FlaskForm):
    name = StringField("Name (part of the login address)", [InputRequired("Name: give one.")])
    label = StringField("Label on the login button", description=LABEL_HINT)
    metadata_xml = TextAreaField("Metadata XML (paste)")
    metadata_file = FileField("or Metadata file (upload)")
    metadata_url = StringField("or Metadata URL (fetched now)")
    match = SelectField("Match persons by", choices=SAML_MATCHES, default="email")
    match_attribute = StringField("Attribute holding it (empty: the usual ones)")
    require_signed_assertion = BooleanField("Require a signed assertion", default=True)
    allow_idp_initiated = BooleanField("Allow IdP-initiated login")
    email_domains = TextAreaField("Email domains", description=DOMAINS_HINT)


class OidcForm(FlaskForm):
    name = StringField("Name (part of the login address)", [InputRequired("Name: give one.")])
    label = StringField("Label on the login button", description=LABEL_HINT)
    discovery_url = StringField(
        "Discovery URL", [InputRequired("Discovery URL: give the provider's address.")]
    )
    client_id = StringField("Client id", [InputRequired("Client id: give Kursa's client id.")])
    client_secret = PasswordField(
        "Client secret (stored encrypted)", [InputRequired("Client secret: give it.")]
    )
    scopes = StringField("Scopes", default="openid email profile")
    match = SelectField("Match persons by", choices=OIDC_MATCHES, default="email")
    match_claim = StringField("Claim holding it (empty: the standard one)")
    email_domains = TextAreaField("Email domains", description=DOMAINS_HINT)


FIRST = ("is_enabled", "label", "match")  # the edit form's first fields, in this order


class EditForm(FlaskForm):
    is_enabled = BooleanField("Enabled")
    label = StringField("Label on the login button", description=LABEL_HINT)
    match = SelectField("Match persons by", choices=SAML_MATCHES)
    match_attribute = StringField("Attribute holding it (empty: the usual ones)")
    require_signed_assertion = BooleanField("Require a signed assertion")
    allow_idp_initiated = BooleanField("Allow IdP-initiated login")
    match_claim = StringField("Claim holding it (empty: the standard one)")
    scopes = StringField("Scopes")
    email_domains = TextAreaField("Email domains", description=DOMAINS_HINT)

    def fields_for(self, kind: str) -> list:
        names = [k for k in operations.EDITABLE[ProviderKind(kind)] if k not in FIRST]
        return [self[name] for name in (*FIRST, *names, "email_domains")]


class ActionForm(FlaskForm):
    """A button acting on a provider: it carries only the CSRF token."""


@bp.route("")
@login_required
def index():
    customer = _customer(request.args.get("customer"))
    return redirect(url_for("sso_admin.providers", customer=customer.slug))


@bp.route("/<customer>")
@login_required
def providers(customer: str):
    found = _customer(customer)
    listed = db.session.scalars(
        select(IdentityProvider)
        .where(IdentityProvider.customer_id == found.id)
        .order_by(IdentityProvider.name)
    ).all()
    return render_template(
        "sso/admin_providers.html",
        customer=found,
        customers=db.session.scalars(access.visible_customers(current_user, **IT)).all(),
        providers=[(p, _describe(p)) for p in listed],
        last_logins=queries.last_logins(found.id),
        linked=queries.linked_counts(found.id),
        addresses=_sp_addresses(found.slug),
        now=utcnow(),
        form=ActionForm(),
    )


@bp.route("/<customer>/saml/new", methods=["GET", "POST"])
@login_required
def new_saml(customer: str):
    found = _customer(customer)
    form = SamlForm()
    if not form.validate_on_submit():
        return _form_page(found, form, "Add a SAML identity provider")
    xml, url = _metadata(form)
    if xml is None:
        return _form_page(found, form, "Add a SAML identity provider")

    try:
        provider = operations.add_saml_provider(
            found,
            form.name.data.strip(),
            xml,
            metadata_url=url,
            label=form.label.data or "",
            match=form.match.data,
            match_attribute=(form.match_attribute.data or "").strip(),
            require_signed_assertion=form.require_signed_assertion.data,
            allow_idp_initiated=form.allow_idp_initiated.data,
            actor=current_user.actor,
        )
        _set_domains(provider, form.email_domains.data)
    except UserError as exc:
        return _refused(found, form, exc, "Add a SAML identity provider")
    return _saved(found, provider, "added")


@bp.route("/<customer>/oidc/new", methods=["GET", "POST"])
@login_required
def new_oidc(customer: str):
    found = _customer(customer)
    form = OidcForm()
    if not form.validate_on_submit():
        return _form_page(found, form, "Add an OpenID Connect provider")

    try:
        provider = operations.add_oidc_provider(
            found,
            form.name.data.strip(),
            form.discovery_url.data.strip(),
            client_id=form.client_id.data.strip(),
            client_secret=form.client_secret.data,
            scopes=" ".join((form.scopes.data or "openid").split()),
            label=form.label.data or "",
            match=form.match.data,
            match_claim=(form.match_claim.data or "").strip(),
            actor=current_user.actor,
        )
        _set_domains(provider, form.email_domains.data)
    except UserError as exc:
        return _refused(found, form, exc, "Add an OpenID Connect provider")
    return _saved(found, provider, "added")


@bp.route("/<customer>/<int:provider_id>/edit", methods=["GET", "POST"])
@login_required
def edit(customer: str, provider_id: int):
    found = _customer(customer)
    provider = _provider(found, provider_id)
    form = EditForm(data=_edit_data(provider))
    if provider.kind == ProviderKind.OIDC:
        form.match.choices = OIDC_MATCHES
    title = f"Edit {provider.name}"
    if not form.validate_on_submit():
        return _form_page(found, form, title, provider=provider)

    try:
        _apply_edit(provider, form)
    except UserError as exc:
        return _refused(found, form, exc, title, provider=provider)
    return _saved(found, provider, "saved")


@bp.route("/<customer>/<int:provider_id>/delete", methods=["POST"])
@login_required
def delete(customer: str, provider_id: int):
    found = _customer(customer)  # CSRFProtect has checked the token of every POST
    provider = _provider(found, provider_id)
    name = provider.name

    try:
        operations.delete_provider(provider, actor=current_user.actor)
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("sso_admin.providers", customer=found.slug))
    flash(f"Provider {name} is deleted.", "info")
    return redirect(url_for("sso_admin.providers", customer=found.slug))


def _metadata(form: SamlForm) -> tuple[str | None, str]:
    """(metadata XML, the URL it came from) from exactly one of paste, upload and URL; the
    error is put on the field it concerns, named, and XML None returned."""
    pasted = (form.metadata_xml.data or "").strip()
    upload = form.metadata_file.data
    url = (form.metadata_url.data or "").strip()
    given = [bool(pasted), bool(upload and upload.filename), bool(url)]
    if sum(given) != 1:
        form.metadata_xml.errors = [
            "Metadata: paste the XML, upload the file or give the URL (exactly one of them)."
        ]
        return None, ""
    field, label = _metadata_field(form, given)
    try:
        xml = _read_metadata(pasted, upload, url)
        operations.idp_entity_id(xml)
    except UserError as exc:
        field.errors = [f"{label}: {exc}"]
        return None, ""
    return xml, url


def _metadata_field(form: SamlForm, given: list[bool]):
    fields = [
        (form.metadata_xml, "Metadata XML"),
        (form.metadata_file, "Metadata file"),
        (form.metadata_url, "Metadata URL"),
    ]
    return fields[given.index(True)]


def _read_metadata(pasted: str, upload, url: str) -> str:
    if url:
        return operations.fetch_metadata(url)
    if pasted:
        return pasted
    raw = upload.read(operations.MAX_METADATA_BYTES + 1)
    if len(raw) > operations.MAX_METADATA_BYTES:
        raise UserError("The file is larger than 2 MB; is it the IdP's metadata?")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError("The file is not UTF-8 text; upload the IdP's XML metadata.") from None


def _set_domains(provider: IdentityProvider, text: str) -> None:
    domains = operations.parse_domains(text)
    if domains:
        operations.set_email_domains(provider, domains, actor=current_user.actor)


def _edit_data(provider: IdentityProvider) -> dict:
    keys = operations.EDITABLE[ProviderKind(provider.kind)]
    data = {key: provider.setting(key) for key in keys}
    data["is_enabled"] = provider.is_enabled
    data["email_domains"] = "\n".join(queries.email_domains(provider))
    return data


def _apply_edit(provider: IdentityProvider, form: EditForm) -> None:
    """Disable before changing domains and enable after, so the uniqueness check of the
    domains runs exactly when the provider will be enabled."""
    keys = operations.EDITABLE[ProviderKind(provider.kind)]
    changes = {key: form[key].data for key in keys}
    for key, value in changes.items():
        if isinstance(value, str):
            changes[key] = " ".join(value.split()) if key == "scopes" else value.strip()
    operations.update_provider(provider, actor=current_user.actor, **changes)
    if not form.is_enabled.data:
        operations.set_provider_enabled(provider, False, actor=current_user.actor)
    operations.set_email_domains(
        provider, operations.parse_domains(form.email_domains.data), actor=current_user.actor
    )
    if form.is_enabled.data:
        operations.set_provider_enabled(provider, True, actor=current_user.actor)


def _describe(provider: IdentityProvider) -> dict:
    """What the list shows of a provider beyond its columns."""
    if provider.kind == ProviderKind.OIDC:
        source = provider.setting("discovery_url")
        return {"source": source, "validity": None, "value": provider.setting("match_claim")}
    return {
        "source": provider.setting("metadata_url") or "pasted or uploaded",
        "validity": queries.metadata_validity(provider),
        "value": provider.setting("match_attribute"),
    }


def _sp_addresses(slug: str) -> dict:
    """The addresses an IT admin copies into their IdP."""
    base = (current_app.config["KURSA"]["web"]["base_url"] or request.host_url).rstrip("/")
    return {
        "SAML SP metadata": f"{base}/sso/{slug}/saml/metadata",
        "SAML ACS (Assertion Consumer Service)": f"{base}/sso/{slug}/saml/acs",
        "OIDC redirect URI": f"{base}/sso/{slug}/oidc/callback",
        "Login page for your staff": f"{base}/login/{slug}",
    }


def _form_page(customer, form, title: str, provider: IdentityProvider | None = None):
    status = 400 if request.method == "POST" else 200
    page = render_template(
        "sso/admin_form.html", customer=customer, form=form, title=title, provider=provider
    )
    return page, status


def _refused(customer, form, exc: UserError, title: str, provider=None):
    db.session.rollback()
    flash(str(exc), "error")
    return _form_page(customer, form, title, provider)


def _saved(customer, provider: IdentityProvider, verb: str):
    db.session.commit()
    flash(f"Provider {provider.name} is {verb}.", "info")
    return redirect(url_for("sso_admin.providers", customer=customer.slug))


def _customer(slug: str | None):
    customer = access.chosen_customer(current_user, slug, **IT)
    if customer is None:
        raise NotFound(access.HIDDEN)
    return customer


def _provider(customer, provider_id: int) -> IdentityProvider:
    provider = db.session.get(IdentityProvider, provider_id)
    if provider is None or provider.customer_id != customer.id:
        raise NotFound(access.HIDDEN)
    return provider
