"""merge schedule and drop, calendar and outbox, sso

Revision ID: h0_merge_heads
Revises: e3_schedule_drop, f5_calendar_outbox, g4_sso_saml
Create Date: 2026-12-03 18:41:31.209012

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'h0_merge_heads'
down_revision = ('e3_schedule_drop', 'f5_calendar_outbox', 'g4_sso_saml')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
