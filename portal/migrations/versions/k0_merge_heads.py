"""Join the two heads built side by side: SSO sessions and logout (j2), sync operations (j5).

Revision ID: k0_merge_heads
Revises: j2_sso_proto, j5_sync_ops
"""

revision = "k0_merge_heads"
down_revision = ("j2_sso_proto", "j5_sync_ops")
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
