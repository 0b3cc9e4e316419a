"""Local login for platform admins (staff log in through their company's SSO)."""

from datetime import timedelta

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from portal.accounts.operations import authenticate
from portal.accounts.sessions import end_current_session, start_session
from portal.core.db import db

bp = Blueprint("accounts", __name__)


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired("Enter your username.")])
    password = PasswordField("Password", validators=[DataRequired("Enter your password.")])


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    if form.validate_on_submit():
        web = current_app.config["KURSA"]["web"]
        account = authenticate(
            form.username.data,
            form.password.data,
            max_failures=web["max_failed_logins"],
            lockout=timedelta(minutes=web["lockout_minutes"]),
        )
        if account is not None:
            start_session(account, "local")
        db.session.commit()
        if account is not None:
            return redirect(_safe_next(request.args.get("next")))
        flash(
            "That username and password do not match, or the account is locked for a while.",
            "error",
        )
    return render_template("accounts/login.html", form=form)


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


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("directory.tree")
