"""The migrations build exactly the schema the models describe, on both engines."""

import warnings

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
