"""The login page: staff find their company's sign-in by their work email's domain (home realm
discovery) or by a button per provider; platform admins log in locally (break-glass)."""

from datetime import timedelta

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Regexp

from portal.accounts.operations import authenticate
from portal.accounts.sessions import end_current_session, start_session
from portal.core.addresses import CONTROL_CHARACTERS
from portal.core.db import db
from portal.core.ratelimit import RETRY_AFTER, allow
from portal.core.urls import local_path
from portal.directory.queries import customer_by_slug

bp = Blueprint("accounts", __name__)
NO_PROVIDER = (
    "Kursa does not know a company sign-in for that email address. Check the address, or use "
    "the link your company gave you."
)
TOO_MANY = (
    "Too many login attempts came from your address in the last minute. "
    "Wait a minute and try again."
)
LOGIN_FORM_SCOPE = "login-form"
# No username or email address holds a control character, and PostgreSQL refuses a NUL in the
# lookup (a 500 whose log carried what was typed): the forms refuse them first.
NO_CONTROL_CHARACTERS = rf"^[^{CONTROL_CHARACTERS}]*\Z"
_EMAIL_PART = rf"[^@\s{CONTROL_CHARACTERS}]+"
EMAIL = rf"^{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}\Z"


class LoginForm(FlaskForm):
    username = StringField(
        "Username",
        validators=[
            DataRequired("Enter your username."),
            Regexp(NO_CONTROL_CHARACTERS, message="Username: no control characters."),
        ],
    )
    password = PasswordField("Password", validators=[DataRequired("Enter your password.")])


class EmailForm(FlaskForm):
    email = EmailField(
        "Work email",
        filters=[lambda value: value.strip() if value else value],
        validators=[
            DataRequired("Enter your work email address."),
            Regexp(EMAIL, message="Work email: enter it as name@company.com."),
        ],
    )


@bp.route("/login", methods=["GET", "POST"])
@bp.route("/login/<customer>", methods=["GET", "POST"])
def login(customer: str | None = None):
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    slug = customer or request.args.get("customer", "")
    if request.method == "POST" and not _allow_attempt():
        return render_template("accounts/too_many.html", message=TOO_MANY), 429, RETRY_AFTER
    if request.method == "POST" and "email" in request.form:
        return _find_sign_in(slug)
    form = LoginForm()
    if form.validate_on_submit():
        if (account := _authenticate(form)) is not None:
            start_session(account, "local")
            db.session.commit()
            return redirect(_safe_next(request.args.get("next")))
        flash(
            "That username and password do not match, or the account is locked for a while.",
            "error",
        )
    return _page(slug, EmailForm(formdata=None), form)


def _allow_attempt() -> bool:
    """Both forms count per client address: guessing domains or passwords from one address
    is slowed down, while the per-account lockout protects each admin from many addresses."""
    limit = current_app.config["KURSA"]["web"]["login_attempts_per_minute"]
    allowed = allow(LOGIN_FORM_SCOPE, request.remote_addr or "", limit)
    db.session.commit()  # the count (or the purge of old rows) stands whatever follows
    return allowed


def _find_sign_in(slug: str):
    """Home realm discovery: the email's domain leads to one enabled provider, or to none."""
    email_form = EmailForm()
    if email_form.validate_on_submit():
        sso = _sso_login()
        address = sso["by_email"](email_form.email.data, _next_path()) if sso else None
        if address is not None:
            return redirect(address)
        email_form.email.errors = [NO_PROVIDER]
    return _page(slug, email_form, LoginForm(formdata=None))


def _page(slug: str, email_form: EmailForm, admin_form: LoginForm):
    sso = _sso_login()
    buttons = sso["buttons"](slug, _next_path()) if slug and sso else []
    admin_open = request.method == "POST" and "username" in request.form
    # The customer is named where the page offers its sign-ins; without them the page of a
    # customer is the same as that of an address no customer has, so it tells no one which
    # customers exist.
    customer = customer_by_slug(slug) if buttons else None
    return render_template(
        "accounts/login.html",
        customer=customer,
        form=admin_form,
        email_form=email_form,
        buttons=buttons,
        admin_open=admin_open or request.args.get("admin") == "1",
    )


def _authenticate(form: LoginForm):
    web = current_app.config["KURSA"]["web"]
    account = authenticate(
        form.username.data,
        form.password.data,
        max_failures=web["max_failed_logins"],
        lockout=timedelta(minutes=web["lockout_minutes"]),
    )
    db.session.commit()
    return account


def _sso_login() -> dict | None:
    """What sso registered for the login page (absent when the app runs without sso)."""
    return current_app.extensions.get("kursa_sso_login")


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """End Kursa's session; an SSO login then goes on to end the provider's session too."""
    target = end_current_session()
    db.session.commit()
    if target:
        return redirect(target)
    flash("You are logged out.", "info")
    return redirect(url_for("accounts.login"))


def _next_path() -> str:
    """The local page to return to after an SSO login ("" when none or not local)."""
    target = request.args.get("next")
    return target if _is_local(target) else ""


def _safe_next(target: str | None) -> str:
    if _is_local(target):
        return target
    return url_for("directory.tree")


def _is_local(target: str | None) -> bool:
    return local_path(target) is not None
