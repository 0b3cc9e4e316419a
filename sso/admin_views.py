"""Identity provider pages for IT admins: list, add SAML or OIDC, edit, delete.

A provider decides who may log in as anyone in the whole customer, so only IT admins granted at
the customer's root (and platform admins) see these pages; everyone else gets a 404. Adding
goes through sso.operations, the same checks `flask sso add-saml` / `add-oidc` make. The edit
page also replaces the metadata (or fetches it again) and the client secret. A refused value
is shown under its field (the checks name it in FieldRefused) and nothing is saved; an add
form names every refused field in one submit, and keeps a typed client secret.
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
from wtforms.widgets import PasswordInput

from portal.accounts.models import Role
from portal.core import access
from portal.core.db import db, utcnow
from portal.core.errors import FieldRefused, NotFound, UserError
from sso import domains, operations, provider_checks, queries
from sso import metadata as idp_metadata
from sso.fetch import policy_refusal
from sso.models import IdentityProvider, MatchRule, ProviderKind

logger = logging.getLogger(__name__)
bp = Blueprint("sso_admin", __name__, url_prefix="/sso/admin")
IT = {"roles": frozenset({Role.IT_ADMIN}), "whole": True}
SAML_MATCHES = [SelectChoice(r.value, r.value.replace("_", " ")) for r in MatchRule]
OIDC_MATCHES = [c for c in SAML_MATCHES if c.value != MatchRule.NAMEID]
METADATA_FIELDS = [
    ("metadata_xml", "Metadata XML"),
    ("metadata_file", "Metadata file"),
    ("metadata_url", "Metadata URL"),
]
DOMAINS_HINT = "One a line, e.g. example.com; a typed work email with it leads here."
LABEL_HINT = "The button's whole text, e.g. Log in with Acme account; empty: Log in with <name>."
REPLACE_HINT = "Leave the three metadata fields empty to keep the current metadata."
SECRET_HINT = "Never shown. Leave it empty to keep the current secret."


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
    # A refused add renders the typed secret again, as the LDAP source form its password
    # (the edit form never shows the stored one).
    client_secret = PasswordField(
        "Client secret (stored encrypted)",
        [InputRequired("Client secret: give it.")],
        widget=PasswordInput(hide_value=False),
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
    refetch_metadata = BooleanField("Fetch the metadata again from its URL now")
    metadata_xml = TextAreaField("Replace the metadata: paste the XML", description=REPLACE_HINT)
    metadata_file = FileField("or upload the file")
    metadata_url = StringField("or give its URL (fetched now and refreshed from then on)")
    client_secret = PasswordField("New client secret", description=SECRET_HINT)

    def fields_for(self, provider: IdentityProvider) -> list:
        kind = ProviderKind(provider.kind)
        names = [k for k in operations.EDITABLE[kind] if k not in FIRST]
        if kind == ProviderKind.OIDC:
            extra = ["client_secret"]
        else:
            extra = ["metadata_xml", "metadata_file", "metadata_url"]
            if provider.setting("metadata_url"):
                extra.insert(0, "refetch_metadata")
        return [self[name] for name in (*FIRST, *names, "email_domains", *extra)]


class ActionForm(FlaskForm):
    """A button acting on a provider: it carries only the CSRF token."""


@bp.context_processor
def _base_url_state() -> dict:
    # Without [web] base_url the addresses follow the Host header (localhost or 127.0.0.1),
    # and an entity id an IdP was given must never change: the pages warn.
    return {"base_url_unset": not current_app.config["KURSA"]["web"]["base_url"]}


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
    form, title = SamlForm(), "Add a SAML identity provider"
    if not form.is_submitted():
        return _form_page(found, form, title)

    # Every wrong field is shown in one submit: the form's own checks, the metadata, and the
    # operation's checks of the rest (as the LDAP source form does).
    valid, refused = form.validate(), []
    try:
        xml, url = _metadata(form, required=True)
    except FieldRefused as exc:
        xml, url, refused = None, "", [exc]
    name, checked = (form.name.data or "").strip(), _new_saml_settings(form)
    if not valid or refused:
        refused += provider_checks.saml_provider_errors(found, name, xml, **checked)
        return _refused(found, form, refused, title)
    try:
        provider = operations.add_saml_provider(
            found,
            name,
            xml,
            metadata_url=url,
            require_signed_assertion=form.require_signed_assertion.data,
            allow_idp_initiated=form.allow_idp_initiated.data,
            actor=current_user.actor,
            **checked,
        )
    except UserError as exc:
        return _refused(found, form, [exc], title)
    return _saved(found, provider, "added")


@bp.route("/<customer>/oidc/new", methods=["GET", "POST"])
@login_required
def new_oidc(customer: str):
    found = _customer(customer)
    form, title = OidcForm(), "Add an OpenID Connect provider"
    if not form.is_submitted():
        return _form_page(found, form, title)

    name = (form.name.data or "").strip()
    url, checked = (form.discovery_url.data or "").strip(), _new_oidc_settings(form)
    if not form.validate():  # the operation's checks still name the other wrong fields
        refused = provider_checks.oidc_provider_errors(found, name, url, **checked)
        return _refused(found, form, refused, title)
    try:
        provider = operations.add_oidc_provider(
            found,
            name,
            url,
            match_claim=(form.match_claim.data or "").strip(),
            actor=current_user.actor,
            **checked,
        )
    except UserError as exc:
        return _refused(found, form, [exc], title)
    return _saved(found, provider, "added")


def _new_saml_settings(form: SamlForm) -> dict:
    """The add form's settings that saml_provider_errors checks, as add_saml_provider takes
    them."""
    return {
        "label": form.label.data or "",
        "match": form.match.data,
        "match_attribute": (form.match_attribute.data or "").strip(),
        "email_domains": domains.parse_domains(form.email_domains.data),
    }


def _new_oidc_settings(form: OidcForm) -> dict:
    """The add form's settings that oidc_provider_errors checks, as add_oidc_provider takes
    them."""
    return {
        "client_id": (form.client_id.data or "").strip(),
        "client_secret": form.client_secret.data or "",
        "scopes": " ".join((form.scopes.data or "openid").split()),
        "label": form.label.data or "",
        "match": form.match.data,
        "email_domains": domains.parse_domains(form.email_domains.data),
    }


@bp.route("/<customer>/<id:provider_id>/edit", methods=["GET", "POST"])
@login_required
def edit(customer: str, provider_id: int):
    found = _customer(customer)
    provider = _provider(found, provider_id)
    form = EditForm(data=_edit_data(provider))
    if provider.kind == ProviderKind.OIDC:
        form.match.choices = OIDC_MATCHES
    if provider.setting("metadata_url"):
        form.refetch_metadata.label.text = (
            f"Fetch the metadata again from {provider.setting('metadata_url')} now"
        )
    title = f"Edit {provider.name}"
    if not form.validate_on_submit():
        return _form_page(found, form, title, provider=provider)

    try:
        _apply_edit(provider, form)
    except UserError as exc:
        return _refused(found, form, [exc], title, provider=provider)
    return _saved(found, provider, "saved")


@bp.route("/<customer>/<id:provider_id>/delete", methods=["POST"])
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


def _metadata(form, *, required: bool) -> tuple[str | None, str]:
    """(metadata XML, the URL it came from) from exactly one of paste, upload and URL, or
    (None, "") when none is given and none is `required`. Refusals name the field given;
    `form.metadata_source` remembers it for later refusals about the metadata."""
    pasted = (form.metadata_xml.data or "").strip()
    upload = form.metadata_file.data
    url = (form.metadata_url.data or "").strip()
    given = [bool(pasted), bool(upload and upload.filename), bool(url)]
    if not any(given) and not required:
        return None, ""
    if sum(given) != 1:
        raise FieldRefused(
            "metadata_xml",
            "Metadata: paste the XML, upload the file or give the URL (exactly one of them).",
        )
    name, label = METADATA_FIELDS[given.index(True)]
    form.metadata_source = name
    try:
        xml = _read_metadata(pasted, upload, url)
        idp_metadata.idp_entity_id(xml)
    except UserError as exc:
        raise FieldRefused(name, f"{label}: {exc}") from None
    return xml, url


def _read_metadata(pasted: str, upload, url: str) -> str:
    if url:
        return idp_metadata.fetch_metadata(url)
    if pasted:
        return idp_metadata.metadata_text(pasted, what="The pasted metadata")
    raw = upload.read(idp_metadata.MAX_METADATA_BYTES + 1)  # a larger file is refused unread
    return idp_metadata.metadata_text(raw, what="The file")


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
    if provider.kind == ProviderKind.SAML:
        _replace_metadata(provider, form)
    elif form.client_secret.data:
        operations.set_client_secret(provider, form.client_secret.data, actor=current_user.actor)
    if not form.is_enabled.data:
        operations.set_provider_enabled(provider, False, actor=current_user.actor)
    domains.set_email_domains(
        provider, domains.parse_domains(form.email_domains.data), actor=current_user.actor
    )
    if form.is_enabled.data:
        operations.set_provider_enabled(provider, True, actor=current_user.actor)


def _replace_metadata(provider: IdentityProvider, form: EditForm) -> None:
    """New metadata from the form, or the same URL fetched again; nothing given: keep it."""
    if form.refetch_metadata.data and provider.setting("metadata_url"):
        form.metadata_source = "refetch_metadata"
        if _metadata(form, required=False)[0] is not None:
            raise FieldRefused(
                "refetch_metadata", "Metadata: fetch it again or give new metadata, not both."
            )
        result = idp_metadata.refresh_metadata(provider, actor=current_user.actor)
        if result.error:
            raise FieldRefused("refetch_metadata", f"Metadata URL: {result.error}")
        return
    xml, url = _metadata(form, required=False)
    if xml is not None:
        idp_metadata.replace_metadata(provider, xml, metadata_url=url, actor=current_user.actor)


def _describe(provider: IdentityProvider) -> dict:
    """What the list shows of a provider beyond its columns."""
    if provider.kind == ProviderKind.OIDC:
        return {
            "source": provider.setting("discovery_url"),
            "validity": None,
            "value": provider.setting("match_claim"),
            "refused": _address_refused(provider),
        }
    return {
        "source": provider.setting("metadata_url") or "pasted or uploaded",
        "validity": queries.metadata_validity(provider),
        "value": provider.setting("match_attribute"),
        "refused": "",
    }


def _address_refused(provider: IdentityProvider | None) -> str:
    """Why logins through an OIDC provider fail when the address policy refuses the
    discovery address it was added with (under an earlier policy); "" when it does not."""
    if provider is None or provider.kind != ProviderKind.OIDC:
        return ""
    refusal = policy_refusal(provider.setting("discovery_url"))
    if refusal is None:
        return ""
    return (
        f"Logins through {provider.name} fail: its discovery address {refusal} Ask the "
        "platform operator to allow it, or add the provider again with an https:// address "
        "on a public network."
    )


def _sp_addresses(slug: str, provider: IdentityProvider | None = None) -> dict:
    """The addresses an IT admin copies into their IdP: all of them, or a provider's kind's
    (with its own login address)."""
    base = (current_app.config["KURSA"]["web"]["base_url"] or request.host_url).rstrip("/")
    saml = {
        "SAML SP entity id": f"{base}/sso/{slug}/saml/metadata",
        "SAML SP metadata": f"{base}/sso/{slug}/saml/metadata",
        "SAML ACS (Assertion Consumer Service, POST)": f"{base}/sso/{slug}/saml/acs",
        "SAML single logout (SLS, Redirect)": f"{base}/sso/{slug}/saml/sls",
    }
    oidc = {
        "OIDC redirect URI": f"{base}/sso/{slug}/oidc/callback",
        "OIDC post-logout redirect URI": f"{base}/sso/{slug}/oidc/logged-out",
    }
    if provider is None:
        return {**saml, **oidc, "Login page for your staff": f"{base}/login/{slug}"}
    own = saml if provider.kind == ProviderKind.SAML else oidc
    login = f"{base}{queries.login_address(slug, provider.name)}"
    return {**own, "Login through this provider (a start page or IdP link)": login}


def _form_page(
    customer, form, title: str, provider: IdentityProvider | None = None, form_error: str = ""
):
    status = 400 if request.method == "POST" else 200
    page = render_template(
        "sso/admin_form.html",
        customer=customer,
        form=form,
        title=title,
        provider=provider,
        form_error=form_error,
        addresses=_sp_addresses(customer.slug, provider) if provider else {},
        address_refused=_address_refused(provider),
    )
    return page, status


def _refused(customer, form, refused: list[UserError], title: str, provider=None):
    """Show each refusal under the field it concerns (at the top when none), except where
    the form itself refused that field already; save nothing."""
    db.session.rollback()
    on_top = []
    for exc in (each for error in refused for each in getattr(error, "errors", [error])):
        field = _field_of(form, exc)
        if field is None:
            on_top.append(str(exc))
        elif not field.errors:
            field.errors = [str(exc)]
    return _form_page(customer, form, title, provider, form_error=" ".join(on_top))


def _field_of(form, exc: UserError):
    """The form field a refusal concerns; "metadata" is the field the metadata came from."""
    name = getattr(exc, "field", "")
    if name == "metadata":
        name = getattr(form, "metadata_source", "metadata_xml")
    return form[name] if name and name in form else None


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
