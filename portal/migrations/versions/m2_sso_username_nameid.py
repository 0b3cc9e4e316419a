"""SSO: a SAML provider matching by username without an attribute of its own read the NameID;
that reading is now the `nameid` rule, since an empty attribute means the usual attributes of
the rule (sso.matching). Such providers become `nameid`, so their logins keep working.

Revision ID: m2_sso_username_nameid
Revises: l3_hardening
"""

import sqlalchemy as sa
from alembic import op

revision = "m2_sso_username_nameid"
down_revision = "l3_hardening"
branch_labels = None
depends_on = None

PROVIDERS = sa.table(
    "identity_providers",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("settings", sa.JSON),
)


def upgrade():
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(PROVIDERS.c.id, PROVIDERS.c.settings).where(PROVIDERS.c.kind == "saml")
    )
    for provider_id, settings in rows.all():
        settings = dict(settings or {})
        if settings.get("match", "username") == "username" and not settings.get("match_attribute"):
            settings["match"] = "nameid"
            bind.execute(
                sa.update(PROVIDERS).where(PROVIDERS.c.id == provider_id).values(settings=settings)
            )


def downgrade():
    # `nameid` with no attribute read the NameID before this revision too: nothing to undo.
    pass
