"""Group memberships of a stored LDAP source, read whole (for role mapping).

The reader reads no groups today; this is the one place that does. A group larger than the
server's range limit (AD: `member;range=0-1499`) is read range by range until it is complete.
"""

from sync.models import SyncSource
from sync.sources.ldap import profiles, vault
from sync.sources.ldap.connection import close, connect, read_whole_attribute


def group_members(source: SyncSource, group_dn: str) -> list[str]:
    """The DNs of every member of the group, in the server's order; DirectoryError if not."""
    settings = profiles.effective(source.profile, source.settings)
    conn = connect(settings, vault.decrypt(source.password_encrypted or ""))
    try:
        raw = read_whole_attribute(conn, group_dn, "member", settings=settings)
    finally:
        close(conn)
    return [value.decode("utf-8") for value in raw]
