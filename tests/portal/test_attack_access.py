"""Attacks on who may see and do what: other customers' login set-up, SSO login state handed
to another browser, ids too large for the database, an inactivated employee's live session,
and names of units and categories outside the viewer's branch. Each test asserts the right
outcome: a failing test is a finding (the application is not changed here)."""

from urllib.parse import urlsplit

import pytest
from sqlalchemy import update

from portal.core.db import db
from portal.courses.operations import create_category
from portal.directory.models import Person
from sso import oidc
from sso.keys import write_self_signed_pair
from sso.operations import add_saml_provider
from tests.conftest import _csrf_token, csrf_token
from tests.courses import helpers
from tests.servers.oidc_provider import OidcProviderServer
from tests.sso.conftest import SamlIdp
from tests.sso.providers import add_oidc_for

acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as, make_activity = helpers.account_of, helpers.login_as, helpers.make_activity
BASE_URL = "https://kursa.test"
CALLBACK = f"{BASE_URL}/sso/acme/oidc/callback"
HUGE = "99999999999999999999"  # matches Flask's int converter; no database integer holds it
NOWHERE = "There is nothing here, or it is not yours to see."


def fresh_client(app):
    """A browser with no cookies (a test client that forgets the cached user and token)."""
    return helpers.PersonClient(app, app.response_class, use_cookies=True)


def logged_in_account_id(client) -> str | None:
    with client.session_transaction() as session:
        return session.get("_user_id")


# --- 1. An IT admin claims another customer's email domain ---------------------------------


@pytest.fixture
def globex(make_customer, import_csv):
    customer = make_customer("globex", "Globex")
    run = import_csv(
        customer,
        [["1", "Globex HQ", "", ""]],
        [["g1", "Gus", "Gren", "gus@globex.test", "G-1", "1"]],
    )
    assert run.status == "applied", run.error
    return customer


def test_an_it_admin_cannot_send_another_customers_staff_to_its_own_provider(
    app, acme, globex, login_as, tmp_path
):
    """Acme's IT admin lists globex.test, the domain of Globex's persons, on Acme's IdP (which
    Acme controls). Globex staff typing their work email on /login must not be sent to it:
    they would give their Globex password to a page Acme runs."""
    idp = SamlIdp(write_self_signed_pair(tmp_path / "idp", "idp"))
    provider = add_saml_provider(acme, "corp", idp.metadata, match="email", actor="test")
    db.session.commit()
    it_admin = login_as("finn", "it_admin", None)  # IT admin of the whole of Acme
    page = f"/sso/admin/acme/{provider.id}/edit"
    it_admin.post(
        page,
        data={
            "csrf_token": _csrf_token(it_admin.get(page).get_data(as_text=True)),
            "is_enabled": "y",
            "match": "email",
            "require_signed_assertion": "y",
            "email_domains": "globex.test",
        },
    )

    visitor = fresh_client(app)
    answer = visitor.post(
        "/login", data={"csrf_token": csrf_token(visitor, "/login"), "email": "gus@globex.test"}
    )

    assert not answer.headers.get("Location", "").startswith("/sso/acme/"), answer.headers


# --- 2. OIDC login state is not tied to the browser that started the login (login CSRF) ----

OP_USERS = {"bo": {"preferred_username": "u121", "email": "bo@acme.test", "name": "Bo Dahl"}}


@pytest.fixture(scope="module")
def op(tmp_path_factory):
    server = OidcProviderServer(
        tmp_path_factory.mktemp("oidc-provider"), redirect_uri=CALLBACK, users=OP_USERS
    ).start()
    yield server
    server.stop()


@pytest.fixture
def acme_with_op(app, acme, op, monkeypatch):
    monkeypatch.setitem(app.config["KURSA"]["web"], "base_url", BASE_URL)
    monkeypatch.setitem(app.config["KURSA"]["sso"], "allow_private_addresses", True)
    oidc.forget_caches()
    add_oidc_for(acme, op)
    yield acme
    oidc.forget_caches()


def test_an_oidc_callback_opened_in_another_browser_does_not_log_that_browser_in(
    app, acme_with_op, op
):
    """Bo starts a login in his own browser, signs in at the provider and, instead of
    following the redirect, sends the callback link to a colleague. Opening it must not log
    the colleague's browser in as Bo (OIDC Core 3.1.2.1: state binds the request to the
    browser that made it; the session cookie is SameSite=Lax, so it reaches the callback)."""
    attacker = fresh_client(app)
    location = attacker.get("/sso/acme/corp/login").headers["Location"]
    redirect = op.sign_in(location, "bo")
    parts = urlsplit(redirect)

    victim = fresh_client(app)
    victim.get(f"{parts.path}?{parts.query}")

    assert logged_in_account_id(victim) is None


# --- 3. Ids too large for the database: 500 instead of 404 ----------------------------------

