"""SSO addresses (exact contract): login, SAML metadata and ACS, OIDC callback.

Parse, call sso, render.
"""

import logging
from urllib.parse import urlencode

import requests
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select

from portal.accounts.sessions import add_logout_handler, start_session
from portal.core.db import db
from portal.core.urls import local_path
from portal.directory.queries import customer_by_slug
from sso import matching, oidc, saml, saml_acs, saml_logout
from sso import metadata as idp_metadata
from sso.linking import LinkRefused, login_person, profile_of
from sso.models import IdentityProvider, ProviderKind
from sso.ratelimit import allow_login_start

logger = logging.getLogger(__name__)
bp = Blueprint("sso", __name__, url_prefix="/sso")
REFUSED_RESPONSE = (
    "Kursa could not accept the answer from your company's sign-in. "
    "Start the login again; if it keeps failing, tell your IT department."
)
LOGOUT_REFUSED = (
    "Kursa could not accept this sign-out message from your company's sign-in. "
    "If you meant to sign out, use Log out in Kursa."
)
TOO_MANY = (
    "Too many sign-ins were started from your address in the last minute. "
    "Wait a minute and try again."
)
UNREACHABLE = (
    "Kursa could not reach your company's sign-in just now. "
    "Try again in a minute; if it keeps failing, tell your IT department."
)


@bp.record_once
def _attach(state) -> None:
    """Logout handlers for the portal, the metadata refresh job for the scheduler."""
    add_logout_handler(
        state.app, "saml", lambda login: saml_logout.start_logout(_base_url(), login)
    )
    add_logout_handler(state.app, "oidc", lambda login: oidc.start_logout(_base_url(), login))
    idp_metadata.init_app(state.app)


@bp.get("/<customer>/<provider>/login")
def login(customer: str, provider: str):
    if not allow_login_start(request.remote_addr or ""):
        db.session.commit()  # the purge of old rows stands
        page = render_template("sso/refused.html", message=TOO_MANY)
        return page, 429, {"Retry-After": "60"}
    found = _provider(customer, provider)
    next_url = _safe_next(request.args.get("next"))
    is_oidc = found.kind == ProviderKind.OIDC
    browser = oidc.browser_key(request.cookies.get(oidc.BROWSER_COOKIE)) if is_oidc else ""
    try:
        if is_oidc:
            location = oidc.start_login(_base_url(), found, next_url, browser=browser)
        else:  # no cookie: the IdP's cross-site POST to the ACS would not carry it
            location = saml.start_login(_base_url(), found, next_url)
    except (requests.RequestException, ValueError) as exc:
        db.session.rollback()
        logger.warning("SSO provider %s could not start a login: %s", found.id, exc)
        return render_template("sso/refused.html", message=UNREACHABLE), 503
    db.session.commit()
    response = redirect(location)
    if is_oidc:
        _set_browser_cookie(response, browser)
    return response


@bp.get("/<customer>/saml/metadata")
def metadata(customer: str):
    xml = saml.sp_metadata(_base_url(), _customer(customer))
    return Response(xml, mimetype="application/samlmetadata+xml")


@bp.post("/<customer>/saml/acs")
def acs(customer: str):
    found = _customer(customer)
    try:
        encoded = request.form.get("SAMLResponse", "")
        verified = saml_acs.verify_response(_base_url(), found, encoded)
        value, looked_in = matching.saml_match(verified)
        account = login_person(
            verified.provider,
            verified.name_id if verified.is_persistent else "",
            value,
            profile=profile_of(verified.attributes),
            looked_in=looked_in,
        )
    except saml_acs.SamlRefused as exc:
        db.session.rollback()
        saml_acs.record_refusal(exc, found)
        db.session.commit()
        return render_template("sso/refused.html", message=REFUSED_RESPONSE), 403
    except LinkRefused as exc:
        db.session.commit()  # the request stays used and the refusal stays audited
        return render_template("sso/refused.html", message=exc.message), 403
    start_session(
        account,
        "saml",
        provider_id=verified.provider.id,
        name_id=verified.name_id,  # linking refused any over 1024 bytes
        name_id_format=verified.name_id_format[:255],
        session_index=verified.session_index[:255],
    )
    db.session.commit()
    return redirect(_safe_next(verified.next_url))


