"""Sync: a page's Preview or Sync now request says whether it asked for a full run.

Requests queued before this revision were incremental whenever the source could be (the page
had no choice), so they are marked not full.

Revision ID: p1_sync_request_full
Revises: o2_oidc_browser_binding
"""

import sqlalchemy as sa
from alembic import op

revision = "p1_sync_request_full"
down_revision = "o2_oidc_browser_binding"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("sync_requests") as batch:
        batch.add_column(
            sa.Column("is_full", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade():
    with op.batch_alter_table("sync_requests") as batch:
        batch.drop_column("is_full")
