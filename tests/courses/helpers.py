"""A customer with two branches, persons in each, logins with roles, activities: shared by the
course tests and the access tests."""

from datetime import timedelta

import pytest
from flask import g
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.accounts.models import Account, LoginSession
from portal.accounts.sessions import SESSION_KEY
from portal.core import access
from portal.core.db import db, utcnow
from portal.courses.operations import create_activity
from portal.directory.models import OrgUnit, Person
from portal.web import login_manager

# Acme: Sales (10) with North (11) and South (12); Finance (20). Hanne is HR of Sales.
UNITS = [
    ["10", "Sales", "", "department"],
    ["11", "Sales North", "10", "location"],
    ["12", "Sales South", "10", "location"],
    ["20", "Finance", "", "department"],
]
# Usernames are ids (the import refuses names); tests call persons by first name.
USERNAMES = {"anna": "u111", "bo": "u121", "dina": "u201", "hanne": "u101", "finn": "u202"}
PERSONS = [
    ["u111", "Anna", "Berg", "anna@acme.test", "E-1", "11"],
    ["u121", "Bo", "Dahl", "bo@acme.test", "E-2", "12"],
    ["u201", "Dina", "Falk", "dina@acme.test", "E-3", "20"],
    ["u101", "Hanne", "Holm", "hanne@acme.test", "E-4", "10"],
    ["u202", "Finn", "Juul", "finn@acme.test", "E-5", "20"],
]


@pytest.fixture
def acme(customer, import_csv):
    run = import_csv(customer, UNITS, PERSONS)
    assert run.status == "applied", run.error
    return customer


@pytest.fixture
def unit(acme):
    def find(number: str | None) -> OrgUnit:
        if number is None:
            return acme.root_unit
        return db.session.scalar(
            select(OrgUnit).where(OrgUnit.customer_id == acme.id, OrgUnit.number == number)
        )

    return find


@pytest.fixture
def person(acme):
    def find(username: str) -> Person:
        username = USERNAMES.get(username, username)
        return db.session.scalar(select(Person).where(Person.username == username))

    return find


@pytest.fixture
def account_of(person, unit):
    """The account of a person, with `role` granted at unit `number` when given."""

    def make(username: str, role: str | None = None, number: str | None = None) -> Account:
        who = person(username)
        if role:
            access.grant_role(who, role, unit(number), actor="test")
        account = db.session.scalar(select(Account).where(Account.person_id == who.id))
        if account is None:
            account = Account(username=who.username, person_id=who.id)
            db.session.add(account)
        db.session.commit()
        return account

    return make


class PersonClient(FlaskClient):
    """A test client for one person. The tests' app context is shared by every request, and
    Flask-Login and Flask-WTF cache the user and the CSRF token in `g`: forget them, so two
    clients in one test stay apart."""

    def open(self, *args, **kwargs):
        g.pop("_login_user", None)
        g.pop("csrf_token", None)
        return super().open(*args, **kwargs)


@pytest.fixture
def login_as(app, account_of):
    """A test client logged in as a person (staff log in by SSO; here the session is set)."""

    clients = []

    def login(username: str, role: str | None = None, number: str | None = None):
        account = account_of(username, role, number)
        client = PersonClient(app, app.response_class, use_cookies=True)
        with app.test_request_context(environ_base=client.environ_base):
            # "strong" session protection ties the session to the client's address and agent
            identifier = login_manager._session_identifier_generator()
        # The cookie names a server-side session, as after a real login.
        now = utcnow()
        row = LoginSession(
            id=f"test-{account.id}-{len(clients)}",
            account_id=account.id,
            kind="sso",
            created_at=now,
            last_seen_at=now,
        )
        clients.append(row.id)
        db.session.add(row)
        db.session.commit()
        with client.session_transaction() as session:
            session[SESSION_KEY] = row.id
            session["_user_id"] = str(account.id)
            session["_fresh"] = True
            session["_id"] = identifier
        return client

    return login


@pytest.fixture
def make_activity(unit):
    """A published activity in a week, owned by unit `number`, signup open until it starts."""

    def make(number: str | None = "10", capacity: int = 10, publish: bool = True, **fields):
        starts = fields.pop("starts_at", utcnow() + timedelta(days=7))
        activity = create_activity(
            unit(number),
            title=fields.pop("title", "First aid"),
            starts_at=starts,
            ends_at=fields.pop("ends_at", starts + timedelta(hours=3)),
            capacity=capacity,
            publish=publish,
            actor="test",
            **fields,
        )
        db.session.commit()
        return activity

    return make