@bp.route("/<customer>/saml/sls", methods=["GET", "POST"])
def sls(customer: str):
    """The IdP's LogoutRequest (answered with a LogoutResponse) or its LogoutResponse."""
    found = _customer(customer)
    try:
        if request.method == "POST":
            done = saml_logout.handle_sls_post(_base_url(), found, request.form)
        else:
            done = saml_logout.handle_sls(_base_url(), found, request.query_string)
    except saml_logout.LogoutRefused as exc:
        db.session.rollback()
        saml_logout.record_refusal(exc, found)
        db.session.commit()
        return render_template("sso/refused.html", message=LOGOUT_REFUSED), 403
    db.session.commit()
    if done.redirect:
        return redirect(done.redirect)
    flash("You are logged out.", "info")
    return redirect(url_for("accounts.login"))


@bp.get("/<customer>/oidc/logged-out")
def oidc_logged_out(customer: str):
    """Where the provider sends the browser after its logout (Kursa's ended before)."""
    found = _customer(customer)
    if oidc.finish_logout(found, request.args.get("state", "")):
        flash("You are logged out.", "info")
    db.session.commit()
    return redirect(url_for("accounts.login"))


@bp.get("/<customer>/oidc/callback")
def oidc_callback(customer: str):
    found = _customer(customer)
    try:
        browser = request.cookies.get(oidc.BROWSER_COOKIE, "")
        stored = oidc.take_state(found, request.args.get("state", ""), browser)
        verified = oidc.finish_login(_base_url(), stored, request.args)
        value, looked_in = matching.oidc_match(verified)
        account = login_person(
            verified.provider,
            verified.subject,
            value,
            profile=profile_of(verified.claims),
            looked_in=looked_in,
        )
    except oidc.OidcRefused as exc:
        db.session.rollback()
        oidc.record_refusal(exc, found, request.args.get("state", ""))
        db.session.commit()
        if exc.restartable:
            target = f"/sso/{found.slug}/{exc.provider.name}/login"
            return redirect(f"{target}?{urlencode({'next': _safe_next(exc.next_url)})}")
        return render_template("sso/refused.html", message=REFUSED_RESPONSE), 403
    except LinkRefused as exc:
        db.session.commit()
        return render_template("sso/refused.html", message=exc.message), 403
    start_session(
        account,
        "oidc",
        provider_id=verified.provider.id,
        name_id=verified.subject,
        id_token=verified.id_token,
    )
    db.session.commit()
    return redirect(_safe_next(verified.next_url))


def _set_browser_cookie(response: Response, key: str) -> None:
    """The OIDC login cookie. The provider's redirect to the callback is a top-level GET, so
    SameSite=Lax carries it; it is sent only under /sso/, and it lasts twice a login request's
    lifetime, so an expired or reloaded callback can still restart in this browser."""
    lifetime = current_app.config["KURSA"]["sso"]["request_lifetime_seconds"]
    response.set_cookie(
        oidc.BROWSER_COOKIE,
        key,
        max_age=2 * lifetime,
        path=f"{request.script_root}/sso/",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )


def _customer(slug: str):
    found = customer_by_slug(slug)
    if found is None:
        abort(404)
    return found


def _provider(slug: str, name: str) -> IdentityProvider:
    found = db.session.scalar(
        select(IdentityProvider).where(
            IdentityProvider.customer_id == _customer(slug).id,
            IdentityProvider.name == name,
            IdentityProvider.is_enabled.is_(True),
        )
    )
    if found is None:
        abort(404)
    return found


def _base_url() -> str:
    return current_app.config["KURSA"]["web"]["base_url"] or request.host_url


def _safe_next(target: str | None) -> str:
    return local_path(target) or "/"
