"""The scheduler: jobs built from the sources, local times across DST, catch-up, the lock."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app import create_app
from portal.core.db import db, utcnow
from portal.directory.operations import create_customer
from sync import cron, drop, schedule
from sync.locks import run_lock
from sync.models import SyncRun, SyncSource, scheduler_jobs
from sync.sources.ldap.operations import add_ldap_source
from tests.conftest import ORG_HEADER, PERSON_HEADER, csv_bytes, settings_for
from tests.courses.helpers import acme, make_activity, person, unit  # noqa: F401
from tests.courses.test_outbox import outbox, signed_up, smtp_server  # noqa: F401
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    SAMPLE_USERS,
    SERVICE_DN,
    SERVICE_PASSWORD,
    sample_ldif_fixture,
    shared_slapd_fixture,
)

COPENHAGEN = "Europe/Copenhagen"


def add_source(customer, name, cron="0 2 * * *", enabled=True, created_at=None) -> SyncSource:
    source = SyncSource(
        customer_id=customer.id,
        name=name,
        profile="openldap",
        schedule=cron,
        is_enabled=enabled,
        created_at=created_at or utcnow(),
    )
    db.session.add(source)
    db.session.commit()
    return source


@pytest.fixture
def drop_root(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config["KURSA"]["drop"], "root", str(tmp_path / "drop"))
    return tmp_path / "drop"


def test_one_job_per_enabled_source_and_inbox_in_the_customers_zone(app, make_customer, drop_root):
    acme = make_customer("acme")  # noqa: F811 (the courses' fixture of that name is not used)
    nord = make_customer("nord")
    nord.timezone = "America/New_York"
    add_source(acme, "hq")
    add_source(nord, "ny", "30 1 * * 1-5")
    add_source(nord, "old", enabled=False)
    (drop_root / "acme" / "inbox").mkdir(parents=True)
    (drop_root / "ghost" / "inbox").mkdir(parents=True)  # no such customer: no job

    jobs = [(j.id, j.cron, j.zone) for j in schedule.planned_jobs()]

    assert jobs == [
        ("drop:acme", "0 2 * * *", COPENHAGEN),
        ("source:hq", "0 2 * * *", COPENHAGEN),
        ("source:ny", "30 1 * * 1-5", "America/New_York"),
    ]


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    "cron, after, expected",
    [
        # 02:00 in Copenhagen is 01:00 UTC in winter, 00:00 UTC in summer.
        ("0 2 * * *", utc(2026, 1, 10, 12), utc(2026, 1, 11, 1)),
        ("0 2 * * *", utc(2026, 7, 10, 12), utc(2026, 7, 11, 0)),
        # Spring: 02:00 does not exist on 29 March; the run starts when the clock jumps.
        ("0 2 * * *", utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),
        ("0 2 * * *", utc(2026, 3, 29, 1), utc(2026, 3, 30, 0)),
        # Autumn: 02:00 happens twice on 25 October; the first one is the run.
        ("0 2 * * *", utc(2026, 10, 24, 12), utc(2026, 10, 25, 0)),
        # Weekdays are numbered as in crontab (0 and 7 Sunday), not as APScheduler's.
        ("30 6 * * 1-5", utc(2026, 10, 23, 12), utc(2026, 10, 26, 5, 30)),  # Friday -> Monday
        ("0 9 * * 0", utc(2026, 12, 1), utc(2026, 12, 6, 8)),  # Sunday
        ("0 9 * * 7", utc(2026, 12, 1), utc(2026, 12, 6, 8)),
        ("0 9 * * sat,sun", utc(2026, 12, 1), utc(2026, 12, 5, 8)),
    ],
)
def test_next_run_is_local_time_across_the_clock_changes(cron, after, expected):
    spec = schedule.JobSpec("source:x", cron, COPENHAGEN, utc(2026, 1, 1))
    assert spec.next_fire(after) == expected


def test_the_repeated_autumn_hour_runs_once():
    trigger = schedule.JobSpec("source:x", "0 2 * * *", COPENHAGEN, utc(2026, 1, 1)).trigger()
    first = trigger.get_next_fire_time(None, utc(2026, 10, 24, 12))
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))

    assert (first.astimezone(UTC), second.astimezone(UTC)) == (
        utc(2026, 10, 25, 0),
        utc(2026, 10, 26, 1),
    )


@pytest.mark.parametrize(
    "added, last_run, missed",
    [
        (utc(2026, 12, 1, 12), None, True),  # added two days ago, never run
        (utc(2026, 12, 1, 12), utc(2026, 12, 2, 1, 0, 3), True),  # yesterday's ran, today's not
        (utc(2026, 12, 1, 12), utc(2026, 12, 3, 1, 0, 2), False),  # today's 02:00 ran
        (utc(2026, 12, 3, 9), None, False),  # added after today's 02:00: nothing owed yet
    ],
)
def test_missed_run_is_found_against_the_last_run(added, last_run, missed):
    spec = schedule.JobSpec("source:x", "0 2 * * *", COPENHAGEN, added)
    assert schedule.is_missed(spec, last_run, now=utc(2026, 12, 3, 10)) is missed


@pytest.mark.parametrize(
    "status, is_full, counts_for_full, counts_for_delta",
    [
        ("applied", True, True, True),
        ("held", True, True, True),
        ("failed", True, True, True),
        ("discarded", True, True, True),  # held first: the run read its source
        ("applied", False, False, True),  # an incremental run catches no deletions
        ("dry_run", True, False, False),  # a preview changes nothing
        ("running", True, False, False),  # perhaps a run whose process was killed
    ],
)
def test_the_last_run_of_a_job_is_a_real_run_of_its_kind(
    app, customer, status, is_full, counts_for_full, counts_for_delta
):
    add_source(customer, "hq")
    started = utc(2026, 12, 3, 1, 0, 2)
    db.session.add(
        SyncRun(
            customer_id=customer.id,
            source_kind="ldap",
            source_name="hq",
            started_by="test",
            status=status,
            is_dry_run=status == "dry_run",
            is_full=is_full,
            started_at=started,
        )
    )
    db.session.commit()

    assert (schedule.last_run_at("source:hq") == started) is counts_for_full
    assert (schedule.last_run_at("delta:hq") == started) is counts_for_delta


def test_jobs_are_stored_refreshed_and_a_missed_run_comes_first(app, customer, drop_root):
    long_ago = utcnow() - timedelta(days=3)
    add_source(customer, "hq", created_at=long_ago)
    recent = add_source(customer, "fresh")
    scheduler = schedule.make_scheduler(app)
    scheduler.start(paused=True)
    try:
        assert schedule.refresh_jobs(scheduler) == {"added": 2, "changed": 0, "removed": 0}
        assert db.session.scalar(select(func.count()).select_from(scheduler_jobs)) == 2

        now = utcnow()
        assert schedule.catch_up(scheduler, now) == ["source:hq"]
        assert scheduler.get_job("source:hq").next_run_time == now
        assert scheduler.get_job("source:fresh").next_run_time > now

        recent.schedule = "15 3 * * *"
        db.session.execute(
            SyncSource.__table__.update().where(SyncSource.name == "hq").values(is_enabled=False)
        )
        db.session.commit()
        assert schedule.refresh_jobs(scheduler) == {"added": 0, "changed": 1, "removed": 1}
        assert scheduler.get_job("source:fresh").name == f"15 3 * * * ({COPENHAGEN})"
        assert schedule.refresh_jobs(scheduler) == {"added": 0, "changed": 0, "removed": 0}
    finally:
        scheduler.shutdown(wait=False)


def test_when_both_jobs_of_a_source_were_missed_only_the_full_run_catches_up(app, customer):
    source = add_source(customer, "hq", created_at=utcnow() - timedelta(days=3))
    source.delta_schedule = "*/15 * * * *"
    db.session.commit()
    scheduler = schedule.make_scheduler(app)
    scheduler.start(paused=True)
    try:
        schedule.refresh_jobs(scheduler)
        now = utcnow()

        assert schedule.catch_up(scheduler, now) == ["source:hq"]

        assert scheduler.get_job("source:hq").next_run_time == now
        assert scheduler.get_job("delta:hq").next_run_time > now
    finally:
        scheduler.shutdown(wait=False)


@pytest.mark.parametrize(
    "now, gives_way",
    [
        (utc(2026, 12, 3, 1, 0, 0), True),  # 02:00 in Copenhagen: the full run fires too
        (utc(2026, 12, 3, 1, 0, 40), True),  # the same fire, taken up a little late
        (utc(2026, 12, 3, 1, 15, 0), False),
        (utc(2026, 12, 3, 0, 45, 0), False),
    ],
)
def test_an_incremental_run_gives_way_to_a_full_run_firing_with_it(app, customer, now, gives_way):
    add_source(customer, "hq", created_at=utc(2026, 1, 1))

    assert schedule.full_run_fires_with("hq", now) is gives_way


def test_the_scheduler_skips_an_incremental_run_firing_with_the_full_one(
    app, customer, monkeypatch
):
    add_source(customer, "hq", cron="* * * * *", created_at=utc(2026, 1, 1))
    started: list[str] = []
    monkeypatch.setattr(schedule, "_app", app)
    monkeypatch.setattr(schedule, "run_now", lambda job_id, actor: started.append(job_id))

    schedule.run_job("delta:hq")
    schedule.run_job("source:hq")

    assert started == ["source:hq"]


def test_scheduled_run_of_a_locked_source_is_skipped(app, customer):
    add_source(customer, "hq")

    with run_lock("source:hq"):
        assert schedule.run_now("source:hq", actor="scheduler") is None

    assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 0


def test_scheduled_drop_goes_through_the_drop_import(app, customer, drop_root):
    inbox = drop_root / customer.slug / "inbox"
    inbox.mkdir(parents=True)
    app.config["KURSA"]["drop"]["settle_seconds"] = 0.0
    write_pair(inbox)

    run = schedule.run_now(f"drop:{customer.slug}", actor="scheduler")

    assert (run.status, run.started_by) == ("applied", "scheduler")
    assert drop.last_look_at(customer.slug) is not None
    app.config["KURSA"]["drop"]["settle_seconds"] = 5.0


def write_pair(inbox: Path, stamp="20261203") -> None:
    (inbox / f"org_{stamp}.csv").write_bytes(csv_bytes([ORG_HEADER, ["10", "Sales", "", ""]]))
    (inbox / f"persons_{stamp}.csv").write_bytes(
        csv_bytes([PERSON_HEADER, ["u1001", "Ann", "Berg", "ann@example.dk", "1", "10"]])
    )


def test_scheduler_process_catches_up_a_missed_drop_and_stops_on_sigterm(database_url, tmp_path):
    """End to end: `flask scheduler run` as its own process on a SQLite file."""
    url = database_url("sqlite", "scheduler_e2e")
    root = tmp_path / "drop"
    write_pair_root = root / "acme" / "inbox"
    write_pair_root.mkdir(parents=True)
    write_pair(write_pair_root)
    app = create_app(settings_for(url), environ={})
    with app.app_context():
        customer = create_customer("acme", "Acme", actor="test")
        customer.created_at = utcnow() - timedelta(days=2)  # so last night's 02:00 was missed
        db.session.commit()

    process = start_scheduler(url, KURSA_DROP_ROOT=str(root), KURSA_DROP_SETTLE_SECONDS="0.2")
    try:
        run = wait_for_run(app, timeout=30)
        assert (run.status, run.started_by) == ("applied", "scheduler")
        # The pair is archived just after the run commits: give the process a moment.
        deadline = time.monotonic() + 10
        while any(write_pair_root.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(write_pair_root.iterdir())  # imported and archived
        with app.app_context():
            stored = db.session.execute(select(scheduler_jobs)).all()
        assert [row.id for row in stored] == ["drop:acme"]
        assert stored[0].next_run_time > time.time()  # the next one is tonight, not now

        (root / "nord" / "inbox").mkdir(parents=True)  # a customer's inbox appears: a new job
        with app.app_context():
            create_customer("nord", "Nord", actor="test")
            db.session.commit()
        assert wait_for_job(app, "drop:nord", timeout=10)

        assert "scheduler stopped" in stop_scheduler(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with app.app_context():
            db.engine.dispose()


def start_scheduler(url: str, **env) -> subprocess.Popen:
    """`flask scheduler run` as its own process on the database at `url`."""
    env = {
        **os.environ,
        "FLASK_APP": "app:create_app",
        "KURSA_DATABASE_URL": url,
        "KURSA_WEB_SECRET_KEY": "test-secret-key",
        "KURSA_SCHEDULE_REFRESH_SECONDS": "1",
        **env,
    }
    env.pop("KURSA_CONFIG", None)
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("flask")), "scheduler", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop_scheduler(process: subprocess.Popen) -> str:
    """SIGTERM, as systemd stops it; what the process printed."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    return process.stdout.read()


