"""sso: identity providers, identity links, SAML request store and seen assertion ids

Revision ID: g4_sso_saml
Revises: d0_merge_heads
Create Date: 2026-12-03 18:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'g4_sso_saml'
down_revision = 'd0_merge_heads'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('identity_providers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('is_enabled', sa.Boolean(), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_identity_providers_customer_id_customers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_providers')),
    sa.UniqueConstraint('customer_id', 'name', name='uq_identity_providers_customer_name')
    )
    with op.batch_alter_table('identity_providers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identity_providers_customer_id'), ['customer_id'], unique=False)

    op.create_table('sso_identities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_login_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_sso_identities_person_id_persons')),
    sa.ForeignKeyConstraint(['provider_id'], ['identity_providers.id'], name=op.f('fk_sso_identities_provider_id_identity_providers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sso_identities')),
    sa.UniqueConstraint('provider_id', 'subject', name='uq_sso_identities_provider_subject')
    )
    with op.batch_alter_table('sso_identities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sso_identities_person_id'), ['person_id'], unique=False)

    op.create_table('saml_requests',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('next_url', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('is_used', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['identity_providers.id'], name=op.f('fk_saml_requests_provider_id_identity_providers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_saml_requests'))
    )
    with op.batch_alter_table('saml_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_saml_requests_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_saml_requests_provider_id'), ['provider_id'], unique=False)

    op.create_table('saml_assertions_seen',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('assertion_id', sa.String(length=255), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['identity_providers.id'], name=op.f('fk_saml_assertions_seen_provider_id_identity_providers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_saml_assertions_seen')),
    sa.UniqueConstraint('provider_id', 'assertion_id', name='uq_saml_assertions_seen_provider_assertion')
    )
    with op.batch_alter_table('saml_assertions_seen', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_saml_assertions_seen_expires_at'), ['expires_at'], unique=False)


def downgrade():
    op.drop_table('saml_assertions_seen')
    op.drop_table('saml_requests')
    op.drop_table('sso_identities')
    op.drop_table('identity_providers')
