"""The directory source pages: list, add, test connection, preview and sync now (IT admins)."""

import re

import pytest
from sqlalchemy import select

from portal.core.db import db
from sync.models import SyncRun, SyncSource
from sync.sources.ldap.operations import add_ldap_source
from tests.conftest import _csrf_token
from tests.courses import helpers
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    SAMPLE_USERS,
    SERVICE_DN,
    SERVICE_PASSWORD,
    sample_ldif_fixture,
    shared_slapd_fixture,
)

LDAP_RUNS = select(SyncRun).where(SyncRun.source_kind == "ldap")
acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as = helpers.account_of, helpers.login_as


def text_of(response) -> str:
    return response.get_data(as_text=True)


def post(client, url: str, page: str = "/sync/sources", **data):
    token = _csrf_token(text_of(client.get(page)))
    return client.post(url, data={"csrf_token": token, **data})


@pytest.fixture
def it_admin(login_as):
    return login_as("finn", "it_admin", None)


@pytest.fixture
def make_source(acme, shared_slapd):
    def make(name="hq-ldap", password=SERVICE_PASSWORD):
        settings = {
            "uri": shared_slapd.uri,
            "bind_dn": SERVICE_DN,
            "user_bases": [ORG_BASE],
            "org_from": "ou",
            "org_base": ORG_BASE,
        }
        source = add_ldap_source(
            acme, name, profile="openldap", settings=settings, password=password, actor="test"
        )
        db.session.commit()
        return source

    return make


def test_it_admin_adds_a_source_through_the_form(acme, it_admin, shared_slapd):
    form = {
        "name": "hq-ldap",
        "profile": "openldap",
        "uri": shared_slapd.uri,
        "bind_dn": SERVICE_DN,
        "password": SERVICE_PASSWORD,
        "user_bases": f"{ORG_BASE}\r\n",
        "org_from": "ou",
        "org_base": ORG_BASE,
        "schedule": "30 1 * * *",
    }
    response = post(it_admin, "/sync/sources/new", "/sync/sources/new", **form)

    assert response.status_code == 302, text_of(response)
    source = db.session.scalar(select(SyncSource).where(SyncSource.name == "hq-ldap"))
    assert source.customer_id == acme.id and source.schedule == "30 1 * * *"
    assert source.settings["user_bases"] == [ORG_BASE]
    assert SERVICE_PASSWORD not in source.password_encrypted
    listed = text_of(it_admin.get(response.location))
    row = re.search(r'<tr class="source">.*?</tr>', listed, re.S).group(0)
    assert "hq-ldap" in row and shared_slapd.uri in row and "openldap" in row
    assert "never" in row and SERVICE_PASSWORD not in listed


def test_adding_a_source_without_a_csrf_token_is_refused(acme, it_admin, shared_slapd):
    response = it_admin.post("/sync/sources/new", data={"name": "x", "uri": shared_slapd.uri})

    assert response.status_code == 400
    assert db.session.scalar(select(SyncSource.id)) is None


def test_a_refused_setting_is_shown_in_plain_words(acme, it_admin):
    form = {
        "name": "hq",
        "profile": "openldap",
        "uri": "http://dc1",
        "bind_dn": SERVICE_DN,
        "password": "x",
        "user_bases": ORG_BASE,
        "org_from": "ou",
        "org_base": ORG_BASE,
        "schedule": "0 2 * * *",
    }
    response = post(it_admin, "/sync/sources/new", "/sync/sources/new", **form)

    assert response.status_code == 200
    assert "The URI must start with ldap://" in text_of(response)


def test_test_connection_shows_what_a_run_would_read(make_source, it_admin):
    source = make_source()

    response = post(it_admin, f"/sync/sources/{source.id}/test")

    assert response.status_code == 302
    page = text_of(it_admin.get(response.location))
    assert f"Connected to {source.settings['uri']}: " in page
    assert f"{SAMPLE_USERS} persons" in page and "would be read" in page
    assert db.session.scalar(LDAP_RUNS.with_only_columns(SyncRun.id)) is None  # nothing was run


def test_wrong_password_shows_the_plain_message(make_source, it_admin):
    source = make_source(password="not-the-password")

    response = post(it_admin, f"/sync/sources/{source.id}/test")

    page = text_of(it_admin.get(response.location))
    assert "refused the bind DN and password (invalid credentials)" in page
    assert 'class="flash error"' in page


def test_preview_runs_a_dry_run_and_opens_its_report(make_source, it_admin):
    source = make_source()

    response = post(it_admin, f"/sync/sources/{source.id}/preview")

    run = db.session.scalar(LDAP_RUNS)
    assert run.status == "dry_run" and run.source_name == "hq-ldap"
    assert response.location.endswith(f"/sync/runs/{run.id}")
    report = text_of(it_admin.get(response.location))
    assert "Preview: nothing has changed yet" in report
    listed = text_of(it_admin.get("/sync/sources"))
    assert f'href="/sync/runs/{run.id}">#{run.id}</a>' in listed


def test_sync_now_applies_a_run(make_source, it_admin):
    source = make_source()

    response = post(it_admin, f"/sync/sources/{source.id}/sync")

    run = db.session.scalar(LDAP_RUNS)
    assert run.status == "applied", run.error
    assert run.counts["persons"]["created"] == SAMPLE_USERS
    assert response.location.endswith(f"/sync/runs/{run.id}")


def test_sources_are_404_for_hr_and_it_admins_of_a_branch(make_source, login_as):
    source = make_source()
    for client in (login_as("hanne", "it_admin", "10"), login_as("dina", "hr", None)):
        assert client.get("/sync/sources").status_code == 404
        assert client.get("/sync/sources/new").status_code == 404
        token = _csrf_token(text_of(client.get("/courses/")))
        test = client.post(f"/sync/sources/{source.id}/test", data={"csrf_token": token})
        assert test.status_code == 404
        sync = client.post(f"/sync/sources/{source.id}/sync", data={"csrf_token": token})
        assert sync.status_code == 404
    assert db.session.scalar(LDAP_RUNS.with_only_columns(SyncRun.id)) is None


def test_navigation_shows_sources_to_root_it_admins_only(acme, it_admin, login_as):
    assert 'href="/sync/sources"' in text_of(it_admin.get("/sync/runs"))
    hr = login_as("dina", "hr", None)
    assert 'href="/sync/sources"' not in text_of(hr.get("/sync/runs"))