def test_scheduler_process_runs_a_missed_ldap_source_once(database_url, shared_slapd):
    """Down for three nights: at start the source runs once, not once per missed 02:00."""
    url = database_url("sqlite", "scheduler_ldap")
    app = create_app(settings_for(url), environ={})
    with app.app_context():
        customer = create_customer("acme", "Acme", actor="test")
        settings = {
            "uri": shared_slapd.uri,
            "bind_dn": SERVICE_DN,
            "user_bases": [ORG_BASE],
            "org_from": "ou",
            "org_base": ORG_BASE,
        }
        source = add_ldap_source(
            customer, "hq", profile="openldap", settings=settings, password=SERVICE_PASSWORD,
            actor="test",
        )  # fmt: skip
        source.created_at = utcnow() - timedelta(days=3, hours=1)
        db.session.commit()
        # The job as a scheduler stopped three days ago left it in the store: due since then.
        scheduler = schedule.make_scheduler(app)
        scheduler.start(paused=True)
        schedule.refresh_jobs(scheduler)
        stale = utcnow() - timedelta(days=3)
        scheduler.modify_job("source:hq", jobstore="default", next_run_time=stale)
        scheduler.shutdown(wait=False)

    process = start_scheduler(url)
    try:
        run = wait_for_run(app, timeout=60)
        time.sleep(5)  # several refreshes and queue polls: time for a second run to start
        output = stop_scheduler(process)
        with app.app_context():
            runs = db.session.execute(select(SyncRun.source_name, SyncRun.status)).all()
            [stored] = db.session.execute(select(scheduler_jobs)).all()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with app.app_context():
            db.engine.dispose()

    assert (run.status, run.started_by) == ("applied", "scheduler"), output
    assert run.counts["persons"]["created"] == SAMPLE_USERS
    assert runs == [("hq", "applied")], output
    assert "catches up missed runs: source:hq" in output
    assert stored.id == "source:hq" and stored.next_run_time > time.time()  # tonight's, not now


