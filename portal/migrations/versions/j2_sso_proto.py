"""sso: login sessions, logout requests, login starts, persons at login

Revision ID: j2_sso_proto
Revises: i4_oidc
Create Date: 2026-12-03 19:34:57.312727

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'j2_sso_proto'
down_revision = 'i4_oidc'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sso_login_starts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_address', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sso_login_starts'))
    )
    with op.batch_alter_table('sso_login_starts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sso_login_starts_client_address'), ['client_address'], unique=False)
        batch_op.create_index(batch_op.f('ix_sso_login_starts_created_at'), ['created_at'], unique=False)

    op.create_table('saml_logout_requests',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('is_used', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['identity_providers.id'], name=op.f('fk_saml_logout_requests_provider_id_identity_providers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_saml_logout_requests'))
    )
    with op.batch_alter_table('saml_logout_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_saml_logout_requests_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_saml_logout_requests_provider_id'), ['provider_id'], unique=False)

    op.create_table('login_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=True),
    sa.Column('name_id', sa.String(length=255), nullable=False),
    sa.Column('name_id_format', sa.String(length=255), nullable=False),
    sa.Column('session_index', sa.String(length=255), nullable=False),
    sa.Column('id_token', sa.Text(), nullable=False),
    sa.Column('logout_state', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('end_reason', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_login_sessions_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_sessions')),
    sa.UniqueConstraint('logout_state', name=op.f('uq_login_sessions_logout_state'))
    )
    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_sessions_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_sessions_ended_at'), ['ended_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_sessions_name_id'), ['name_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_sessions_provider_id'), ['provider_id'], unique=False)

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_creating_persons_at_login', sa.Boolean(), nullable=False, server_default=sa.false()))



def downgrade():
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('is_creating_persons_at_login')

    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_sessions_provider_id'))
        batch_op.drop_index(batch_op.f('ix_login_sessions_name_id'))
        batch_op.drop_index(batch_op.f('ix_login_sessions_ended_at'))
        batch_op.drop_index(batch_op.f('ix_login_sessions_account_id'))

    op.drop_table('login_sessions')
    with op.batch_alter_table('saml_logout_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_saml_logout_requests_provider_id'))
        batch_op.drop_index(batch_op.f('ix_saml_logout_requests_expires_at'))

    op.drop_table('saml_logout_requests')
    with op.batch_alter_table('sso_login_starts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sso_login_starts_created_at'))
        batch_op.drop_index(batch_op.f('ix_sso_login_starts_client_address'))

    op.drop_table('sso_login_starts')
