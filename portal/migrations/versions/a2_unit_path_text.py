"""unit paths as text, so deep trees fit

Revision ID: a2_unit_path_text
Revises: 641ba887aca1
Create Date: 2026-12-03 18:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'a2_unit_path_text'
down_revision = '641ba887aca1'
branch_labels = None
depends_on = None


def _path_type(length=None):
    if length:
        return sa.String(length).with_variant(sa.String(length, collation='C'), 'postgresql')
    return sa.Text().with_variant(sa.Text(collation='C'), 'postgresql')


def upgrade():
    with op.batch_alter_table('org_units', schema=None) as batch_op:
        batch_op.alter_column('path', existing_type=_path_type(1000), type_=_path_type(),
                              existing_nullable=False)


def downgrade():
    with op.batch_alter_table('org_units', schema=None) as batch_op:
        batch_op.alter_column('path', existing_type=_path_type(), type_=_path_type(1000),
                              existing_nullable=False)
