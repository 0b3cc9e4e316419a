"""Fixtures: the portal on SQLite and on PostgreSQL, factories for customers, files, admins.

Every database test runs once per engine. The schema is built by the real migrations once
per engine; after each test every table is emptied, so no test sees another's rows.
"""

import csv
import io

import flask_migrate
import pytest
from sqlalchemy import text

from app import create_app
from portal.accounts.operations import create_admin
from portal.core.db import db
from portal.directory.operations import create_customer
from sync.runs import FileInput, import_files
from tests.servers.postgres import PostgresServer

ENGINES = ("sqlite", "postgresql")
ADMIN_PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def settings_for(url: str, **sections) -> dict:
    settings = {
        "database": {"url": url},
        "web": {"secret_key": "test-secret-key"},
        # Tests of other rules inactivate a third of a tiny customer; guard tests set limits.
        "sync": {"guard_max_inactivations": 1000, "guard_max_inactivation_share": 1.0},
    }
    for section, values in sections.items():
        settings.setdefault(section, {}).update(values)
    return settings


@pytest.fixture(scope="session")
def database_url(request, tmp_path_factory):
    """A factory: a fresh, migrated database of the given engine, by name."""
    made = {}

    def make(engine: str, name: str = "kursa") -> str:
        if (engine, name) in made:
            return made[engine, name]
        if engine == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp(name) / 'kursa.db'}"
        else:
            url = request.getfixturevalue("postgres_server").create_database(name)
        app = create_app(settings_for(url), environ={})
        with app.app_context():
            flask_migrate.upgrade(revision="heads")
            db.engine.dispose()
        made[engine, name] = url
        return url

    return make


@pytest.fixture(scope="session", params=ENGINES)
def engine_app(request, database_url):
    app = create_app(settings_for(database_url(request.param)), environ={})
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=True)
    app.config["KURSA_ENGINE"] = request.param
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def app(engine_app):
    with engine_app.app_context():
        yield engine_app
        db.session.remove()
        empty_tables()


def empty_tables() -> None:
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            return
        conn.execute(text("UPDATE customers SET root_unit_id = NULL"))
        for table in tables:
            conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def make_customer(app):
    def make(slug="acme", name=None, prefix="", match_by="number"):
        customer = create_customer(
            slug, name or slug.title(), actor="test", username_prefix=prefix, match_by=match_by
        )
        db.session.commit()
        return customer

    return make


@pytest.fixture
def customer(make_customer):
    return make_customer()


def csv_bytes(rows: list[list[str]], delimiter=";", encoding="utf-8") -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode(encoding)


ORG_HEADER = ["Number", "Name", "Parent", "Kind"]
PERSON_HEADER = [
    "Username",
    "First name",
    "Last name",
    "Email",
    "Employee number",
    "Division number",
]


@pytest.fixture
def import_csv(app):
    """Import org and person rows (without headers) through the real file path."""

    def run(
        customer,
        units,
        persons,
        *,
        dry_run=False,
        actor="test",
        org_header=None,
        person_header=None,
    ):
        org = FileInput("org.csv", csv_bytes([org_header or ORG_HEADER, *units]))
        people = FileInput("persons.csv", csv_bytes([person_header or PERSON_HEADER, *persons]))
        return import_files(customer, org, people, actor=actor, dry_run=dry_run)

    return run


@pytest.fixture
def guard_limits(app, monkeypatch):
    """Set the mass-inactivation guard for one test."""

    def limit(count: int, share: float) -> None:
        sync = app.config["KURSA"]["sync"]
        monkeypatch.setitem(sync, "guard_max_inactivations", count)
        monkeypatch.setitem(sync, "guard_max_inactivation_share", share)

    return limit


@pytest.fixture
def admin(app):
    account = create_admin("root-admin", ADMIN_PASSWORD, actor="test")
    db.session.commit()
    return account


@pytest.fixture
def admin_client(client, admin):
    """A test client logged in as a platform admin (through the real login form)."""
    page = client.get("/login")
    token = _csrf_token(page.get_data(as_text=True))
    response = client.post(
        "/login", data={"username": admin.username, "password": ADMIN_PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def _csrf_token(html: str) -> str:
    marker = 'name="csrf_token" type="hidden" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def csrf_token(client, url: str) -> str:
    return _csrf_token(client.get(url).get_data(as_text=True))
