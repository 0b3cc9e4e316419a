"""Composition root: create_app() wires the portal, directory sync and single sign-on."""

import logging
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import click
from flask import Flask
from flask_migrate import Migrate
from werkzeug.middleware.proxy_fix import ProxyFix

import config
from portal.core import addresses, ids
from portal.core.db import db, json_text

MIGRATIONS = str(Path(__file__).with_name("portal") / "migrations")
logger = logging.getLogger("kursa")


def create_app(overrides: dict | None = None, environ=None) -> Flask:
    """Build the portal. `overrides` are settings in the shape of defaults.toml (tests use it).

    A wrong setting raises config.ConfigError, except when a `flask ...` command (`flask run`
    too) builds the app: there it is one line on stderr and exit code 1, since the message
    says all there is to fix and a traceback would bury it.
    """
    try:
        return _build_app(overrides, environ)
    except config.ConfigError as exc:
        if click.get_current_context(silent=True) is None:
            raise
        click.echo(f"Error: {exc}", err=True)  # as click.ClickException words a refusal
        # SystemExit, not a click exception: `flask --help` prints a traceback for any
        # exception while it lists the app's commands.
        sys.exit(1)


def _build_app(overrides: dict | None, environ) -> Flask:
    settings = config.load_config(environ=environ, overrides=overrides)
    app = Flask(__name__, instance_relative_config=True, template_folder="templates")
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    database_url = _database_url(app, settings)
    app.config.update(
        KURSA=settings,
        SQLALCHEMY_DATABASE_URI=database_url,
        SQLALCHEMY_ECHO=settings["database"]["echo"],
        # A database server may drop idle connections (restart, failover): ping at checkout.
        # A SQLite file has no server to lose, and the ping is a statement on every request.
        SQLALCHEMY_ENGINE_OPTIONS={
            "pool_pre_ping": not database_url.startswith("sqlite"),
            "json_serializer": json_text,
            # A failed statement's message (logged with a 500) and echo leave out the values:
            # they may be what someone typed (a name, an email address).
            "hide_parameters": True,
        },
        SECRET_KEY=settings["web"]["secret_key"] or _stored_secret(app),
        MAX_CONTENT_LENGTH=settings["web"]["max_upload_mb"] * 1024 * 1024,
        SESSION_COOKIE_SECURE=settings["web"]["secure_cookies"],
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_DURATION=timedelta(hours=12),
        WTF_CSRF_TIME_LIMIT=None,
    )
    _configure_logging(settings)
    _warn_about_settings(settings)

    _trust_proxies(app, settings["web"]["trusted_proxies"])
    db.init_app(app)
    Migrate(app, db, directory=MIGRATIONS)
    ids.register(app)  # `<id:...>` in the routes below: only ids a database column holds
    addresses.register(app)  # and their names and slugs: no control characters
    _register(app)
    return app


def _register(app: Flask) -> None:
    # Imported here so that every model is known to the metadata before migrations run.
    from portal import web
    from portal.accounts.cli import account_cli, role_cli
    from portal.accounts.role_views import bp as roles_bp
    from portal.accounts.sessions import register_purge_job
    from portal.core import access
    from portal.courses import (
        calendar_views,
        manage_views,  # noqa: F401  (its routes join the courses blueprint)
        outbox,
    )
    from portal.courses import views as course_views
    from portal.courses.cli import activity_cli
    from portal.directory.cli import customer_cli, directory_cli
    from sso import admin_views as sso_admin_views
    from sso import queries as sso_queries
    from sso import saml as sso_saml
    from sso import views as sso_views
    from sso.cli import sso_cli
    from sync import cli as sync_cli
    from sync import drop_views, history, schedule_cli, sources_views
    from sync import models as sync_models  # noqa: F401
    from sync import views as sync_views

    web.init_app(app)
    app.register_blueprint(sync_views.bp)
    # templates/sync/_chart.html sizes the chart's y-axis (its label and margin) with it.
    app.add_template_global(history.chart_axis)
    syncs = access.holding(access.SYNC_ROLES, whole=True)
    web.add_navigation(app, "Sync runs", "sync.runs", syncs)
    web.add_navigation(app, "Import files", "sync.upload", syncs)
    app.register_blueprint(drop_views.bp)
    app.register_blueprint(sources_views.bp)
    it_admins = access.holding(sources_views.IT["roles"], whole=True)
    web.add_navigation(app, "Directory sources", "sources.sources", it_admins)
    app.register_blueprint(course_views.bp)
    sso_saml.init_app(app)
    app.register_blueprint(sso_views.bp)
    web.csrf.exempt(sso_views.bp)  # the IdP posts the ACS cross-site; the response is signed
    app.register_blueprint(sso_admin_views.bp)
    sso_admins = access.holding(sso_admin_views.IT["roles"], whole=True)
    web.add_navigation(app, "Single sign-on", "sso_admin.index", sso_admins)
    # The login page finds a provider by email domain or lists a customer's (portal cannot
    # import sso, so it asks through here).
    app.extensions["kursa_sso_login"] = {
        "by_email": sso_queries.login_address_for_email,
        "buttons": sso_queries.login_buttons,
    }
    app.register_blueprint(calendar_views.bp)
    web.add_navigation(app, "Courses", "courses.catalogue_page")
    manages = access.holding(access.COURSE_MANAGERS)
    web.add_navigation(app, "Manage courses", "courses.manage", manages)
    app.register_blueprint(roles_bp)
    register_purge_job(app)
    web.add_navigation(app, "Roles", "roles.roles", access.holding(access.ROLE_GRANTERS))

    for command in sync_cli.directory_commands:
        directory_cli.add_command(command)
    app.cli.add_command(customer_cli)
    app.cli.add_command(directory_cli)
    app.cli.add_command(account_cli)
    app.cli.add_command(sync_cli.demo_command)
    app.cli.add_command(schedule_cli.scheduler_cli)
    app.cli.add_command(schedule_cli.drop_cli)
    app.cli.add_command(activity_cli)
    app.cli.add_command(role_cli)
    app.cli.add_command(outbox.outbox_cli)
    app.cli.add_command(sso_cli)


def _trust_proxies(app: Flask, hops: int) -> None:
    """Behind `hops` proxies, take client address, scheme and host from their X-Forwarded-*.

    With 0 the headers are ignored: anyone could send them. The rate limits count per client
    address, and external URLs and secure cookies need the scheme the browser used.
    """
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


def _database_url(app: Flask, settings: dict) -> str:
    url = settings["database"]["url"]
    if url:
        return url
    return "sqlite:///" + str(Path(app.instance_path) / "kursa.db")


def _stored_secret(app: Flask) -> str:
    path = Path(app.instance_path) / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _warn_about_settings(settings: dict) -> None:
    """Settings that work but fall short (they are logged once at start)."""
    from sync.notify import warn_if_links_are_relative

    warn_if_links_are_relative(settings)


def _configure_logging(settings: dict) -> None:
    level = settings["log"]["level"].upper()
    for name in ("kursa", "portal", "sync", "sso", "app"):
        logging.getLogger(name).setLevel(level)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
