"""SSO: an identity's subject holds up to 1024 (was 255), so a long persistent NameID or OIDC
`sub` is stored whole instead of cut (a cut one was never found again, and two cut to the
same would share a link). sso.linking refuses longer ones.

The downgrade fails on PostgreSQL while a subject longer than 255 is stored: cutting it could
merge two links.

Revision ID: o1_sso_subject_1024
Revises: n1_sync_discard
"""

import sqlalchemy as sa
from alembic import op

revision = "o1_sso_subject_1024"
down_revision = "n1_sync_discard"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("sso_identities") as batch:
        batch.alter_column(
            "subject",
            existing_type=sa.String(length=255),
            type_=sa.String(length=1024),
            existing_nullable=False,
        )


def downgrade():
    with op.batch_alter_table("sso_identities") as batch:
        batch.alter_column(
            "subject",
            existing_type=sa.String(length=1024),
            type_=sa.String(length=255),
            existing_nullable=False,
        )
