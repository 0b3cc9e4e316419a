"""sync operations: queued page requests, a source's incremental schedule, a unit's source

Revision ID: j5_sync_ops
Revises: i4_oidc
Create Date: 2026-12-03 19:45:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "j5_sync_ops"
down_revision = "i4_oidc"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sync_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sync_sources.id"],
            name=op.f("fk_sync_requests_source_id_sync_sources"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name=op.f("fk_sync_requests_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_requests")),
    )
    op.create_index(op.f("ix_sync_requests_source_id"), "sync_requests", ["source_id"])
    op.create_index(op.f("ix_sync_requests_status"), "sync_requests", ["status"])
    with op.batch_alter_table("sync_sources") as batch:
        batch.add_column(sa.Column("delta_schedule", sa.String(length=100), nullable=True))
    with op.batch_alter_table("org_units") as batch:
        batch.add_column(sa.Column("source", sa.String(length=100), nullable=True))


def downgrade():
    with op.batch_alter_table("org_units") as batch:
        batch.drop_column("source")
    with op.batch_alter_table("sync_sources") as batch:
        batch.drop_column("delta_schedule")
    op.drop_index(op.f("ix_sync_requests_status"), table_name="sync_requests")
    op.drop_index(op.f("ix_sync_requests_source_id"), table_name="sync_requests")
    op.drop_table("sync_requests")