HUGE_GETS = [
    f"/sync/runs/{HUGE}",
    f"/sync/runs/{HUGE}/report.csv",
    f"/sync/runs/{HUGE}/revert",
    f"/sync/sources/{HUGE}/edit",
    f"/sync/sources/requests/{HUGE}",
    f"/sso/admin/acme/{HUGE}/edit",
    f"/persons/{HUGE}",
    f"/courses/activities/{HUGE}",
    f"/courses/signups/{HUGE}",
    f"/courses/manage/activities/{HUGE}/edit",
    f"/courses/manage/new?template={HUGE}",
]
HUGE_POSTS = [
    f"/sync/runs/{HUGE}/approve",
    f"/sync/runs/{HUGE}/discard",
    f"/sync/runs/{HUGE}/apply",
    f"/sync/sources/{HUGE}/delete",
    f"/sync/sources/{HUGE}/enabled",
    f"/sync/sources/{HUGE}/test",
    f"/sso/admin/acme/{HUGE}/delete",
    f"/roles/{HUGE}/revoke",
    f"/courses/activities/{HUGE}/signup",
    f"/courses/manage/activities/{HUGE}/status",
]


def not_found(answer) -> bool:
    body = answer.get_data(as_text=True)
    answer.close()
    return answer.status_code == 404 and "Traceback" not in body


@pytest.mark.parametrize("url", HUGE_GETS)
def test_a_huge_id_in_an_address_is_a_plain_404(acme, admin_client, url):
    assert not_found(admin_client.get(url))


@pytest.mark.parametrize("url", HUGE_POSTS)
def test_a_huge_id_in_a_form_address_is_a_plain_404(acme, admin_client, url):
    token = csrf_token(admin_client, "/roles/")
    assert not_found(admin_client.post(url, data={"csrf_token": token, "action": "publish"}))


@pytest.mark.parametrize(
    ("url", "field"),
    [("/courses/manage/categories", "parent"), ("/courses/manage/templates", "category")],
)
def test_a_huge_id_in_a_form_field_is_refused_plainly(acme, login_as, url, field):
    course_admin = login_as("hanne", "course_admin", None)
    data = {"csrf_token": csrf_token(course_admin, url), "name": "X", "title": "X", field: HUGE}
    answer = course_admin.post(url, data=data)
    assert answer.status_code in (200, 400, 404)  # a refusal, not a 500


def test_any_employee_gets_a_404_not_a_500_for_a_huge_activity_id(login_as):
    assert not_found(login_as("anna").get(f"/courses/activities/{HUGE}"))


# --- 4. An inactivated employee's live session still reads the catalogue -------------------


def test_an_inactivated_employee_no_longer_sees_the_catalogue(login_as, make_activity):
    """access.scope_of: a person the sync inactivated (they left) reaches nothing from the
    next request on. The catalogue reads the person directly and still lists their unit's
    activities."""
    make_activity("11", title="Layoff briefing for Sales North")
    anna = login_as("anna")
    assert "Layoff briefing" in anna.get("/courses/").get_data(as_text=True)  # before
    db.session.execute(update(Person).where(Person.username == "u111").values(is_active=False))
    db.session.commit()

    answer = anna.get("/courses/")

    assert "Layoff briefing" not in answer.get_data(as_text=True)


# --- 5. Names of units and categories outside the viewer's branch ---------------------------


def test_the_person_page_breadcrumb_stops_at_the_branch_top(login_as, person, unit):
    """An IT admin of Sales North (11) opens a person of 11. The tree's breadcrumb stops at the
    top of the viewer's branch (access.visible_only); the person page lists and links every
    ancestor instead: Sales (10) and the customer's root, which are not the viewer's."""
    it_admin = login_as("bo", "it_admin", "11")

    answer = it_admin.get(f"/persons/{person('anna').id}")

    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    for outside in (unit("10"), unit(None)):
        assert f'unit={outside.id}"' not in page, outside.name


def test_the_catalogue_offers_no_categories_of_other_branches(login_as, unit):
    """Categories belong to course admins and HR of the owner unit's branch (access.is_visible);
    the catalogue's filter lists every category of the customer to every employee."""
    create_category(unit("11"), "Sales onboarding", actor="test")
    create_category(unit("20"), "Finance restructuring", actor="test")
    db.session.commit()
    anna = login_as("anna")  # an employee of Sales North (11)

    page = anna.get("/courses/").get_data(as_text=True)

    assert "Finance restructuring" not in page


# --- 6. HR grants itself the IT admin role and with it the SSO and LDAP pages --------------


def test_hr_cannot_grant_itself_a_role(login_as, person, unit):
    """The identity provider and directory source pages are for IT admins only ("a provider
    decides who may log in as anyone in the whole customer"); HR of the whole customer grants
    itself IT admin at the root on /roles and then opens them. A granter should not raise its
    own rights."""
    hanne = login_as("hanne", "hr", None)
    data = {"username": "u101", "role": "it_admin", "unit": ""}  # herself, the whole customer
    hanne.post("/roles/", data={"csrf_token": csrf_token(hanne, "/roles/"), **data})

    assert hanne.get("/sso/admin/acme").status_code == 404