def wait_for_job(app, job_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            query = select(scheduler_jobs.c.id).where(scheduler_jobs.c.id == job_id)
            if db.session.scalar(query):
                return True
        time.sleep(0.3)
    return False


def wait_for_run(app, timeout: float) -> SyncRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            run = db.session.scalar(select(SyncRun).where(SyncRun.status != "running"))
            if run is not None:
                db.session.expunge(run)
                return run
        time.sleep(0.3)
    raise AssertionError("the scheduler recorded no run")


@pytest.mark.parametrize(
    "field, names",
    [
        ("*", "*"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0", "sun"),
        ("7", "sun"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("mon,3", "mon,wed"),
    ],
)
def test_cron_weekdays_count_from_sunday(field, names):
    assert cron.weekday_names(field) == names


@pytest.mark.parametrize("bad", ["0 2 * *", "61 2 * * *", "0 2 * * 8", "0 2 * * 5-1", "x"])
def test_a_bad_schedule_is_refused(bad):
    assert not cron.is_valid(bad)


@pytest.mark.parametrize(
    "section, values",
    [
        ("drop", {"schedule": "0 2 * * 8"}),
        ("drop", {"passive_ports": "60000"}),
        ("drop", {"keep_days": 0}),
        ("schedule", {"lock_seconds": 0}),
    ],
)
def test_bad_schedule_settings_fail_at_start(section, values):
    from config import ConfigError, load_config

    with pytest.raises(ConfigError, match=section):
        load_config(environ={}, overrides={section: values})


def test_cli_lists_jobs_with_their_next_run(app, customer):
    import json

    add_source(customer, "hq", "30 1 * * 1-5")

    result = app.test_cli_runner().invoke(args=["scheduler", "jobs", "--json"])

    [job] = json.loads(result.stdout)
    assert (job["id"], job["schedule"], job["timezone"]) == (
        "source:hq",
        "30 1 * * 1-5",
        COPENHAGEN,
    )
    next_run = datetime.fromisoformat(job["next_run"])
    assert next_run > utcnow() and next_run.astimezone(schedule_zone()).weekday() < 5


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 12, 4, 12, 0, tzinfo=UTC), "2026-12-05T02:00:00+01:00"),
        (datetime(2026, 7, 1, 12, 0, tzinfo=UTC), "2026-07-02T02:00:00+02:00"),
    ],
)
def test_cli_shows_the_next_run_in_the_customers_local_time(
    app, customer, monkeypatch, now, expected
):
    import json

    from portal.core import db as core_db

    add_source(customer, "hq", "0 2 * * *")
    monkeypatch.setattr(core_db, "utcnow", lambda: now)
    runner = app.test_cli_runner()

    [job] = json.loads(runner.invoke(args=["scheduler", "jobs", "--json"]).stdout)
    text = runner.invoke(args=["scheduler", "jobs"]).stdout

    assert job["timezone"] == COPENHAGEN and job["next_run"] == expected
    assert f"source:hq  0 2 * * *  next {expected}" in text


