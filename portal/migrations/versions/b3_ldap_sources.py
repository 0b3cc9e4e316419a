"""directory sources (LDAP and Active Directory)

Revision ID: b3_ldap_sources
Revises: 641ba887aca1
Create Date: 2026-12-03 17:50:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "b3_ldap_sources"
down_revision = "641ba887aca1"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sync_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("profile", sa.String(length=20), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("password_encrypted", sa.Text(), nullable=True),
        sa.Column("schedule", sa.String(length=100), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_sync_sources_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_sync_sources_name")),
    )
    with op.batch_alter_table("sync_sources", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sync_sources_customer_id"), ["customer_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("sync_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_sources_customer_id"))
    op.drop_table("sync_sources")
