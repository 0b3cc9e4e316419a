"""The queue of page requests: each is taken by one worker only, a dead worker's request is
closed, and requests outlive nothing they should not (a deleted source takes its own)."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.core.db import db, utcnow
from portal.core.errors import UserError
from sync import queue
from sync.models import SyncRequest, SyncSource
from sync.sources.ldap import operations


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
