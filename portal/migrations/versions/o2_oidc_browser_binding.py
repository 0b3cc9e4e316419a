"""SSO: an OIDC request is bound to the browser that started it (the SHA-256 of its login
cookie), so a callback link opened in another browser logs nobody in.

Requests under way have no binding; they are dropped (a login lives minutes, and its callback
then asks the person to start again).

Revision ID: o2_oidc_browser_binding
Revises: o1_persons_email_lower
"""

import sqlalchemy as sa
from alembic import op

revision = "o2_oidc_browser_binding"
down_revision = "o1_persons_email_lower"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(sa.text("DELETE FROM oidc_requests"))
    with op.batch_alter_table("oidc_requests") as batch:
        batch.add_column(sa.Column("browser_hash", sa.String(length=64), nullable=False))


def downgrade():
    with op.batch_alter_table("oidc_requests") as batch:
        batch.drop_column("browser_hash")
