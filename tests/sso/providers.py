"""Identity providers for tests, added through the same operation as the pages and the CLI."""

from portal.core.db import db
from sso.models import IdentityProvider
from sso.operations import add_oidc_provider


def add_oidc_for(customer, op, name: str = "corp", match: str = "username") -> IdentityProvider:
    """An OIDC provider of `customer` at the test OP `op` (its discovery address, client id and
    secret), committed."""
    provider = add_oidc_provider(
        customer,
        name,
        op.discovery_url,
        client_id=op.client_id,
        client_secret=op.client_secret,
        match=match,
        actor="test",
    )
    db.session.commit()
    return provider
