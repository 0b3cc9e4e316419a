"""The run lock in the database: one holder across threads, engines and processes."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select

from portal.core.db import db
from sync.locks import LockBusy, acquire, run_lock
from sync.models import SyncLock, SyncSource

SHORT = timedelta(seconds=1)
HOLDER_SCRIPT = """
import sys, time
from datetime import timedelta
from app import create_app
from tests.conftest import settings_for
from sync.locks import acquire
app = create_app(settings_for(sys.argv[1]), environ={})
with app.app_context():
    acquire("source:shared", lifetime=timedelta(seconds=float(sys.argv[2])))
    print("held", flush=True)
    time.sleep(60)
"""


def url_of_app_database() -> str:
    return db.engine.url.render_as_string(hide_password=False)


def test_second_run_is_refused_until_the_first_releases(app):
    with run_lock("source:hq"):
        with pytest.raises(LockBusy, match="hq is being synced already"):
            acquire("source:hq")
        acquire("source:other").release()  # other sources are not held up

    acquire("source:hq").release()
    assert db.session.scalars(select(SyncLock)).all() == []


def test_of_threads_on_two_engines_exactly_one_takes_the_lock(app):
    engines = [create_engine(url_of_app_database()) for _ in range(2)]
    barrier, won, lost = threading.Barrier(8), [], []

    def contend(n: int) -> None:
        barrier.wait()
        try:
            won.append(acquire("source:race", lifetime=SHORT * 30, engine=engines[n % 2]))
        except LockBusy:
            lost.append(n)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert (len(won), len(lost)) == (1, 7)
    won[0].release()
    for engine in engines:
        engine.dispose()


def test_heartbeat_keeps_a_long_run_locked_past_the_lifetime(app):
    lock = acquire("source:long", lifetime=timedelta(seconds=0.6))
    time.sleep(1.5)
    with pytest.raises(LockBusy):
        acquire("source:long", lifetime=SHORT)
    lock.release()


def test_lock_of_a_killed_process_is_taken_over_after_it_expires(app):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, url_of_app_database(), "1.5"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy):
            acquire("source:shared", lifetime=SHORT)
        os.killpg(holder.pid, signal.SIGKILL)  # dies holding the lock, as a crash would
        holder.wait(timeout=10)

        deadline = time.monotonic() + 5
        while True:
            try:
                lock = acquire("source:shared", lifetime=SHORT)
                break
            except LockBusy:
                assert time.monotonic() < deadline, "the dead holder's lock never expired"
                time.sleep(0.2)
        row = db.session.get(SyncLock, "source:shared")
        assert row.holder == lock.holder and row.holder.split(":")[1] == str(os.getpid())
        lock.release()
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()


def test_cli_sync_of_a_locked_source_starts_nothing(app, customer):
    db.session.add(SyncSource(customer_id=customer.id, name="hq", profile="openldap"))
    db.session.commit()

    with run_lock("source:hq"):
        result = app.test_cli_runner().invoke(args=["directory", "sync", "hq", "--json"])

    assert result.exit_code == 1
    assert "hq is being synced already" in result.output
    assert db.session.scalar(select(SyncLock.name)) is None
