"""run locks shared across processes, the scheduler's job store, file drop accounts

Revision ID: e3_schedule_drop
Revises: d0_merge_heads
Create Date: 2026-12-03 18:20:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "e3_schedule_drop"
down_revision = "d0_merge_heads"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sync_locks",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sync_locks")),
    )
    op.create_table(
        "drop_accounts",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("password_hash", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_drop_accounts_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_drop_accounts")),
    )
    op.create_table(
        "scheduler_jobs",
        sa.Column("id", sa.Unicode(length=191), nullable=False),
        sa.Column("next_run_time", sa.Float(precision=25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduler_jobs")),
    )
    op.create_index(
        op.f("ix_scheduler_jobs_next_run_time"), "scheduler_jobs", ["next_run_time"], unique=False
    )


def downgrade():
    op.drop_index(op.f("ix_scheduler_jobs_next_run_time"), table_name="scheduler_jobs")
    op.drop_table("scheduler_jobs")
    op.drop_table("drop_accounts")
    op.drop_table("sync_locks")
