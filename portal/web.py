"""The portal's web plumbing: logins, CSRF, error pages, navigation, template helpers."""

import logging
import uuid
from datetime import timedelta

from flask import Flask, g, render_template, request
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from portal.core.db import db
from portal.core.errors import UserError
from portal.core.time import format_local

logger = logging.getLogger(__name__)
login_manager = LoginManager()
csrf = CSRFProtect()


def init_app(app: Flask) -> None:
    from portal.accounts.models import Account
    from portal.accounts.views import bp as accounts_bp
    from portal.directory.views import bp as directory_bp

    login_manager.init_app(app)
    login_manager.login_view = "accounts.login"
    login_manager.login_message = "Please log in to see that page."
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_account(account_id: str):
        return db.session.get(Account, int(account_id))

    csrf.init_app(app)
    app.permanent_session_lifetime = timedelta(hours=12)
    app.extensions["kursa_navigation"] = []
    add_navigation(app, "Organisation", "directory.tree")
    add_navigation(app, "Persons", "directory.persons")

    app.register_blueprint(accounts_bp)
    app.register_blueprint(directory_bp)
    app.jinja_env.filters["local_time"] = format_local
    app.before_request(_assign_request_id)
    app.context_processor(lambda: {"navigation": app.extensions["kursa_navigation"]})
    app.register_error_handler(UserError, _user_error)
    app.register_error_handler(404, _not_found)
    app.register_error_handler(500, _server_error)


def add_navigation(app: Flask, label: str, endpoint: str) -> None:
    """Add a link to the top navigation (sync and sso attach their pages this way)."""
    app.extensions["kursa_navigation"].append((label, endpoint))


def _assign_request_id() -> None:
    g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex[:16]


def _user_error(exc: UserError):
    db.session.rollback()
    return render_template("error.html", message=str(exc)), exc.status_code


def _not_found(exc):
    return render_template("error.html", message="There is nothing here, or it is not yours "
                           "to see."), 404


def _server_error(exc):
    db.session.rollback()
    logger.error("request %s failed", g.get("request_id"), exc_info=exc)
    return render_template("error.html", message="Something went wrong on our side. Quote "
                           f"reference {g.get('request_id')} if you contact support."), 500