def schedule_zone():
    from zoneinfo import ZoneInfo

    return ZoneInfo(COPENHAGEN)


@pytest.fixture
def mail_on(app, smtp_server, monkeypatch):  # noqa: F811
    """[mail] pointing at the real SMTP server of the outbox tests."""
    mail = app.config["KURSA"]["mail"]
    for key, value in {
        "host": "127.0.0.1",
        "port": smtp_server.port,
        "starttls": False,
        "from_address": "Kursa <kursa@example.test>",
        "timeout_seconds": 5,
        "send_every_seconds": 17,
    }.items():
        monkeypatch.setitem(mail, key, value)
    return mail


def test_the_outbox_job_is_there_only_when_mail_is_configured(app, monkeypatch):
    # the queue of requested runs always; sso registers its metadata refresh; the outbox
    # job comes only with mail
    assert [job.id for job in schedule.interval_jobs()] == [
        "requests",
        "sso-metadata-refresh",
        "login-sessions-purge",
    ]

    monkeypatch.setitem(app.config["KURSA"]["mail"], "host", "smtp.example.test")
    [requests, job, _refresh, _purge] = schedule.interval_jobs()

    assert (job.id, job.seconds, job.work) == ("outbox", 60, schedule.send_outbox)
    assert (requests.seconds, requests.work) == (3, schedule.process_queue)
    assert requests.instances == 3  # of 4 workers: one stays free for the schedules


