"""Join the heads o1_sso_subject_1024 and p1_sync_request_full, and let a login session's
name_id hold what an identity's subject holds (1024): a NameID cut to 255 was sent to the IdP
in a logout it did not recognise, and an IdP's logout of one subject could end the sessions of
another whose NameID starts with the same 255 characters.

Revision ID: q1_sessions_name_id_1024
Revises: o1_sso_subject_1024, p1_sync_request_full
"""

import sqlalchemy as sa
from alembic import op

revision = "q1_sessions_name_id_1024"
down_revision = ("o1_sso_subject_1024", "p1_sync_request_full")
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("login_sessions") as batch:
        batch.alter_column(
            "name_id",
            existing_type=sa.String(length=255),
            type_=sa.String(length=1024),
            existing_nullable=False,
        )


def downgrade():
    with op.batch_alter_table("login_sessions") as batch:
        batch.alter_column(
            "name_id",
            existing_type=sa.String(length=1024),
            type_=sa.String(length=255),
            existing_nullable=False,
        )
