"""Persons: an index on lower(email), so that the login page's check "is this the address of
another customer's person?" and matching an SSO login by email are one index lookup each.

Revision ID: o1_persons_email_lower
Revises: n1_sync_discard
"""

import sqlalchemy as sa
from alembic import op

revision = "o1_persons_email_lower"
down_revision = "n1_sync_discard"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("persons") as batch:
        batch.create_index("ix_persons_email_lower", [sa.text("lower(email)")], unique=False)


def downgrade():
    with op.batch_alter_table("persons") as batch:
        batch.drop_index("ix_persons_email_lower")
