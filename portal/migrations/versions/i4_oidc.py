"""sso: OIDC request store (state, nonce, code verifier)

Revision ID: i4_oidc
Revises: h0_merge_heads
Create Date: 2026-12-03 18:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'i4_oidc'
down_revision = 'h0_merge_heads'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('oidc_requests',
    sa.Column('state', sa.String(length=100), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('nonce', sa.String(length=100), nullable=False),
    sa.Column('code_verifier', sa.String(length=128), nullable=False),
    sa.Column('next_url', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('is_used', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['identity_providers.id'], name=op.f('fk_oidc_requests_provider_id_identity_providers')),
    sa.PrimaryKeyConstraint('state', name=op.f('pk_oidc_requests'))
    )
    with op.batch_alter_table('oidc_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_requests_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_oidc_requests_provider_id'), ['provider_id'], unique=False)


def downgrade():
    with op.batch_alter_table('oidc_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oidc_requests_provider_id'))
        batch_op.drop_index(batch_op.f('ix_oidc_requests_expires_at'))

    op.drop_table('oidc_requests')
