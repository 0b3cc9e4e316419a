"""The directory source pages: list, add, and test connection, preview and sync now, which
the pages queue and the scheduler's worker (sync.queue) performs (IT admins)."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.core.db import db
from sync.locks import run_lock
from sync.models import SyncRequest, SyncRun, SyncSource
from sync.queue import process_requests
from sync.sources.ldap.operations import add_ldap_source, set_enabled
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
from tests.sync.ldap_helpers import openldap_source

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
        return openldap_source(acme, shared_slapd, name=name, password=password)

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


def test_test_connection_is_queued_and_shows_what_a_run_would_read(make_source, it_admin):
    source = make_source()

    response = post(it_admin, f"/sync/sources/{source.id}/test")

    assert response.status_code == 302
    waiting = it_admin.get(response.location)
    assert "Queued: the scheduler takes it" in text_of(waiting)
    assert waiting.headers["Refresh"] == "3"  # the page reloads itself until it is done
    assert process_requests() == 1
    done = it_admin.get(response.location)
    page = text_of(done)
    assert "Refresh" not in done.headers
    assert f"Connected to {source.settings['uri']}: " in page
    assert f"{SAMPLE_USERS} persons" in page and "would be read" in page
    assert db.session.scalar(LDAP_RUNS.with_only_columns(SyncRun.id)) is None  # nothing was run


def test_a_request_no_scheduler_took_says_so_after_30_seconds(acme, it_admin):
    settings = {
        "uri": "ldap://127.0.0.1:1",
        "bind_dn": SERVICE_DN,
        "user_bases": [ORG_BASE],
        "org_from": "ou",
        "org_base": ORG_BASE,
    }  # no scheduler, no server: the request only waits
    source = add_ldap_source(
        acme, "hq", profile="openldap", settings=settings, password="x", actor="test"
    )
    db.session.commit()
    response = post(it_admin, f"/sync/sources/{source.id}/test")
    assert "Queued: the scheduler takes it" in text_of(it_admin.get(response.location))

    request = db.session.scalar(select(SyncRequest))
    request.requested_at -= timedelta(seconds=31)
    db.session.commit()
    waiting = it_admin.get(response.location)

    assert "No scheduler has taken this yet: is <code>flask scheduler run</code> running?" in (
        text_of(waiting)
    )
    assert "takes it within a few seconds" not in text_of(waiting)
    assert waiting.headers["Refresh"] == "3"


def test_wrong_password_shows_the_plain_message(make_source, it_admin):
    source = make_source(password="not-the-password")

    response = post(it_admin, f"/sync/sources/{source.id}/test")
    process_requests()

    page = text_of(it_admin.get(response.location))
    assert "refused the bind DN and password (invalid credentials)" in page
    assert 'class="flash error status"' in page


def test_preview_is_queued_and_its_page_links_the_report(make_source, it_admin):
    source = make_source()

    response = post(it_admin, f"/sync/sources/{source.id}/preview")

    assert db.session.scalar(LDAP_RUNS) is None  # the web request ran nothing
    request_page = response.location
    assert "Queued" in text_of(it_admin.get(request_page))
    process_requests()
    run = db.session.scalar(LDAP_RUNS)
    assert run.status == "dry_run" and run.source_name == "hq-ldap"
    page = text_of(it_admin.get(request_page))
    assert f'href="/sync/runs/{run.id}">Open the report of run #{run.id}</a>' in page
    report = text_of(it_admin.get(f"/sync/runs/{run.id}"))
    assert "Preview: nothing has changed yet" in report
    assert "Below is what applying what this preview read from source hq-ldap would do." in report
    assert "these files" not in report
    listed = text_of(it_admin.get("/sync/sources"))
    assert f'href="/sync/runs/{run.id}">#{run.id}</a>' in listed


def test_sync_now_is_queued_once_and_applied_by_the_worker(make_source, it_admin):
    source = make_source()

    first = post(it_admin, f"/sync/sources/{source.id}/sync")
    second = post(it_admin, f"/sync/sources/{source.id}/sync")  # a double click

    assert first.location == second.location
    listed = text_of(it_admin.get("/sync/sources"))
    assert f'<a class="pending" href="{first.location}">sync queued</a>' in listed
    assert process_requests() == 1
    assert 'class="pending"' not in text_of(it_admin.get("/sync/sources"))
    run = db.session.scalar(LDAP_RUNS)
    assert run.status == "applied", run.error
    assert run.counts["persons"]["created"] == SAMPLE_USERS
    request = db.session.scalar(select(SyncRequest))
    assert (request.status, request.run_id) == ("done", run.id)
    assert request.requested_by == run.started_by == "account:u202"  # stored as audited
    page = text_of(it_admin.get(first.location))
    assert f"Run #{run.id} of source hq-ldap is applied." in page
    assert "Requested by Finn Juul at" in page and "account:" not in page
    assert "by Finn Juul</dd>" in text_of(it_admin.get(f"/sync/runs/{run.id}"))


def flashes(page: str) -> list[str]:
    return re.findall(r'<p class="flash info" role="status">([^<]*)</p>', page)


def test_a_second_sync_now_says_the_run_is_queued_already(make_source, it_admin):
    source = make_source()
    token = _csrf_token(text_of(it_admin.get("/sync/sources")))
    url = f"/sync/sources/{source.id}/sync"

    first = it_admin.post(url, data={"csrf_token": token, "full": "1"})
    first_page = text_of(it_admin.get(first.location))
    second = it_admin.post(url, data={"csrf_token": token, "full": "1"})
    second_page = text_of(it_admin.get(second.location))
    it_admin.post(url, data={"csrf_token": token, "full": "1"})  # a double click: both posts
    it_admin.post(url, data={"csrf_token": token, "full": "1"})  # before the page
    double_page = text_of(it_admin.get(second.location))

    assert first.location == second.location
    assert flashes(first_page) == ["A full run of source hq-ldap is queued."]
    already = "A full run of source hq-ldap is already queued: this is that request."
    assert flashes(second_page) == [already]
    assert flashes(double_page) == [already]
    assert db.session.query(SyncRequest).count() == 1


def test_a_double_click_before_the_page_shows_one_message(make_source, it_admin):
    source = make_source()
    token = _csrf_token(text_of(it_admin.get("/sync/sources")))
    url = f"/sync/sources/{source.id}/sync"

    first = it_admin.post(url, data={"csrf_token": token})
    it_admin.post(url, data={"csrf_token": token})

    assert flashes(text_of(it_admin.get(first.location))) == ["A run of source hq-ldap is queued."]


def test_a_busy_source_fails_the_request_with_a_plain_message(make_source, it_admin):
    source = make_source()
    response = post(it_admin, f"/sync/sources/{source.id}/sync")

    with run_lock("source:hq-ldap"):  # a run from the CLI or the scheduler is going on
        process_requests()

    page = text_of(it_admin.get(response.location))
    assert 'data-status="failed"' in page and "is being synced already" in page
    assert db.session.scalar(LDAP_RUNS) is None


def test_a_disabled_source_offers_no_test_preview_or_sync(make_source, it_admin):
    source = make_source()
    enabled = text_of(it_admin.get("/sync/sources"))
    set_enabled(source, False, actor="test")
    db.session.commit()

    listed = text_of(it_admin.get("/sync/sources"))

    assert "Test connection</button>" in enabled
    for button in ("Test connection</button>", "Preview</button>", "Sync now</button>"):
        assert button not in listed
    assert "Disabled: enable the source to test, preview or sync it." in listed
    assert "Enable</button>" in listed


def test_a_post_to_run_a_disabled_source_is_refused_before_queueing(make_source, it_admin):
    source = make_source()
    token = _csrf_token(text_of(it_admin.get("/sync/sources")))
    set_enabled(source, False, actor="test")
    db.session.commit()

    for action in ("test", "preview", "sync"):
        url = f"/sync/sources/{source.id}/{action}"
        response = it_admin.post(url, data={"csrf_token": token, "full": "1"})
        assert response.status_code == 302 and response.location == "/sync/sources?customer=acme"

    page = text_of(it_admin.get("/sync/sources?customer=acme"))
    assert "Source hq-ldap is disabled; enable it before testing or running it." in page
    assert db.session.scalar(select(SyncRequest)) is None


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


def test_the_schedulers_polling_job_performs_a_queued_request(app, make_source, it_admin):
    from sync import schedule

    source = make_source()
    response = post(it_admin, f"/sync/sources/{source.id}/test")
    schedule._app = app  # what serve() sets: the job runs in the app's context
    scheduler = schedule.make_scheduler(app)
    scheduler.start(paused=True)
    try:
        schedule.add_interval_jobs(scheduler)
        job = scheduler.get_job("requests", jobstore="memory")
        job.func(*job.args)
    finally:
        scheduler.shutdown(wait=False)

    db.session.expire_all()
    assert db.session.scalar(select(SyncRequest.status)) == "done"
    assert "would be read" in text_of(it_admin.get(response.location))
