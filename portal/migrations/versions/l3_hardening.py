"""Hardening: one rate limiter for the portal and sso (rate_limit_hits replaces
sso_login_starts).

Revision ID: l3_hardening
Revises: k0_merge_heads
"""

import sqlalchemy as sa
from alembic import op

revision = "l3_hardening"
down_revision = "k0_merge_heads"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "rate_limit_hits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_limit_hits")),
    )
    with op.batch_alter_table("rate_limit_hits", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rate_limit_hits_scope_address", ["scope", "client_address"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_rate_limit_hits_created_at"), ["created_at"], unique=False
        )
    # A minute of login starts is all it held: nothing to carry over.
    op.drop_table("sso_login_starts")


def downgrade():
    op.create_table(
        "sso_login_starts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_login_starts")),
    )
    with op.batch_alter_table("sso_login_starts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sso_login_starts_client_address"), ["client_address"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_sso_login_starts_created_at"), ["created_at"], unique=False
        )
    op.drop_table("rate_limit_hits")
