"""Sync: one waiting (queued or running) request per source, action and kind, held by a
partial unique index, so that two "Sync now" clicks at once queue one run.

Requests waiting twice already are closed as failed, all but the oldest of each kind, so that
the index can be made.

Revision ID: s1_sync_request_waiting_unique
Revises: r1_sync_run_full
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "s1_sync_request_waiting_unique"
down_revision = "r1_sync_run_full"
branch_labels = None
depends_on = None

WAITING = "status IN ('queued', 'running')"


def upgrade():
    op.get_bind().execute(
        sa.text(
            "UPDATE sync_requests SET status = 'failed', finished_at = :now, message = "
            "'The same request was waiting already; that one is performed instead.' "
            f"WHERE {WAITING} AND EXISTS (SELECT 1 FROM sync_requests AS older "
            "WHERE older.source_id = sync_requests.source_id "
            "AND older.action = sync_requests.action AND older.is_full = sync_requests.is_full "
            f"AND older.{WAITING} AND older.id < sync_requests.id)"
        ),
        {"now": datetime.now(UTC).replace(tzinfo=None)},
    )
    op.create_index(
        "uq_sync_requests_waiting",
        "sync_requests",
        ["source_id", "action", "is_full"],
        unique=True,
        postgresql_where=sa.text(WAITING),
        sqlite_where=sa.text(WAITING),
    )


def downgrade():
    op.drop_index("uq_sync_requests_waiting", table_name="sync_requests")
