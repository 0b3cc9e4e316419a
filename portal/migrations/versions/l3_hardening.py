"""Hardening: one rate limiter for the portal and sso (rate_limit_hits replaces
sso_login_starts); sso_email_domains holds one provider per email domain in the database.

Revision ID: l3_hardening
Revises: k0_merge_heads
"""

import sqlalchemy as sa
from alembic import op

revision = "l3_hardening"
down_revision = "k0_merge_heads"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "rate_limit_hits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_limit_hits")),
    )
    with op.batch_alter_table("rate_limit_hits", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rate_limit_hits_scope_address", ["scope", "client_address"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_rate_limit_hits_created_at"), ["created_at"], unique=False
        )
    # A minute of login starts is all it held: nothing to carry over.
    op.drop_table("sso_login_starts")

    op.create_table(
        "sso_email_domains",
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["identity_providers.id"],
            name=op.f("fk_sso_email_domains_provider_id_identity_providers"),
        ),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_sso_email_domains")),
    )
    with op.batch_alter_table("sso_email_domains", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sso_email_domains_provider_id"), ["provider_id"], unique=False
        )
    _copy_domains()


def _copy_domains() -> None:
    """The enabled providers' domains; should two claim one (the race this table ends), the
    older provider keeps it and the other's setting is left for its IT admin to see."""
    providers = sa.table(
        "identity_providers",
        sa.column("id", sa.Integer),
        sa.column("is_enabled", sa.Boolean),
        sa.column("settings", sa.JSON),
    )
    claims = {}
    rows = op.get_bind().execute(
        sa.select(providers.c.id, providers.c.settings)
        .where(providers.c.is_enabled.is_(True))
        .order_by(providers.c.id)
    )
    for provider_id, settings in rows:
        for domain in (settings or {}).get("email_domains") or []:
            claims.setdefault(domain, provider_id)
    if claims:
        domains = sa.table(
            "sso_email_domains",
            sa.column("domain", sa.String),
            sa.column("provider_id", sa.Integer),
        )
        op.bulk_insert(domains, [{"domain": d, "provider_id": p} for d, p in claims.items()])


def downgrade():
    op.drop_table("sso_email_domains")
    op.create_table(
        "sso_login_starts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_login_starts")),
    )
    with op.batch_alter_table("sso_login_starts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sso_login_starts_client_address"), ["client_address"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_sso_login_starts_created_at"), ["created_at"], unique=False
        )
    op.drop_table("rate_limit_hits")
