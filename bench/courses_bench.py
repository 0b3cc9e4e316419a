"""Benchmark of courses: the 100-thread signup burst and the catalogue page.

A customer with 5,000 units (5 levels) and a person in each is imported through the real file
path; 10,000 published activities are spread over the units. Then:

- burst: 100 threads, each with its own connection, sign 100 persons up for an activity with
  10 seats at the same moment (a barrier); the time from release to the last commit, and the
  check that exactly 10 are registered and 90 waitlisted with positions 1..90;
- catalogue: GET /courses/ as a person deep in the tree, median and worst of 20 requests.

    .venv/bin/python bench/courses_bench.py [--postgres | --url URL] [--units 5000]

Without --url, a fresh SQLite file. With --url, the database must be empty (it is migrated).
Targets (issue 5): burst <= 2 s.
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import flask_migrate  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from app import create_app  # noqa: E402
from bench.import_bench import write_files  # noqa: E402
from portal.accounts.models import Account  # noqa: E402
from portal.core.db import db, utcnow  # noqa: E402
from portal.courses.models import Activity, Signup  # noqa: E402
from portal.courses.operations import create_activity, sign_up  # noqa: E402
from portal.directory.models import OrgUnit, Person  # noqa: E402
from portal.directory.operations import create_customer  # noqa: E402
from portal.web import login_manager  # noqa: E402
from sync.runs import FileInput, import_files  # noqa: E402

BURST_TARGET_S = 2.0
THREADS, SEATS = 100, 10


def build(app, units: int, activities: int, folder: Path) -> None:
    write_files(folder, persons=units, units=units, seed=5)
    customer = create_customer("bench", "Bench A/S", actor="bench")
    db.session.commit()
    org = FileInput("org.csv", (folder / "org.csv").read_bytes())
    people = FileInput("persons.csv", (folder / "persons.csv").read_bytes())
    started = time.perf_counter()
    run = import_files(customer, org, people, actor="bench")
    assert run.status == "applied", run.error
    print(f"import of {units} units and persons: {time.perf_counter() - started:.1f} s")

    unit_ids = list(
        db.session.scalars(select(OrgUnit.id).where(OrgUnit.customer_id == customer.id))
    )
    now = utcnow()
    rows = [
        {
            "customer_id": customer.id,
            "owner_unit_id": unit_ids[n % len(unit_ids)],
            "title": f"Course {n}",
            "description": "",
            "starts_at": now + timedelta(days=1 + n % 365, hours=n % 9),
            "ends_at": now + timedelta(days=1 + n % 365, hours=n % 9 + 2),
            "location": f"Room {n % 40}",
            "capacity": 20,
            "min_participants": 0,
            "instructor": "",
            "status": "published",
            "created_at": now,
            "updated_at": now,
        }
        for n in range(activities)
    ]
    db.session.execute(insert(Activity), rows)
    db.session.commit()
    print(f"{activities} activities across {len(unit_ids)} units")


def burst(app) -> float:
    root = db.session.scalar(select(OrgUnit).where(OrgUnit.parent_id.is_(None)))
    activity = create_activity(
        root,
        title="Burst",
        starts_at=utcnow() + timedelta(days=3),
        ends_at=utcnow() + timedelta(days=3, hours=1),
        capacity=SEATS,
        publish=True,
        actor="bench",
    )
    db.session.commit()
    activity_id = activity.id  # the threads never touch this session's objects
    persons = list(db.session.scalars(select(Person.id).order_by(Person.id).limit(THREADS)))
    barrier = threading.Barrier(THREADS)

    def one(person_id: int) -> tuple[str, float, float]:
        with app.app_context():
            person = db.session.get(Person, person_id)
            db.session.rollback()
            barrier.wait()
            started = time.perf_counter()
            status = sign_up(activity_id, person, actor="bench").status
            db.session.commit()
            ended = time.perf_counter()
            db.session.remove()
            return status, started, ended

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(one, persons))
    statuses = [status for status, _, _ in results]
    # From the barrier's release to the last commit.
    seconds = max(end for _, _, end in results) - min(start for _, start, _ in results)

    positions = db.session.scalars(
        select(Signup.position)
        .where(Signup.activity_id == activity_id, Signup.status == "waitlisted")
        .order_by(Signup.position)
    ).all()
    assert statuses.count("registered") == SEATS, statuses
    assert positions == list(range(1, THREADS - SEATS + 1)), positions
    return seconds


def catalogue(app, requests: int = 20) -> tuple[float, float, int]:
    deepest = db.session.scalar(select(func.max(OrgUnit.depth)))
    person = db.session.scalar(
        select(Person).join(OrgUnit, Person.unit_id == OrgUnit.id).where(OrgUnit.depth == deepest)
    )
    account = Account(username=person.username, person_id=person.id)
    db.session.add(account)
    db.session.commit()
    client = app.test_client()
    with app.test_request_context(environ_base=client.environ_base):
        identifier = login_manager._session_identifier_generator()
    with client.session_transaction() as session:
        session.update(_user_id=str(account.id), _fresh=True, _id=identifier)

    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get("/courses/")
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    shown = response.get_data(as_text=True).count('class="lead"')
    return statistics.median(times), max(times), shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    parser.add_argument(
        "--postgres", action="store_true", help="start a throw-away PostgreSQL and use it"
    )
    parser.add_argument("--units", type=int, default=5000)
    parser.add_argument("--activities", type=int, default=10000)
    args = parser.parse_args()

    server = None
    if args.postgres:
        from tests.servers.postgres import PostgresServer

        server = PostgresServer()
        server.start()
        args.url = server.create_database("kursa_bench")
    try:
        run(args)
    finally:
        if server is not None:
            server.stop()


def run(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/bench.db"
        print(f"engine: {url.split(':')[0]}")
        settings = {"database": {"url": url}, "web": {"secret_key": "bench"}}
        app = create_app(settings, environ={})
        with app.app_context():
            flask_migrate.upgrade(revision="heads")
            build(app, args.units, args.activities, Path(tmp))
            seconds = burst(app)
            print(
                f"burst: {THREADS} signups for {SEATS} seats in {seconds:.2f} s "
                f"(target {BURST_TARGET_S} s, {seconds / BURST_TARGET_S:.0%} of it)"
            )
            median, worst, shown = catalogue(app)
            print(
                f"catalogue page, {args.activities} activities: median {median * 1000:.0f} ms, "
                f"worst {worst * 1000:.0f} ms, {shown} rows shown"
            )
            db.engine.dispose()


if __name__ == "__main__":
    main()