def test_the_scheduler_holds_the_outbox_job_in_memory(app, mail_on):
    scheduler = schedule.make_scheduler(app)
    scheduler.start(paused=True)
    try:
        assert schedule.add_interval_jobs(scheduler) == [
            "requests",
            "outbox",
            "sso-metadata-refresh",
            "login-sessions-purge",
        ]
        job = scheduler.get_job("outbox", jobstore="memory")
        assert job.trigger.interval == timedelta(seconds=17)
        assert scheduler.get_jobs(jobstore="default") == []  # nothing stored in the database
    finally:
        scheduler.shutdown(wait=False)


def test_the_outbox_job_delivers_a_pending_message(
    app,
    mail_on,
    smtp_server,  # noqa: F811
    signed_up,  # noqa: F811
):
    schedule._app = app  # what serve() sets: the job runs in the app's context
    scheduler = schedule.make_scheduler(app)
    scheduler.start(paused=True)
    try:
        schedule.add_interval_jobs(scheduler)
        scheduler.get_job("outbox").func(*scheduler.get_job("outbox").args)
    finally:
        scheduler.shutdown(wait=False)

    [(recipients, mail)] = smtp_server.inbox.messages
    assert recipients == ["anna@acme.test"] and mail["Subject"] == "Signed up: First aid"
    [message] = outbox()
    assert message.sent_at is not None
    assert schedule.send_outbox().sent == 0  # sent once only


def test_a_second_sender_waits_for_the_lock(app, mail_on, smtp_server, signed_up):  # noqa: F811
    with run_lock(schedule.OUTBOX_LOCK):  # another scheduler process is sending
        assert schedule.send_outbox() is None

    assert smtp_server.inbox.messages == []
    [message] = outbox()
    assert message.sent_at is None and message.attempts == 0
    assert schedule.send_outbox().sent == 1  # the lock is free again: the next run sends


def test_the_outbox_job_does_nothing_while_mail_is_off(app, signed_up):  # noqa: F811
    assert schedule.send_outbox() is None
    [message] = outbox()
    assert message.sent_at is None and message.attempts == 0
