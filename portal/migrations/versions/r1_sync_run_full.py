"""Sync: a run says whether it read its source whole (a full run) or only what changed.

The scheduler's catch-up needs it: an incremental run after a missed full one does not pay
the full one off. Runs made before this revision are marked full (file imports, drops and
most directory runs were); an incremental directory run among them counts as full once.

Revision ID: r1_sync_run_full
Revises: q1_sessions_name_id_1024
"""

import sqlalchemy as sa
from alembic import op

revision = "r1_sync_run_full"
down_revision = "q1_sessions_name_id_1024"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(
            sa.Column("is_full", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade():
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("is_full")
