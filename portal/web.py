"""The portal's web plumbing: logins, CSRF, error pages, navigation, template helpers."""

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from flask import Blueprint, Flask, current_app, g, render_template, request, url_for
from flask_login import LoginManager, current_user
from flask_sqlalchemy.pagination import Pagination
from flask_wtf.csrf import CSRFError, CSRFProtect
from markupsafe import Markup
from sqlalchemy import Select
from sqlalchemy.exc import DataError

from portal.core import access, addresses
from portal.core.access import Scope
from portal.core.db import db
from portal.core.errors import UserError
from portal.core.time import format_local

logger = logging.getLogger(__name__)
login_manager = LoginManager()
csrf = CSRFProtect()

# The hand-written style sheet; the repository keeps it beside the templates.
ui = Blueprint(
    "ui",
    __name__,
    static_folder=str(Path(__file__).resolve().parent.parent / "templates" / "static"),
    static_url_path="/assets",
)

# A person panel takes a Person and returns HTML (or None) for the person page. Other
# packages (sync, later sso and courses) add sections there without portal importing them.
PersonPanel = Callable[[object], Markup | str | None]
# A banner returns HTML (or None) for the top of the page being shown: sync flags the runs that
# need someone on the organisation page this way.
Banner = Callable[[], Markup | str | None]
# (page - 1) * per_page must stay a 64-bit integer, the largest OFFSET SQLite and PostgreSQL take.
MAX_PAGE = 2**31 - 1


def init_app(app: Flask) -> None:
    from portal.accounts import sessions
    from portal.accounts.queries import actor_name
    from portal.accounts.views import bp as accounts_bp
    from portal.directory.views import bp as directory_bp

    login_manager.init_app(app)
    login_manager.login_view = "accounts.login"
    login_manager.login_message = "Please log in to see that page."
    login_manager.session_protection = "strong"

    # The cookie names a server-side session; no live session, no account.
    login_manager.user_loader(sessions.load_account)

    csrf.init_app(app)
    # The cookie outlives no session; the server-side row is what really ends a login.
    lifetime = app.config["KURSA"]["web"]["session_lifetime_minutes"]
    app.permanent_session_lifetime = timedelta(minutes=lifetime)
    app.extensions["kursa_navigation"] = []
    app.extensions["kursa_person_panels"] = []
    app.extensions["kursa_banners"] = []
    add_navigation(app, "Organisation", "directory.tree", access.holding(access.ORGANISATION_ROLES))
    add_navigation(app, "Persons", "directory.persons", access.holding(access.DIRECTORY_ROLES))

    app.register_blueprint(ui)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(directory_bp)
    app.jinja_env.filters["local_time"] = format_local
    app.jinja_env.filters["actor_name"] = actor_name
    app.jinja_env.globals["url_with"] = url_with
    app.jinja_env.globals["banners"] = banners
    app.before_request(_assign_request_id)
    sessions.init_app(app)
    # After the session is known, so that the 404 page shows the account's links as any does.
    app.before_request(addresses.refuse_nul_in_query)
    app.context_processor(_page_links)
    app.register_error_handler(UserError, _user_error)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(404, _not_found)
    app.register_error_handler(DataError, _value_not_storable)
    app.register_error_handler(500, _server_error)


def add_navigation(
    app: Flask, label: str, endpoint: str, visible: Callable[[Scope], bool] | None = None
) -> None:
    """Add a link to the top navigation (sync and sso attach their pages this way).

    `visible` tells from the account's scope whether the link is shown (default: to everyone
    logged in), so an employee sees no links to pages that would be empty for them. It hides a
    link only: each page still checks access itself.
    """
    app.extensions["kursa_navigation"].append((label, endpoint, visible))


def _page_links() -> dict:
    """What every page links to: the navigation, and the start page (the login page for a
    visitor) behind the brand and an error page's way back."""
    if not current_user.is_authenticated:
        return {"navigation": [], "home": url_for("accounts.login")}
    scope = access.scope_of(current_user)
    return {"navigation": navigation(scope), "home": url_for(home_endpoint(scope))}


