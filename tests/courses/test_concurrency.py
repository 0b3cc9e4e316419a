"""The last seats under a burst: 100 persons sign up for 10 seats at the same moment.

Each thread has its own session and connection, as separate web requests (or gunicorn nodes)
would; they start together at a barrier. The seat check and the insert are serialised by the
database's lock on the activity row, on PostgreSQL and on SQLite alike.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from portal.core.db import db
from portal.courses.operations import cancel_signup, sign_up
from portal.courses.queries import signups_in_order
from portal.directory.models import Person
from portal.directory.queries import person_by_username
from tests.courses.helpers import PERSONS, UNITS

THREADS = 100
SEATS = 10
CROWD = [[f"u5{n:03d}", f"Crowd{n}", "Person", "", f"C-{n}", "11"] for n in range(THREADS)]


@pytest.fixture
def crowd(acme, import_csv):
    run = import_csv(acme, UNITS, PERSONS + CROWD)
    assert run.status == "applied", run.error
    return [row[0] for row in CROWD]


def burst(app, activity_id: int, usernames: list[str]) -> tuple[list[str], float]:
    """Sign every username up from its own thread, all released at once by a barrier."""
    barrier = threading.Barrier(len(usernames))

    def one(username: str) -> str:
        with app.app_context():
            try:
                person = person_by_username(username)
                db.session.rollback()  # no transaction held while waiting at the barrier
                barrier.wait()
                signup = sign_up(activity_id, person, actor="test")
                db.session.commit()
                return signup.status
            except Exception as exc:  # reported, so the assertion names what went wrong
                db.session.rollback()
                return f"error: {exc!r}"
            finally:
                db.session.remove()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(usernames)) as pool:
        statuses = list(pool.map(one, usernames))
    return statuses, time.perf_counter() - started


def test_a_burst_never_exceeds_the_seats_and_queues_the_rest(app, make_activity, crowd):
    activity = make_activity("10", capacity=SEATS)
    db.session.commit()

    statuses, seconds = burst(app, activity.id, crowd)

    errors = [s for s in statuses if s.startswith("error")]
    assert errors == []
    assert statuses.count("registered") == SEATS
    assert statuses.count("waitlisted") == THREADS - SEATS
    db.session.expire_all()
    rows = signups_in_order(activity.id)
    waiting = [s.position for s, _ in rows if s.status == "waitlisted"]
    assert waiting == list(range(1, THREADS - SEATS + 1))
    print(f"\n{app.config['KURSA_ENGINE']}: {THREADS} signups for {SEATS} seats in {seconds:.2f} s")

    first_waiting = next(u for s, u in rows if s.position == 1)
    registered = next(u for s, u in rows if s.status == "registered")
    cancel_signup(
        activity.id,
        db.session.scalar(select(Person).where(Person.username == registered)),
        actor="test",
    )
    db.session.commit()

    after = {u: (s.status, s.position) for s, u in signups_in_order(activity.id)}
    assert after[first_waiting] == ("registered", None)
    assert after[registered] == ("cancelled", None)
    assert sorted(p for status, p in after.values() if status == "waitlisted") == list(
        range(1, THREADS - SEATS)
    )
    assert sum(status == "registered" for status, _ in after.values()) == SEATS
