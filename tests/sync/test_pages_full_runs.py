"""The source page's full runs: once a full run has been applied, Preview and Sync now offer a
"Full run" box (ticked by default), carried through the queued request to a full read of the
directory, so a page can preview deletions and make a fresh held full run. Against a real slapd.
"""

import pytest
from sqlalchemy import select

from portal.core.db import db
from sync.models import SyncRequest, SyncRun
from sync.queue import process_requests
from tests.conftest import _csrf_token
from tests.courses import helpers
from tests.servers.slapd import (  # noqa: F401 - fixtures
    sample_ldif_fixture,
    slapd_fixture,
    user_dn,
)
from tests.sync.ldap_helpers import openldap_source, sync

acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as = helpers.account_of, helpers.login_as
FULL_BOX = '<input type="checkbox" name="full" value="1" checked>'


def text_of(response) -> str:
    return response.get_data(as_text=True)


def post(client, url: str, **data):
    token = _csrf_token(text_of(client.get("/sync/sources")))
    return client.post(url, data={"csrf_token": token, **data})


def performed(client, response) -> tuple[SyncRequest, SyncRun, str]:
    """Let the scheduler's worker take the queued request; the request, its run, its page."""
    assert process_requests() == 1
    db.session.expire_all()
    request = db.session.scalar(select(SyncRequest).order_by(SyncRequest.id.desc()))
    return request, db.session.get(SyncRun, request.run_id), text_of(client.get(response.location))


@pytest.fixture
def it_admin(login_as):
    return login_as("finn", "it_admin", None)


@pytest.fixture
def synced_source(acme, slapd):
    """A source with an applied full run, then one person deleted from the directory."""
    source = openldap_source(acme, slapd)
    assert sync(source).status == "applied"
    slapd.admin().delete_s(user_dn("e00004", "Økonomi/Løn"))
    return source


def test_the_page_ticks_full_run_by_default_once_incremental_runs_are_possible(
    acme, slapd, it_admin
):
    source = openldap_source(acme, slapd)
    first = text_of(it_admin.get("/sync/sources"))
    assert sync(source).status == "applied"

    listed = text_of(it_admin.get("/sync/sources"))

    assert FULL_BOX not in first and '<input type="hidden" name="full" value="1">' in first
    assert FULL_BOX in listed and "Full run (catches deletions and moves out of scope)" in listed
    assert f'formaction="/sync/sources/{source.id}/sync"' in listed


def test_a_full_preview_from_the_page_shows_the_deletion(synced_source, it_admin):
    response = post(it_admin, f"/sync/sources/{synced_source.id}/preview", full="1")

    request, run, page = performed(it_admin, response)

    assert request.is_full and request.action == "preview"
    assert run.status == "dry_run" and run.counts["persons"]["inactivated"] == 1
    assert "<h1>Full preview · source hq-ldap</h1>" in page
    assert "catches deleted persons" in page


def test_an_unticked_preview_is_incremental_and_says_so(synced_source, it_admin):
    response = post(it_admin, f"/sync/sources/{synced_source.id}/preview")

    request, run, page = performed(it_admin, response)

    assert not request.is_full
    assert run.status == "dry_run" and run.counts["persons"]["inactivated"] == 0
    assert "<h1>Incremental preview · source hq-ldap</h1>" in page
    assert "inactivates nobody." not in page
    assert "It inactivates nobody for being missing" in page
    assert "a person the directory marks disabled is inactivated by any run" in page


def test_full_sync_now_makes_a_fresh_held_full_run(synced_source, it_admin, guard_limits):
    guard_limits(count=0, share=1.0)
    queued = post(it_admin, f"/sync/sources/{synced_source.id}/sync", full="1")
    again = post(it_admin, f"/sync/sources/{synced_source.id}/sync", full="1")  # a double click
    listed = text_of(it_admin.get("/sync/sources"))

    request, run, page = performed(it_admin, queued)

    assert again.location == queued.location
    assert f'<a class="pending" href="{queued.location}">full sync queued</a>' in listed
    assert request.is_full and run.status == "held"
    assert run.counts["persons"]["inactivated"] == 1
    assert "<h1>Full sync · source hq-ldap</h1>" in page


def test_a_full_and_an_incremental_request_are_queued_apart(synced_source, it_admin):
    full = post(it_admin, f"/sync/sources/{synced_source.id}/preview", full="1")
    incremental = post(it_admin, f"/sync/sources/{synced_source.id}/preview")

    assert full.location != incremental.location
    assert process_requests() == 2
    runs = db.session.scalars(
        select(SyncRun).where(SyncRun.is_dry_run.is_(True)).order_by(SyncRun.id)
    ).all()
    assert [run.counts["persons"]["inactivated"] for run in runs] == [1, 0]