def navigation(scope: Scope) -> list[tuple[str, str]]:
    """(label, endpoint) of the links an account with `scope` is shown."""
    links = current_app.extensions["kursa_navigation"]
    return [(label, endpoint) for label, endpoint, shown in links if not shown or shown(scope)]


def home_endpoint(scope: Scope) -> str:
    """Where an account starts (`/` and the page after login lead there): HR, IT admins and
    platform admins on the organisation, a course admin on the activities they manage, an
    employee on the course catalogue of their unit."""
    if access.holding(access.ORGANISATION_ROLES)(scope):
        return "directory.tree"
    if access.holding(access.COURSE_MANAGERS)(scope):
        return "courses.manage"
    return "courses.catalogue_page"


HOME_LABELS = {
    "accounts.login": "Log in",
    "directory.tree": "Back to the organisation",
    "courses.manage": "Back to your activities",
    "courses.catalogue_page": "Back to the courses",
}


def _home_of_current_user() -> str:
    if not current_user.is_authenticated:
        return "accounts.login"
    return home_endpoint(access.scope_of(current_user))


def add_person_panel(app: Flask, panel: PersonPanel) -> None:
    """Add a section to the person page (sync adds the person's change history this way)."""
    app.extensions["kursa_person_panels"].append(panel)


def person_panels(person) -> list[Markup]:
    """The HTML of every registered person panel that has something to say about `person`."""
    shown = (panel(person) for panel in current_app.extensions.get("kursa_person_panels", []))
    return [Markup(html) for html in shown if html]


def add_banner(app: Flask, banner: Banner) -> None:
    """Add a banner to the top of pages; it decides itself on which pages it says something."""
    app.extensions["kursa_banners"].append(banner)


def banners() -> list[Markup]:
    """The HTML of every registered banner that has something to say on this page."""
    shown = (banner() for banner in current_app.extensions.get("kursa_banners", []))
    return [Markup(html) for html in shown if html]


def url_with(**changes) -> str:
    """The current page's URL with some query arguments changed (pagination, filters)."""
    args = {**(request.view_args or {}), **request.args.to_dict(), **changes}
    return url_for(request.endpoint, **{k: v for k, v in args.items() if v not in (None, "")})


def paginate(query: Select, per_page: int) -> Pagination:
    """The page of `query` that ?page= asks for; past the end, the last page.

    A bookmarked or hand-typed page number beyond the results would otherwise show a count,
    no rows and no links back; one beyond MAX_PAGE would make an OFFSET the database refuses.
    """
    asked = min(request.args.get("page", 1, type=int), MAX_PAGE)
    page = db.paginate(query, page=asked, per_page=per_page, error_out=False)
    if page.page > page.pages > 0:
        page = db.paginate(query, page=page.pages, per_page=per_page, error_out=False)
    return page


def _assign_request_id() -> None:
    g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex[:16]


def _error_page(message: str, status: int):
    label = HOME_LABELS[_home_of_current_user()]
    return render_template("error.html", message=message, home_label=label), status


def _user_error(exc: UserError):
    db.session.rollback()
    return _error_page(str(exc), exc.status_code)


def _csrf_error(exc: CSRFError):
    logger.warning("request %s refused: %s", g.get("request_id"), exc.description)
    message = "The form had expired or was sent from elsewhere. Go back, reload it and try again."
    return _error_page(message, 400)


def _not_found(exc):
    return _error_page("There is nothing here, or it is not yours to see.", 404)


def _value_not_storable(exc: DataError):
    """A NUL that PostgreSQL refuses (psycopg, before sending) in a form field that no form
    checked: the sender's mistake, so a 400 that names no value. Other data errors are the
    server faults they were."""
    if "NUL" not in str(exc.orig):
        raise exc
    db.session.rollback()
    logger.warning("request %s refused: a NUL character in a value", g.get("request_id"))
    message = "The form held a character Kursa cannot store (NUL). Remove it and send it again."
    return _error_page(message, 400)


def _server_error(exc):
    db.session.rollback()
    logger.error("request %s failed", g.get("request_id"), exc_info=exc)
    message = (
        "Something went wrong on our side. "
        f"Quote reference {g.get('request_id')} if you contact support."
    )
    return render_template("error.html", message=message), 500
