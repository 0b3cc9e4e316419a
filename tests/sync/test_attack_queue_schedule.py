"""The queue of page requests (two clicks at once, a source deleted, disabled or edited
while its request waits or runs) and the scheduler's catch-up of missed runs, against a
stored LDAP source whose reads are faked."""

import threading

import pytest
from sqlalchemy import func, select

from portal.core.db import db
from sync.models import SyncRun
from tests.sync.attack_helpers import LDAP_STAFF, in_other_session, ldap_data

# --- The queue of page requests and the scheduler -------------------------------------------


def fake_source(customer, name="hq", **kw):
    """A stored LDAP source whose reads are answered by `fake_reads` (no directory needed)."""
    from sync.models import SyncSource

    source = SyncSource(
        customer_id=customer.id,
        name=name,
        profile="openldap",
        settings={"uri": "ldap://old.example.test", "user_bases": ["dc=x"]},
        state={},
        **kw,
    )
    db.session.add(source)
    db.session.commit()
    return source


@pytest.fixture
def fake_reads(monkeypatch):
    """Answer every read of a source with LDAP_STAFF and a new incremental state; `during`
    (when set) runs while the read is going on. Records what each read was given."""
    from sync.sources.ldap import operations
    from sync.sources.ldap.reader import Reading

    seen: list[dict] = []
    hooks: dict = {}

    def read(source, *, full, on_page=None):
        seen.append({"full": full, "settings": dict(source.settings), "state": dict(source.state)})
        if "during" in hooks:
            hooks.pop("during")()
        return Reading(ldap_data(LDAP_STAFF, name=source.name), {"last_change": "20260101"})

    monkeypatch.setattr(operations, "_read", read)
    return seen, hooks


def test_two_sync_now_clicks_at_once_queue_one_run(app, make_customer):
    """The docs: a request of the same source, action and kind already waiting is reused, so
    a double click queues one run. Two clicks whose requests arrive together must too."""
    from sync import queue
    from sync.models import SyncRequest, SyncSource

    customer = make_customer("acme")
    source = fake_source(customer)
    queue.request_run(source, "sync", actor="first", full=True)  # flushed, not yet committed

    def second_click():
        return queue.request_run(
            db.session.get(SyncSource, source.id), "sync", actor="second", full=True
        ).id

    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(in_other_session(app, second_click)))
    thread.start()
    thread.join(timeout=1)  # the second click reads the queue before the first commits
    db.session.commit()
    thread.join(timeout=120)

    assert "error" not in box, box
    queued = db.session.scalars(
        select(SyncRequest.id).where(SyncRequest.source_id == source.id)
    ).all()
    assert len(queued) == 1


def test_a_source_deleted_while_its_sync_request_runs_keeps_its_run_and_the_worker_goes_on(
    app, make_customer, fake_reads
):
    """Delete removes only a source that never ran. One deleted while its first requested run
    is reading (it has no run yet) must not leave an applied run of a deleted source, nor make
    the worker stop on an AttributeError."""
    from sync import queue
    from sync.models import SyncRequest, SyncSource
    from sync.sources.ldap import operations

    customer = make_customer("acme")
    source = fake_source(customer)
    request = queue.request_run(source, "sync", actor="it", full=True)
    db.session.commit()
    _, hooks = fake_reads

    def delete_it():
        return operations.delete_source(db.session.get(SyncSource, source.id), actor="other-it")

    hooks["during"] = lambda: hooks.setdefault("deleted", in_other_session(app, delete_it))

    assert queue._take_next() == request.id
    queue.perform(request.id)  # must not raise

    db.session.expire_all()
    runs = db.session.scalars(select(SyncRun).where(SyncRun.source_name == "hq")).all()
    still = db.session.get(SyncSource, source.id)
    assert not (runs and still is None), (hooks["deleted"], [r.status for r in runs])
    if still is not None:
        assert db.session.get(SyncRequest, request.id).is_finished


def test_a_source_whose_settings_change_during_a_run_reads_everything_next_time(
    app, make_customer, fake_reads
):
    """Changing what a source reads drops its incremental state, so the next run reads
    everything (operations.update_ldap_source). A run reading with the old settings while they
    are changed must not store its state over that."""
    from sync.models import SyncSource
    from sync.sources.ldap import operations
    from sync.sources.ldap.operations import sync_source

    customer = make_customer("acme")
    source = fake_source(customer)
    seen, hooks = fake_reads
    assert sync_source(source, actor="test", full=True).status == "applied"
    assert db.session.get(SyncSource, source.id).state == {"last_change": "20260101"}

    def edit():
        row = db.session.get(SyncSource, source.id)
        row.settings = {**row.settings, "user_bases": ["ou=elsewhere,dc=x"]}
        row.state = {}  # what update_ldap_source does when what is read changes
        return "edited"

    hooks["during"] = lambda: hooks.setdefault("edited", in_other_session(app, edit))
    assert sync_source(db.session.get(SyncSource, source.id), actor="test").status == "applied"
    assert hooks["edited"] == {"result": "edited"}

    db.session.expire_all()
    assert db.session.get(SyncSource, source.id).state == {}
    assert operations.describe(db.session.get(SyncSource, source.id))["incremental_ready"] is False


