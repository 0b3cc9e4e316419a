"""The queue of page requests: each is taken by one worker only, a dead worker's request is
closed, and requests outlive nothing they should not (a deleted source takes its own)."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app import create_app
from portal.core.db import db, utcnow
from portal.core.errors import UserError
from portal.directory.operations import create_customer
from sync import queue
from sync.models import SyncRequest, SyncRun, SyncSource
from sync.sources.ldap import operations
from tests.conftest import settings_for
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    SAMPLE_USERS,
    SERVICE_DN,
    SERVICE_PASSWORD,
    sample_ldif_fixture,
    shared_slapd_fixture,
)


def add_source(customer, name: str) -> SyncSource:
    source = SyncSource(customer_id=customer.id, name=name, profile="openldap", state={})
    db.session.add(source)
    db.session.commit()
    return source


def test_each_request_is_taken_once(app, customer):
    first = queue.request_run(add_source(customer, "a"), "test", actor="t")
    second = queue.request_run(add_source(customer, "b"), "preview", actor="t")
    db.session.commit()

    taken = [queue._take_next(), queue._take_next(), queue._take_next()]

    assert taken == [first.id, second.id, None]
    statuses = db.session.scalars(select(SyncRequest.status).order_by(SyncRequest.id)).all()
    assert statuses == ["running", "running"]


def test_a_request_of_a_dead_worker_is_closed_as_failed(app, customer):
    request = queue.request_run(add_source(customer, "a"), "sync", actor="t")
    request.status, request.started_at = "running", utcnow() - timedelta(hours=3)
    db.session.commit()

    assert queue.process_requests() == 0

    db.session.refresh(request)
    assert request.status == "failed" and "stopped before it finished" in request.message


def test_an_unknown_action_is_refused(app, customer):
    source = add_source(customer, "a")

    with pytest.raises(UserError, match="Unknown action 'drop-table'"):
        queue.request_run(source, "drop-table", actor="t")


def test_deleting_a_source_that_never_ran_removes_its_requests(app, customer):
    source = add_source(customer, "a")
    queue.request_run(source, "test", actor="t")
    db.session.commit()

    assert operations.delete_source(source, actor="t") == "deleted"
    db.session.commit()

    assert db.session.scalar(select(func.count(SyncRequest.id))) == 0


def test_a_source_whose_sync_request_is_running_is_disabled_not_deleted(app, customer):
    source = add_source(customer, "a")
    request = queue.request_run(source, "sync", actor="t")
    db.session.commit()
    assert queue._take_next() == request.id

    assert operations.delete_source(source, actor="t") == "disabled"
    db.session.commit()

    assert db.session.get(SyncSource, source.id).is_enabled is False


def test_a_request_whose_source_was_deleted_after_it_was_taken_is_skipped(app, customer):
    source = add_source(customer, "a")
    request = queue.request_run(source, "test", actor="t")
    db.session.commit()
    assert queue._take_next() == request.id
    assert operations.delete_source(source, actor="t") == "deleted"  # a test makes no run
    db.session.commit()

    assert queue.perform(request.id) is None


def test_the_scheduler_process_performs_a_queued_preview(database_url, shared_slapd):
    """End to end: a request queued as a page would, taken by `flask scheduler run` running
    as its own process on a SQLite file."""
    url = database_url("sqlite", "queue_e2e")
    app = create_app(settings_for(url), environ={})
    with app.app_context():
        customer = create_customer("acme", "Acme", actor="test")
        source = operations.add_ldap_source(
            customer,
            "hq",
            profile="openldap",
            settings={
                "uri": shared_slapd.uri,
                "bind_dn": SERVICE_DN,
                "user_bases": [ORG_BASE],
                "org_base": ORG_BASE,
            },
            password=SERVICE_PASSWORD,
            actor="test",
        )
        request_id = queue.request_run(source, "preview", actor="account:1").id
        db.session.commit()

    env = {
        **os.environ,
        "FLASK_APP": "app:create_app",
        "KURSA_DATABASE_URL": url,
        "KURSA_WEB_SECRET_KEY": "test-secret-key",
        "KURSA_SCHEDULE_POLL_SECONDS": "1",
    }
    env.pop("KURSA_CONFIG", None)
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("flask")), "scheduler", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        finished = wait_for_request(app, request_id, timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    assert finished.status == "done", finished.message
    with app.app_context():
        run = db.session.get(SyncRun, finished.run_id)
        assert (run.status, run.started_by) == ("dry_run", "account:1")
        assert run.counts["persons"]["created"] == SAMPLE_USERS
        db.engine.dispose()


def wait_for_request(app, request_id: int, timeout: float) -> SyncRequest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            request = db.session.get(SyncRequest, request_id)
            if request.is_finished:
                db.session.expunge(request)
                return request
        time.sleep(0.3)
    raise AssertionError("the scheduler did not perform the request")
