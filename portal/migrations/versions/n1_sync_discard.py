"""Sync: a held run can be discarded; the run records who discarded it and when.

The status column is text (String(20)), so the new status "discarded" needs no change to it.

Revision ID: n1_sync_discard
Revises: m2_sso_username_nameid
"""

import sqlalchemy as sa
from alembic import op

revision = "n1_sync_discard"
down_revision = "m2_sso_username_nameid"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("discarded_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("discarded_at", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("discarded_at")
        batch.drop_column("discarded_by")