def test_a_request_whose_source_was_disabled_while_queued_fails_with_the_reason(
    app, make_customer, fake_reads
):
    from sync import queue
    from sync.sources.ldap import operations

    customer = make_customer("acme")
    source = fake_source(customer)
    request = queue.request_run(source, "sync", actor="it", full=True)
    db.session.commit()
    operations.set_enabled(source, False, actor="other-it")
    db.session.commit()

    assert queue.process_requests() == 1

    db.session.expire_all()
    done = db.session.get(type(request), request.id)
    assert done.status == "failed" and "disabled" in done.message
    assert fake_reads[0] == []  # nothing was read
    assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 0


def test_a_request_queued_before_a_settings_change_runs_with_the_new_settings(
    app, make_customer, fake_reads
):
    from sync import queue

    customer = make_customer("acme")
    source = fake_source(customer)
    request = queue.request_run(source, "preview", actor="it", full=False)
    db.session.commit()
    source.settings = {**source.settings, "uri": "ldap://new.example.test"}
    db.session.commit()

    queue.process_requests()

    seen, _ = fake_reads
    assert [s["settings"]["uri"] for s in seen] == ["ldap://new.example.test"]
    assert seen[0]["full"] is False
    db.session.expire_all()
    assert db.session.get(type(request), request.id).status == "done"


def test_a_preview_after_a_missed_scheduled_run_does_not_cancel_the_catch_up(app, make_customer):
    """The scheduler was down at 02:00; someone ran a CLI preview (or an incremental run) at
    08:00; the scheduler starts at 09:00. The full run owed since 02:00 has not happened: a
    preview changes nothing and an incremental run catches no deletions. The docs: a run
    missed while the scheduler was down runs once when it starts."""
    from datetime import timedelta

    from portal.core.db import utcnow
    from sync import schedule

    customer = make_customer("acme")
    now = utcnow()
    fake_source(customer, schedule="0 2 * * *", created_at=now - timedelta(days=3))
    spec = next(s for s in schedule.planned_jobs() if s.id == "source:hq")
    missed_fire = spec.next_fire(now - timedelta(days=1))
    assert schedule.is_missed(spec, None, now)
    preview = SyncRun(
        customer_id=customer.id,
        source_kind="ldap",
        source_name="hq",
        started_by="cli",
        status="dry_run",
        is_dry_run=True,
        counts={},
        started_at=missed_fire + (now - missed_fire) / 2,  # after the fire time it missed
        finished_at=now,
    )
    db.session.add(preview)
    db.session.commit()

    assert schedule.is_missed(spec, schedule.last_run_at("source:hq"), now)


def test_a_caught_up_full_run_is_not_lost_to_the_incremental_job_caught_up_with_it(
    app, make_customer, fake_reads
):
    """Both jobs of a source were missed while the scheduler was down; catch-up starts both at
    once. If the incremental one takes the source's lock first, the full run (the one that
    catches deletions) is skipped without a trace, and the next catch-up finds it not owed."""
    from datetime import timedelta

    from portal.core.db import utcnow
    from sync import schedule

    customer = make_customer("acme")
    now = utcnow()
    fake_source(
        customer,
        schedule="0 2 * * *",
        delta_schedule="*/15 * * * *",
        created_at=now - timedelta(days=3),
    )
    due = [
        s.id
        for s in schedule.planned_jobs()
        if schedule.is_missed(s, schedule.last_run_at(s.id), now)
    ]
    assert due == ["delta:hq", "source:hq"]
    _, hooks = fake_reads
    outcome: dict = {}
    # The full job starts while the incremental one is reading (two scheduler workers).
    hooks["during"] = lambda: outcome.setdefault(
        "full", schedule.run_now("source:hq", actor="scheduler")
    )

    schedule.run_now("delta:hq", actor="scheduler")

    spec = next(s for s in schedule.planned_jobs() if s.id == "source:hq")
    full_ran = outcome["full"] is not None
    flagged = db.session.scalar(
        select(func.count())
        .select_from(SyncRun)
        .where(SyncRun.error.like("The scheduled run was skipped%"))
    )
    owed_still = schedule.is_missed(spec, schedule.last_run_at("source:hq"), utcnow())
    assert full_ran or flagged or owed_still
