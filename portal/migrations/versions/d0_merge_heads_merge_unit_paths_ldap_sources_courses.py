"""merge unit paths, ldap sources, courses

Revision ID: d0_merge_heads
Revises: a2_unit_path_text, b3_ldap_sources, c5_courses_roles
Create Date: 2026-12-03 17:51:10.284274

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd0_merge_heads'
down_revision = ('a2_unit_path_text', 'b3_ldap_sources', 'c5_courses_roles')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
