"""Failures outside a run's own path reach HR too, once each: an interrupted run closed by the
next one, a failed revert, a scheduled run skipped on a locked source; and the mails link to
the report with the portal's configured address."""

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from config import ConfigError, load_config
from portal.core.db import db, utcnow
from portal.courses.models import OutboxMessage
from portal.courses.outbox import send_pending
from sync import schedule
from sync.locks import run_lock
from sync.models import SyncLock, SyncRun, SyncSource
from sync.notify import warn_if_links_are_relative
from sync.revert import revert_run
from tests.courses.helpers import PERSONS, UNITS
from tests.sync import test_attention as attention

acme, unit, person = attention.acme, attention.unit, attention.person
account_of, login_as, hr_contacts = attention.account_of, attention.login_as, attention.hr_contacts
settings, smtp_server = attention.settings, attention.smtp_server
BASE_URL = "https://kursa.example.test"


@pytest.fixture
def base_url(app, monkeypatch):
    monkeypatch.setitem(app.config["KURSA"]["web"], "base_url", BASE_URL)
    return BASE_URL


def failure_messages(run_id: int) -> list[OutboxMessage]:
    return [
        m
        for m in db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        if m.payload.get("run_id") == run_id
    ]


def test_an_interrupted_run_closed_by_the_next_run_is_mailed_once(
    acme, hr_contacts, import_csv, base_url
):
    stuck = SyncRun(
        customer_id=acme.id,
        source_kind="files",
        started_by="cli",
        status="running",
        counts={},
        started_at=utcnow() - timedelta(minutes=30),
    )
    db.session.add(stuck)
    db.session.commit()

    import_csv(acme, UNITS, PERSONS)
    import_csv(acme, UNITS, PERSONS)  # a later run finds nothing left to close

    db.session.refresh(stuck)
    assert stuck.status == "failed"
    queued = failure_messages(stuck.id)
    assert sorted(m.person_id for m in queued) == sorted(p.id for p in hr_contacts)
    assert {m.kind for m in queued} == {"sync.run_failed"}
    assert f"{BASE_URL}/sync/runs/{stuck.id}" in queued[0].payload["text"]
    assert "interrupted" in queued[0].payload["text"]


@pytest.fixture
def refusing_database(app):
    """Make the real database refuse any change of a person (a trigger), as a full disk or a
    lost connection would refuse it."""
    if db.engine.dialect.name == "sqlite":
        statements = [
            "CREATE TRIGGER refuse BEFORE UPDATE ON persons BEGIN "
            "SELECT RAISE(ABORT, 'refused by the test'); END"
        ]
        undo = ["DROP TRIGGER refuse"]
    else:
        statements = [
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse BEFORE UPDATE ON persons FOR EACH ROW EXECUTE FUNCTION refuse()",
        ]
        undo = ["DROP TRIGGER refuse ON persons", "DROP FUNCTION refuse()"]

    def refuse():
        for statement in statements:
            db.session.execute(text(statement))
        db.session.commit()

    yield refuse
    db.session.rollback()
    for statement in undo:
        db.session.execute(text(statement))
    db.session.commit()


def test_a_failed_revert_is_mailed_to_hr(acme, hr_contacts, import_csv, refusing_database):
    run = import_csv(acme, UNITS, PERSONS[1:])  # inactivates Anna
    assert run.status == "applied" and run.counts["persons"]["inactivated"] > 0
    refusing_database()

    revert = revert_run(run.id, actor="test")

    assert revert.status == "failed"
    queued = failure_messages(revert.id)
    assert len(queued) == len(hr_contacts)
    assert "failed" in queued[0].payload["subject"]


def add_source(customer) -> SyncSource:
    source = SyncSource(customer_id=customer.id, name="hq", profile="openldap", state={})
    db.session.add(source)
    db.session.commit()
    return source


def age_lock(name: str, minutes: int) -> None:
    lock = db.session.get(SyncLock, name)
    lock.acquired_at = utcnow() - timedelta(minutes=minutes)
    db.session.commit()


def test_a_scheduled_run_skipped_on_a_long_held_lock_is_flagged_and_mailed_once(
    acme, hr_contacts, admin_client
):
    add_source(acme)

    with run_lock("source:hq"):  # a run that has been going on for an hour
        age_lock("source:hq", 60)
        schedule.run_now("source:hq", actor="scheduler")
        schedule.run_now("source:hq", actor="scheduler")  # the next fire: no second mail

    [skipped] = db.session.scalars(select(SyncRun).where(SyncRun.source_name == "hq")).all()
    assert skipped.status == "failed" and skipped.started_by == "scheduler"
    assert skipped.error.startswith("The scheduled run was skipped: hq is being synced already")
    assert len(failure_messages(skipped.id)) == len(hr_contacts)
    assert 'class="attention"' in admin_client.get("/sync/runs").get_data(as_text=True)


def test_a_lock_taken_at_the_same_fire_time_is_no_news(acme, hr_contacts):
    add_source(acme)

    with run_lock("source:hq"):  # another scheduler process took this very fire time
        schedule.run_now("source:hq", actor="scheduler")

    assert db.session.scalar(select(SyncRun.id).where(SyncRun.source_name == "hq")) is None


def test_a_skipped_incremental_run_is_not_flagged(acme, hr_contacts):
    source = add_source(acme)
    source.delta_schedule = "*/15 * * * *"
    db.session.commit()

    with run_lock("source:hq"):  # the nightly full run is still going
        age_lock("source:hq", 60)
        schedule.run_now("delta:hq", actor="scheduler")

    assert db.session.scalar(select(SyncRun.id).where(SyncRun.source_name == "hq")) is None


def test_the_mail_links_to_the_configured_address(
    acme, hr_contacts, import_csv, base_url, settings, smtp_server
):
    run = import_csv(acme, [], [])
    assert run.status == "failed"

    send_pending(settings)

    body = smtp_server.inbox.messages[0][1].get_payload(decode=True).decode()
    assert f"{BASE_URL}/sync/runs/{run.id}" in body


@pytest.mark.parametrize(
    "url", ["kursa.example.test", "ftp://kursa.example.test", "https://", "https://k.test/?a=1"]
)
def test_a_bad_base_url_fails_at_start(url):
    with pytest.raises(ConfigError, match="web.base_url"):
        load_config(environ={}, overrides={"web": {"base_url": url}})


def test_a_base_url_is_accepted():
    loaded = load_config(environ={}, overrides={"web": {"base_url": BASE_URL}})
    assert loaded["web"]["base_url"] == BASE_URL


def test_mail_without_a_base_url_warns_at_start(caplog):
    mail = {"host": "smtp.example.test", "from_address": "kursa@example.test"}
    on = load_config(environ={}, overrides={"mail": mail})

    with caplog.at_level(logging.WARNING, logger="sync.notify"):
        assert warn_if_links_are_relative(on) is True
        off = load_config(environ={}, overrides={})
        assert warn_if_links_are_relative(off) is False

    [record] = caplog.records
    assert "[web] base_url is empty" in record.getMessage()
