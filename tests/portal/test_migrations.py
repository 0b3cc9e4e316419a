"""The migrations build exactly the schema the models describe, on both engines."""

import os
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from portal.core.db import db
from portal.directory.models import Person


def test_models_and_migrations_agree(app):
    with db.engine.connect() as conn, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # alembic skips expression indexes, with a warning
        differences = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert differences == []


def test_usernames_are_unique_ignoring_case_in_the_schema(customer, import_csv):
    import_csv(customer, [["1", "A", "", ""]], [["u1", "Ida", "Lund", "", "", "1"]])
    person = db.session.scalar(select(Person))
    db.session.add(
        Person(
            customer_id=customer.id,
            unit_id=person.unit_id,
            username="U1",
            first_name="Bo",
            last_name="Holm",
        )
    )
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Person)) == 1


def test_migrating_a_new_database_prints_no_reflection_warning(tmp_path):
    """`flask db upgrade` (the first `.ci/serve`) used to print SQLAlchemy's "Skipped
    unsupported reflection of expression-based index" for lower(username) and lower(email);
    the indexes are made by the migrations all the same."""
    root = Path(__file__).resolve().parents[2]
    database = tmp_path / "kursa.db"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("KURSA_", "FLASK_"))}
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
        cwd=root,
        env={**environ, "KURSA_DATABASE_URL": f"sqlite:///{database}"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr
    with sqlite3.connect(database) as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"uq_persons_username_lower", "ix_persons_email_lower"} <= indexes
