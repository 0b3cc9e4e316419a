"""Helpers shared by the LDAP sync tests: a source on the test slapd, and a sync of it."""

from portal.core.db import db
from sync.models import SyncSource
from sync.sources.ldap.operations import add_ldap_source, sync_source
from tests.servers.slapd import ORG_BASE, SERVICE_DN, SERVICE_PASSWORD


def openldap_source(customer, server, name="hq-ldap", password=SERVICE_PASSWORD, **settings):
    """An OpenLDAP source reading persons and OUs under ORG_BASE of `server`, committed."""
    values = {
        "uri": server.uri,
        "bind_dn": SERVICE_DN,
        "user_bases": [ORG_BASE],
        "org_from": "ou",
        "org_base": ORG_BASE,
        **settings,
    }
    source = add_ldap_source(
        customer, name, profile="openldap", settings=values, password=password, actor="test"
    )
    db.session.commit()
    return source


def sync(source, **options):
    """Run `source` now, as the CLI and the scheduler do."""
    return sync_source(db.session.get(SyncSource, source.id), actor="test", **options)
